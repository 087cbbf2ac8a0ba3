"""Classifier-free guidance: the conditional UNet, label dropout, the guided prediction, sampling with labels."""
import pytest
import torch

from diffgan_lib import DiffusionScheduler, UNet, sample
from diffgan_lib.core import drop_labels, guided_eps


def conditional(K=6):
    torch.manual_seed(0)
    G = UNet(1, 8, num_classes=K)
    torch.nn.init.normal_(G.class_emb.weight, std=1.0)       # so that classes really differ
    return G.eval()


def test_an_unconditional_unet_is_unchanged_and_refuses_labels():
    torch.manual_seed(0)
    a = UNet(1, 8)
    assert not any("class_emb" in k for k in a.state_dict())
    with pytest.raises(ValueError, match="unconditional .* takes no labels"):
        a(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs time_embedding=True"):
        UNet(1, 8, time_embedding=False, num_classes=2)


def test_guidance_zero_is_the_unconditional_prediction_and_one_the_conditional():
    G = conditional()
    x, t, y = torch.randn(3, 1, 32, 32), torch.tensor([10, 500, 900]), torch.tensor([0, 2, 5])
    with torch.no_grad():
        uncond, cond = G(x, t), G(x, t, y)
        assert torch.allclose(guided_eps(G, x, t, y, 0.0), uncond, atol=1e-5)
        assert torch.allclose(guided_eps(G, x, t, y, 1.0), cond, atol=1e-6)
        assert torch.allclose(guided_eps(G, x, t, y, 3.0), uncond + 3 * (cond - uncond), atol=1e-5)
        assert not torch.allclose(cond, uncond, atol=1e-3)


def test_guided_prediction_is_one_batched_call():
    G, calls = conditional(), []
    G.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        guided_eps(G, torch.randn(3, 1, 32, 32), torch.tensor([1, 2, 3]), torch.tensor([0, 1, 2]), 3.0)
    assert calls == [6]


def test_label_dropout_rate():
    labels = torch.zeros(100_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.1, num_classes=6, generator=torch.Generator().manual_seed(0))
    share = (dropped == 6).double().mean().item()
    assert share == pytest.approx(0.1, abs=0.005) and set(dropped.unique().tolist()) == {0, 6}
    with pytest.raises(ValueError, match="dropout"):
        drop_labels(labels, 1.5, 6)


def test_sampling_with_labels_and_its_errors():
    G, sched = conditional(), DiffusionScheduler(50)
    x = sample(G, sched, n=4, image_size=32, sampler="ddim", steps=3, seed=0, labels=2, guidance_scale=3.0,
               batch_size=3, progress=False)
    assert x.shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match="each in \\[0, 5\\]"):
        sample(G, sched, n=2, image_size=32, sampler="ddim", steps=3, labels=[0, 6])
    with pytest.raises(ValueError, match="need a class-conditional model"):
        sample(UNet(1, 8), sched, n=2, image_size=32, sampler="ddim", steps=3, labels=0)


def test_a_conditional_model_round_trips_through_a_checkpoint(tmp_path):
    from diffgan_lib import Discriminator, load_checkpoint, save_checkpoint
    G = conditional(K=2)
    save_checkpoint(G, Discriminator(1, 8), None, None, 0, tmp_path, final=True, scheduler=DiffusionScheduler(50))
    G2 = load_checkpoint(tmp_path / "final_model.pth", device="cpu", which="raw")[0]
    x, t, y = torch.randn(2, 1, 32, 32), torch.tensor([3, 30]), torch.tensor([0, 1])
    with torch.no_grad():
        assert G2.num_classes == 2 and torch.equal(G2(x, t, y), G(x, t, y))


def test_conditional_training_takes_labels_from_the_batches_and_saves_the_class_names(tmp_path):
    from diffgan_lib.data import PHANTOM_CLASSES
    from diffgan_lib import TrainConfig, load_checkpoint, make_dataloader, train
    cfg = TrainConfig(base=8, checkpoint_every=0, adv_weight=0.0, class_names=PHANTOM_CLASSES)
    labelled = make_dataloader("phantoms", 32, 4, n=8, seed=0, return_labels=True)
    result = train(labelled, timesteps=50, device="cpu", epochs=1, save_dir=tmp_path / "a", config=cfg, progress=False)
    G, _, sched = loaded = load_checkpoint(result.checkpoint, device="cpu")
    assert G.num_classes == 6 and loaded.config.class_names == PHANTOM_CLASSES
    x = sample(G, sched, n=2, image_size=32, sampler="ddim", steps=2, labels=PHANTOM_CLASSES.index("t2"),
               guidance_scale=3.0, seed=0, progress=False)
    assert torch.isfinite(x).all()
    unlabelled = make_dataloader("phantoms", 32, 4, n=8, seed=0)
    with pytest.raises(ValueError, match="class-conditional .* no labels.*return_labels=True"):
        train(unlabelled, timesteps=50, device="cpu", epochs=1, save_dir=tmp_path / "b", config=cfg, progress=False)


def test_training_label_dropout_is_keyed_and_near_its_rate():
    from diffgan_lib.engine.step import keyed_label_dropout
    labels = torch.zeros(4000, dtype=torch.long)
    a = keyed_label_dropout(labels, 0.1, 6, seed=0, step=3, index=range(4000))
    b = keyed_label_dropout(labels[1::2], 0.1, 6, seed=0, step=3, index=range(1, 4000, 2))   # rank 1 of 2
    assert torch.equal(a[1::2], b) and (a == 6).double().mean().item() == pytest.approx(0.1, abs=0.02)


def test_the_command_line_trains_a_conditional_model_and_samples_a_named_class(tmp_path, capsys):
    from diffgan_lib.cli import main
    run = tmp_path / "run"
    assert main(["train", "--data", "phantoms", "--conditional", "--n-images", "8", "--base", "8", "--timesteps", "50",
                 "--max-steps", "2", "--batch-size", "4", "--adv-weight", "0", "--out", str(run), "--device", "cpu"]) == 0
    ckpt = str(run / "final_model.pth")
    capsys.readouterr()
    assert main(["sample", "--checkpoint", ckpt, "--list-labels"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["0 ct", "1 ct+lesion"]
    assert main(["sample", "--checkpoint", ckpt, "--label", "t2", "--guidance", "3", "-n", "2", "--steps", "2",
                 "--out", str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert main(["sample", "--checkpoint", ckpt, "--label", "t3", "-n", "2", "--out", str(tmp_path / "s")]) == 2
    assert "this model knows 0 ct, 1 ct+lesion, 2 t1" in capsys.readouterr().err
    assert main(["train", "--data", "data/samples", "--conditional", "--max-steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "add --labels folders" in capsys.readouterr().err          # a folder's classes are its sub-folders
