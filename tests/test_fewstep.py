"""The few-step generator: the posterior between levels, the pair discriminator, a fine-tune step, sampling."""
import math

import pytest
import torch

from diffgan_lib import DiffusionScheduler, UNet, sample
from diffgan_lib import FewStepConfig
from diffgan_lib.core import FewStepGenerator, PairDiscriminator, level_timesteps, posterior_sample
from diffgan_lib.engine.fewstep import fewstep_from_teacher, fewstep_step

SCH = DiffusionScheduler(1000)


def test_levels_are_ddgans_four():
    assert level_timesteps(SCH, 4) == [999, 749, 499, 249]
    assert level_timesteps(SCH, 2) == [999, 499] and level_timesteps(SCH, 1) == [999]
    with pytest.raises(ValueError, match="1 to 8 levels"):
        level_timesteps(SCH, 0)


def test_posterior_one_step_is_ddpms_and_clean_is_x0():
    x0, x_t, noise = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([5, 500, 999])
    eps = (x_t - SCH.alpha_hat[t].sqrt().view(-1, 1, 1, 1) * x0) / (1 - SCH.alpha_hat[t]).sqrt().view(-1, 1, 1, 1)
    ddpm = torch.stack([SCH.step(eps[i:i + 1], int(t[i]), x_t[i:i + 1], noise=noise[i:i + 1],
                                 variance="fixed_small")[0] for i in range(3)])
    assert torch.allclose(posterior_sample(SCH, x_t, x0, t, t - 1, noise), ddpm, atol=1e-4)
    assert torch.equal(posterior_sample(SCH, x_t, x0, t, torch.full((3,), -1), noise), x0)


def test_posterior_matches_the_forward_process_marginal():
    """Noise x0 to t, then draw t_next from the posterior: the result is distributed as q(x_{t_next} | x0)."""
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    t, t_next = 999, 499
    x_t, _ = SCH.add_noise(x0, torch.full((20000,), t))
    x_next = posterior_sample(SCH, x_t, x0, torch.full((20000,), t), torch.full((20000,), t_next))
    a = SCH.alpha_hat[t_next]
    assert x_next.mean().item() == pytest.approx(0.5 * a.sqrt().item(), abs=0.02)
    assert x_next.var().item() == pytest.approx((1 - a).item(), abs=0.03)


def test_pair_discriminator_sees_both_states_and_the_level():
    D = PairDiscriminator(1, 8, 4)
    x_next, x_t = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    stacked = D.pair(x_next, x_t, torch.tensor([0, 3]))
    assert stacked.shape == (2, 6, 32, 32) and stacked[0, 2].eq(1).all() and stacked[1, 5].eq(1).all()
    assert D(stacked).shape == (2, 1, 1, 1)


@pytest.mark.parametrize("adv_weight", [1.0, 0.0])
def test_a_fine_tune_step_changes_G_and_trains_D_only_when_adversarial(adv_weight):
    torch.manual_seed(0)
    teacher = UNet(1, 8)
    cfg = FewStepConfig(adv_weight=adv_weight, r1_every=1)
    run = fewstep_from_teacher(teacher, SCH, cfg)
    G = run.G
    assert (run.D is None) == (adv_weight == 0)
    before = G.unet.final.weight.clone()
    out = fewstep_step(run, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert not torch.equal(before, G.unet.final.weight)
    assert torch.equal(teacher.final.weight, before)                # the teacher is a copy, untouched
    assert math.isfinite(out["rec"]) and math.isfinite(out["D"]) == (adv_weight > 0)


def test_sampling_takes_one_evaluation_per_level_and_repeats_with_the_seed():
    torch.manual_seed(0)
    G = FewStepGenerator(UNet(1, 8), SCH, level_timesteps(SCH, 4))
    calls = []
    G.unet.register_forward_hook(lambda *_: calls.append(1))
    x = sample(G, SCH, n=3, image_size=32, seed=7, progress=False)
    assert len(calls) == 4 and x.shape == (3, 1, 32, 32) and x.abs().max() <= 1
    assert torch.equal(x, sample(G, SCH, n=3, image_size=32, seed=7, progress=False))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="both 0"):
        FewStepConfig(adv_weight=0, rec_weight=0)
    with pytest.raises(ValueError, match="finite"):
        FewStepConfig(adv_weight=float("nan"))
    with pytest.raises(ValueError, match="descending"):
        FewStepGenerator(UNet(1, 8), SCH, [249, 999])


# ------------------------------------------------------------------ runs, files, the command line
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from diffgan_lib import TrainConfig, load_checkpoint, sample, train# noqa: E402
from diffgan_lib.engine import export_for_sampling, read_checkpoint# noqa: E402
from diffgan_lib.cli import main# noqa: E402
from diffgan_lib import fewstep_train
from diffgan_lib.engine.fewstep import weights_sha256# noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny trained diffusion model (base 8, T = 50) and its float16 sampling-only export."""
    folder = tmp_path_factory.mktemp("teacher")
    images = torch.rand(16, 1, 32, 32) * 2 - 1
    result = train(DataLoader(TensorDataset(images), batch_size=4), timesteps=50, device="cpu", epochs=1,
                   save_dir=folder, config=TrainConfig(base=8, checkpoint_every=0), progress=False)
    return result.checkpoint, export_for_sampling(result.checkpoint, folder / "export.pth")


def loader():
    images = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1   # the same every call
    return DataLoader(TensorDataset(images), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))


def test_a_fewstep_checkpoint_names_its_teacher_loads_samples_and_resumes_exactly(teacher, tmp_path):
    full, export = teacher
    cfg = FewStepConfig(levels=2, r1_every=1)
    straight = fewstep_train(export, loader(), cfg, 4, tmp_path / "a", progress=False).checkpoint
    ckpt = read_checkpoint(straight)
    assert ckpt["model"]["kind"] == "fewstep" and ckpt["model"]["levels"] == [49, 24]
    assert ckpt["model"]["teacher"]["sha256"] == weights_sha256(read_checkpoint(export)["G"])
    assert ckpt["model"]["teacher"]["sha256"] != weights_sha256(read_checkpoint(full)["G_ema"])   # float16 != float32
    assert torch.load(straight, weights_only=True)["version"] == 2
    G, D, scheduler = loaded = load_checkpoint(straight, device="cpu")
    assert isinstance(G, FewStepGenerator) and loaded.kind == "fewstep" and loaded.image_size == 32
    x = sample(G, scheduler, n=3, image_size=32, seed=0, progress=False)
    assert x.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="few-step generator.*steps=50 does not apply"):
        sample(G, scheduler, n=3, image_size=32, sampler="ddim", steps=50)
    fewstep_train(export, loader(), cfg, 2, tmp_path / "b", progress=False)
    resumed = fewstep_train(export, loader(), cfg, 4, tmp_path / "b", resume=tmp_path / "b" / "final_model.pth",
                            progress=False, overwrite=True).checkpoint
    a, b = read_checkpoint(straight), read_checkpoint(resumed)
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"]) and all(torch.equal(a["D"][k], b["D"][k]) for k in a["D"])
    assert a["history"]["rec"].tolist() == b["history"]["rec"].tolist()


def test_the_command_line_fine_tunes_and_sample_uses_the_levels(teacher, tmp_path, capsys):
    full, _ = teacher
    assert main(["fewstep", "--init", str(full), "--data", "phantoms", "--n-images", "8", "--levels", "4",
                 "--max-steps", "2", "--batch-size", "4", "--adv-weight", "0", "--out", str(tmp_path / "fs"),
                 "--device", "cpu"]) == 0
    assert read_checkpoint(tmp_path / "fs" / "final_model.pth")["D"] is None       # the regression-only control
    small = export_for_sampling(tmp_path / "fs" / "final_model.pth", tmp_path / "fs_small.pth")   # no D to export
    G_small, D_small, _ = load_checkpoint(small, device="cpu")
    assert D_small is None and isinstance(G_small, FewStepGenerator) and G_small.n_levels == 4
    assert main(["sample", "--checkpoint", str(tmp_path / "fs" / "final_model.pth"), "-n", "2", "--out",
                 str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert main(["sample", "--checkpoint", str(tmp_path / "fs" / "final_model.pth"), "-n", "2", "--eta", "1",
                 "--out", str(tmp_path / "s"), "--device", "cpu"]) == 2
    assert "eta=1.0 does not apply" in capsys.readouterr().err


def test_a_conditional_teacher_is_refused_with_the_reason(tmp_path):
    from diffgan_lib.data import PHANTOM_CLASSES
    from diffgan_lib import make_dataloader
    labelled = make_dataloader("phantoms", 32, 4, n=8, seed=0, return_labels=True)
    teacher = train(labelled, timesteps=50, device="cpu", epochs=1, save_dir=tmp_path / "t", progress=False,
                    config=TrainConfig(base=8, checkpoint_every=0, adv_weight=0.0, class_names=PHANTOM_CLASSES))
    with pytest.raises(ValueError, match="class-conditional model.*would drop its classes"):
        fewstep_train(teacher.checkpoint, loader(), FewStepConfig(levels=2), 2, tmp_path / "f", progress=False)
    assert not (tmp_path / "f").exists()                        # refused before any file was touched
