"""The UNet's mean path: eps_pred += k(t) * mean(x_t) + c(t), the image mean past the GroupNorms."""
import re

import pytest
import torch

from diffgan_lib import DiffusionScheduler, Discriminator, TrainConfig, UNet, load_checkpoint, save_checkpoint


def pair(seed=0):
    torch.manual_seed(seed)
    plain = UNet(1, 8).eval()
    torch.manual_seed(seed)
    with_path = UNet(1, 8, mean_path=True).eval()     # the same weights, plus the path (built last)
    return plain, with_path


def test_the_path_starts_closed_so_a_new_model_is_the_plain_unet():
    plain, with_path = pair()
    x, t = torch.randn(3, 1, 32, 32), torch.tensor([1, 500, 999])
    with torch.no_grad():
        assert torch.equal(plain(x, t), with_path(x, t))


def test_an_open_path_adds_k_times_each_images_mean_plus_c():
    plain, with_path = pair()
    with torch.no_grad():
        with_path.mean_proj[1].bias.copy_(torch.tensor([2.0, -0.5]))     # k = 2, c = -0.5 at every t
        x = torch.randn(3, 1, 32, 32) + torch.tensor([-1.0, 0.0, 0.7]).view(3, 1, 1, 1)
        t = torch.tensor([10, 10, 900])
        added = with_path(x, t) - plain(x, t)
    expected = 2.0 * x.mean((2, 3), keepdim=True) - 0.5
    assert torch.allclose(added, expected.expand_as(added), atol=1e-5)


def test_rgb_gets_a_gain_per_channel():
    G = UNet(3, 8, mean_path=True)
    assert G.mean_proj[1].out_features == 6
    assert G(torch.randn(2, 3, 32, 32), torch.tensor([0, 5])).shape == (2, 3, 32, 32)


def test_the_seeds_network_without_t_refuses_the_path():
    with pytest.raises(ValueError, match="mean_path=True needs time_embedding=True"):
        UNet(1, 8, time_embedding=False, mean_path=True)


def test_a_config_without_t_records_no_mean_path():
    cfg = TrainConfig(time_embedding=False)                 # mean_path is True by default
    assert cfg.mean_path is False and TrainConfig.from_dict(cfg.to_dict()).mean_path is False
    assert TrainConfig.seed_as_written().mean_path is False and TrainConfig().mean_path is True


def test_the_path_round_trips_through_a_checkpoint_and_old_files_stay_plain(tmp_path):
    _, G = pair()
    with torch.no_grad():
        G.mean_proj[1].weight.normal_()
    save_checkpoint(G, Discriminator(1, 8), None, None, 0, tmp_path / "a", final=True, scheduler=DiffusionScheduler(50))
    G2 = load_checkpoint(tmp_path / "a" / "final_model.pth", device="cpu", which="raw")[0]
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 30])
    with torch.no_grad():
        assert G2.mean_path and torch.equal(G2(x, t), G(x, t))
    save_checkpoint(UNet(1, 8), Discriminator(1, 8), None, None, 0, tmp_path / "b", final=True,
                    scheduler=DiffusionScheduler(50))
    ckpt = torch.load(tmp_path / "b" / "final_model.pth", weights_only=True)
    assert "mean_path" not in ckpt["model"]                       # plain files are written as before
    assert not load_checkpoint(tmp_path / "b" / "final_model.pth", device="cpu")[0].mean_path


def test_a_config_from_before_the_field_reads_as_the_plain_unet():
    d = TrainConfig(mean_path=True).to_dict()
    assert TrainConfig.from_dict(d).mean_path
    del d["mean_path"]
    assert TrainConfig.from_dict(d).mean_path is False
    with pytest.raises(ValueError, match=r"mean_path=.yes. \(needs bool\)"):
        TrainConfig(mean_path="yes")


def test_training_with_the_path_saves_it_and_resumes(tmp_path):
    from diffgan_lib import make_dataloader, train
    cfg = TrainConfig(base=8, checkpoint_every=0, adv_weight=0.0, mean_path=True)
    data = make_dataloader("phantoms", 32, 4, n=8, seed=0)
    first = train(data, timesteps=50, device="cpu", epochs=1, save_dir=tmp_path, config=cfg, progress=False)
    G = load_checkpoint(first.checkpoint, device="cpu", which="raw")[0]
    assert G.mean_path and G.mean_proj[1].bias.abs().sum() > 0     # the path was trained
    again = train(data, timesteps=50, device="cpu", epochs=2, save_dir=tmp_path, resume=first.checkpoint, progress=False)
    assert again.run.step == 4 and again.run.G.mean_path


def test_the_command_line_trains_with_the_path_and_will_not_drop_it_on_resume(tmp_path, capsys):
    from diffgan_lib.cli import main
    ckpts = tmp_path / "ckpts"
    args = ["--data", "phantoms", "--n-images", "8", "--batch-size", "4", "--device", "cpu"]
    assert main(["train", *args, "--image-size", "32", "--base", "8", "--epochs", "1", "--timesteps", "50",
                 "--adv-weight", "0", "--mean-path", "--out", str(ckpts)]) == 0
    assert load_checkpoint(ckpts / "final_model.pth", device="cpu")[0].mean_path
    capsys.readouterr()
    assert main(["train", "--resume", str(ckpts / "final_model.pth"), *args, "--epochs", "2", "--no-mean-path"]) == 2
    assert re.search("--no-mean-path: .* was trained with the mean path.*leave the flag out", capsys.readouterr().err)
    assert main(["train", "--resume", str(ckpts / "final_model.pth"), *args, "--epochs", "2"]) == 0
