"""Training: the corrected and as-written steps, the loop's checks, history, resume, NaN and Ctrl-C."""
import json
import math
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from diffgan_lib import TrainConfig, build_run, gan_losses, train, train_step
from diffgan_lib.core import discriminator_loss
from diffgan_lib.course.seed_loop import train_step_as_written
from diffgan_lib.engine.precision import cpu_has_bf16, precision_name, resolve_precision
from diffgan_lib.engine.run import HISTORY_KEYS
from diffgan_lib.engine.step import progress_text

T = 50
# the adversarial term on every step and every t, so that tiny runs exercise it
CFG = TrainConfig(base=8, checkpoint_every=1, adv_weight=0.01, adv_t_max=None, adv_warmup_steps=0)   # the hybrid, D trains from step 0



def blobs(n=16, size=32, channels=1, seed=0):
    """n smooth random blobs (n, C, S, S) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    c = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    r = 0.2 + 0.3 * torch.rand(n, 1, 1, generator=g)
    img = torch.exp(-((xx - c[:, 0]) ** 2 + (yy - c[:, 1]) ** 2) / r ** 2) * 2 - 1
    return img[:, None].expand(n, channels, size, size).contiguous()


def loader(n=16, batch_size=4, **kw):
    return DataLoader(TensorDataset(blobs(n, **kw)), batch_size=batch_size, shuffle=True)


def parts(cfg=CFG, channels=1, step=0):
    """A fresh run at ``step`` (what train_step reads its step from)."""
    r = build_run(cfg, channels, T, "cpu")
    r.step = step
    return r


def run(tmp_path, cfg=CFG, **kw):
    kw.setdefault("epochs", 1)
    return train(kw.pop("dl", None) or loader(), timesteps=T, device="cpu", save_dir=tmp_path,
                 config=cfg, progress=False, **kw)


# ------------------------------------------------------------------ config
def test_config_dict_round_trip_and_unknown_key():
    cfg = TrainConfig.cpu_quick(adv_weight=0.05)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert (cfg.image_size, cfg.base) == (32, 32) and TrainConfig.for_device("cpu") == TrainConfig.cpu_quick()
    assert TrainConfig.cuda_full().precision == "bf16" and TrainConfig.cuda_full().image_size == 128
    with pytest.raises(ValueError, match="unknown TrainConfig field.*lr_g"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_g": 1.0})
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(image_size=100)



def test_precision_auto_follows_the_cpu_and_old_amp_files_still_read(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == (None, False) and resolve_precision("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_precision("auto", cpu) == ((torch.bfloat16, False) if cpu_has_bf16() else (None, False))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not cpu_has_bf16() and resolve_precision("auto", cpu) == (None, False)
    assert precision_name("auto", cpu) == "float32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", cpu) == (torch.bfloat16, False) and precision_name("auto", cpu) == "bf16 autocast"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision='fp64': choose one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="fp64")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict({**old, "amp": "off"}).precision == "fp32"
    assert TrainConfig.from_dict({**old, "amp": "auto"}).precision == "auto"


# ------------------------------------------------------------------ one step
def count_forwards(G):
    calls = []
    G.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("step_fn,expected", [(train_step, 1), (train_step_as_written, 2)])
def test_generator_forwards_per_step(step_fn, expected):
    r = parts()
    calls = count_forwards(r.G)
    out = step_fn(r, blobs(4))
    assert len(calls) == expected
    assert set(out) == set(HISTORY_KEYS) - {"step", "epoch"} and math.isfinite(out["D"])


@pytest.mark.parametrize("step_fn", [train_step, train_step_as_written])
def test_generator_loss_gives_D_no_gradient_only_when_corrected(step_fn):
    r = parts()
    after_D_step = {}
    r.opt_D.register_step_post_hook(
        lambda *_: after_D_step.update({n: p.grad.clone() for n, p in r.D.named_parameters()}))
    step_fn(r, blobs(4))
    same = all(torch.equal(p.grad, after_D_step[n]) for n, p in r.D.named_parameters())
    assert same == (step_fn is train_step)   # the seed's G backward also fills D's .grad (ERRATA 4)


def test_discriminator_loss_equals_gan_losses():
    D = parts().D
    real, fake = blobs(4), blobs(4, seed=1)
    loss, s_real, s_fake = discriminator_loss(D, real, fake)
    assert torch.allclose(loss, sum(gan_losses(D, real, fake)))
    assert torch.allclose(s_real, D(real).mean()) and torch.allclose(s_fake, D(fake).mean())


def test_adv_weight_zero_trains_no_discriminator():
    r = parts(CFG.replace(adv_weight=0.0))
    before = [p.clone() for p in r.D.parameters()]
    g_before = r.G.final.weight.clone()
    out = train_step(r, blobs(4))
    assert all(torch.equal(a, b) for a, b in zip(before, r.D.parameters()))
    assert math.isnan(out["D"]) and not torch.equal(g_before, r.G.final.weight)


def test_warmup_and_t_max(tmp_path):
    cfg = CFG.replace(adv_warmup_steps=2, adv_t_max=40)
    h = run(tmp_path, cfg, max_steps=4).history
    assert all(math.isnan(v) for v in h["D"][:2])             # warm-up: no D, no adversarial term
    assert any(math.isfinite(v) for v in h["D"][2:])
    assert all(w > 0 for w in h["adv_w"][2:] if math.isfinite(w))
    r = parts(CFG.replace(adv_t_max=1))                       # almost never t < 1 with 4 images
    t, _ = __import__("diffgan_lib.engine.step", fromlist=["x"]).keyed_t_and_noise(0, 0, range(4), T, (1, 32, 32))
    assert (t > 0).all() and math.isnan(train_step(r, blobs(4))["D"])


# ------------------------------------------------------------------ the loop
def test_history_matches_steps_and_result_unpacks(tmp_path):
    result = run(tmp_path, epochs=2)
    G, D, scheduler = result
    assert result.history["step"] == list(range(1, 9)) and result.history["epoch"] == [0] * 4 + [1] * 4
    assert all(len(v) == 8 for v in result.history.values())
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["diff"] == pytest.approx(result.history["diff"])
    assert G is not result.G_raw and not G.training and scheduler.T == T
    assert {p.name for p in tmp_path.glob("*.pth")} == {"epoch_0001.pth", "epoch_0002.pth", "final_model.pth"}
    assert result.checkpoint == tmp_path / "final_model.pth"
    from diffgan_lib.engine import read_checkpoint
    here = precision_name("auto", torch.device("cpu"))          # bf16 autocast on a CPU with native bf16
    assert read_checkpoint(result.checkpoint)["precision"] == here == ("bf16 autocast" if cpu_has_bf16() else "float32")


@pytest.mark.parametrize("batch_of", [lambda x: x, lambda x: (x, torch.zeros(len(x))), lambda x: {"image": x}])
def test_batch_formats(tmp_path, batch_of):
    batches = [batch_of(x) for x in blobs(8).split(4)]
    assert run(tmp_path, dl=batches).history["step"] == [1, 2]


@pytest.mark.parametrize("images,message", [
    (blobs(8) * 127.5 + 127.5, r"\[-1, 1\]"),
    (blobs(8, channels=3), "3 channels but image_channels=1"),
    (torch.cat([blobs(4), torch.full((4, 1, 32, 32), float("nan"))]), "step 2: .*NaN"),
])
def test_bad_batches_are_named(tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, dl=list(images.split(4)))


def test_divergence_stops_with_the_step(tmp_path):
    with pytest.raises(FloatingPointError, match=r"step \d+: .*not finite.*learning rate"):
        run(tmp_path, CFG.replace(lr_G=1e6, lr_D=1e6), epochs=3)


def test_keyboard_interrupt_saves_and_returns(tmp_path, capsys):
    def stop_at_3(info):
        if info.step == 3:
            raise KeyboardInterrupt
    result = run(tmp_path, epochs=2, callback=stop_at_3)
    assert (tmp_path / "interrupted.pth").exists() and result.checkpoint == tmp_path / "interrupted.pth"
    assert len(result.history["diff"]) == 3 and "Interrupted at step 3" in capsys.readouterr().out


def states(result):
    G, D, _ = result
    named = {"ema": G, "D": D, "G": result.G_raw}
    return {f"{name}.{k}": v for name, net in named.items() for k, v in net.state_dict().items()}


def assert_same_run(a, b):
    sa, sb = states(a), states(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history["diff"] == b.history["diff"] and a.history["step"] == b.history["step"]


@pytest.mark.parametrize("own_generator", [False, True])
def test_resume_at_epoch_boundary_is_exact(tmp_path, own_generator):
    def dl():   # make_dataloader(seed=...) shuffles with its own torch.Generator
        g = torch.Generator().manual_seed(0) if own_generator else None
        return DataLoader(TensorDataset(blobs(16)), batch_size=4, shuffle=True, generator=g)
    straight = run(tmp_path / "a", epochs=2, dl=dl())
    run(tmp_path / "b", epochs=1, dl=dl())
    resumed = run(tmp_path / "b", epochs=2, resume=tmp_path / "b" / "epoch_0001.pth", dl=dl())
    assert_same_run(straight, resumed)


def test_resume_after_interrupt_mid_epoch_is_exact(tmp_path):
    straight = run(tmp_path / "a", epochs=2)

    def stop_at_3(info):
        if info.step == 3:
            raise KeyboardInterrupt
    run(tmp_path / "b", epochs=2, callback=stop_at_3)
    resumed = run(tmp_path / "b", epochs=2, resume=tmp_path / "b" / "interrupted.pth")
    assert_same_run(straight, resumed)


def test_sample_every_writes_grids(tmp_path):
    seen = []
    run(tmp_path, CFG.replace(sample_every=2), max_steps=2, callback=lambda info: seen.append(info.samples))
    assert (tmp_path / "samples" / "step_000002.png").exists()
    assert seen[0] is None and seen[1].shape == (16, 1, 32, 32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_step_with_grad_scaler(monkeypatch, dtype):
    """The CUDA path (autocast + GradScaler + channels_last), run here with CPU autocast."""
    import diffgan_lib.engine.step as step_module
    monkeypatch.setattr(step_module, "resolve_precision", lambda precision, device: (dtype, True))
    r = parts()
    r.G, r.D = r.G.to(memory_format=torch.channels_last), r.D.to(memory_format=torch.channels_last)
    r.G_train, r.D_train, r.scaler = r.G, r.D, torch.amp.GradScaler("cpu")
    before = r.G.final.weight.clone()
    x0 = blobs(4).contiguous(memory_format=torch.channels_last)
    for step in range(3):
        out = train_step(r, x0)
        r.record(out, 0, False)
        assert all(math.isfinite(v) for v in out.values())
    assert not torch.equal(before, r.G.final.weight) and r.G.final.weight.dtype == torch.float32


def test_presets_take_overrides_of_their_own_fields():
    assert TrainConfig.cpu_quick(base=16).base == 16
    assert TrainConfig.cuda_full(image_size=64).image_size == 64
    assert TrainConfig.seed_as_written(base=32).time_embedding is False


def test_default_is_pure_diffusion_and_never_trains_D():
    cfg = TrainConfig(base=8)
    assert cfg.adv_weight == 0.0 and TrainConfig.cpu_quick().adv_weight == 0.0
    r = parts(cfg.replace(adv_t_max=None), step=10_000)
    before = [p.detach().clone() for p in r.D.parameters()]
    out = train_step(r, blobs(4))
    assert math.isnan(out["D"]) and math.isnan(out["adv"]) and math.isfinite(out["diff"])
    assert all(torch.equal(a, b) for a, b in zip(before, r.D.parameters()))
    assert r.state_dict()["D"] is None and r.state_dict()["opt_D"] is None   # an untrained D is not saved


def test_hybrid_recipe_waits_for_the_warm_up_and_keeps_to_small_t():
    cfg = TrainConfig(base=8, adv_weight=0.01)
    assert (cfg.adv_t_max, cfg.adv_warmup_steps) == (500, 500)
    r = parts(cfg, step=499)
    assert math.isnan(train_step(r, blobs(4))["D"])          # warm-up
    r.step, r.config = 500, cfg.replace(adv_t_max=1000)
    assert math.isfinite(train_step(r, blobs(4))["D"])
    r.config = cfg.replace(adv_t_max=1)     # with adv_t_max=1 only t = 0 qualifies: none of the keyed draws
    assert math.isnan(train_step(r, blobs(4))["D"])


def test_ema_follows_its_formula_and_is_what_train_returns(tmp_path):
    from diffgan_lib.core import EMA
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.999)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    d = 1001 / 1010                                   # warm-up: min(0.999, (1 + step) / (10 + step))
    ema.update(model, step=1000)
    assert torch.allclose(ema.module.weight, d * before + (1 - d) * model.weight)
    assert ema.current_decay(0) == pytest.approx(1 / 10) and ema.current_decay(10**6) == 0.999
    result = train(DataLoader(TensorDataset(blobs(8)), batch_size=4), timesteps=T, device="cpu", epochs=1,
                   save_dir=tmp_path, config=CFG, progress=False)
    G, G_raw = result.G, result.G_raw
    assert G is not G_raw and not G.training
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), G_raw.parameters()))


def test_progress_bar_says_off_while_the_adversarial_term_is_off():
    assert progress_text({"diff": 0.05, "adv": float("nan"), "D": float("nan")}) == "Diff 0.0500 | Adv off | D off"
    assert progress_text({"diff": 0.05, "adv": 0.8413, "D": 1.3125}) == "Diff 0.0500 | Adv 0.8413 | D 1.3125"
    assert progress_text({"diff": 0.05, "adv": float("nan"), "D": float("nan")}, pure=True) == "Diff 0.0500 | pure diffusion"


def test_resume_takes_T_and_channels_from_the_checkpoint(tmp_path):
    first = run(tmp_path, epochs=1)                            # T = 50, as every run in this file
    resumed = train(loader(), device="cpu", epochs=2, save_dir=tmp_path, resume=first.checkpoint, progress=False)
    assert resumed.scheduler.T == T and resumed.history["step"] == list(range(1, 9))


def test_resume_inside_an_epoch_with_another_batch_size_is_refused(tmp_path):
    def stop_at_3(info):
        if info.step == 3:
            raise KeyboardInterrupt
    stopped = run(tmp_path, epochs=2, callback=stop_at_3)
    assert stopped.stopped_by == "KeyboardInterrupt"
    with pytest.raises(ValueError, match="stopped inside an epoch of 4 batches .* this dataloader has 2"):
        run(tmp_path, epochs=2, resume=stopped.checkpoint, dl=loader(batch_size=8))


def test_keyed_noise_does_not_depend_on_how_a_batch_is_split():
    from diffgan_lib.engine import keyed_t_and_noise
    t, eps = keyed_t_and_noise(0, 7, range(8), 1000, (1, 32, 32))
    t_odd, eps_odd = keyed_t_and_noise(0, 7, [1, 3, 5, 7], 1000, (1, 32, 32))   # rank 1 of 2
    assert torch.equal(t[1::2], t_odd) and torch.equal(eps[1::2], eps_odd)
    t_next, _ = keyed_t_and_noise(0, 8, range(8), 1000, (1, 32, 32))
    assert not torch.equal(t, t_next) and eps.std().item() == pytest.approx(1, abs=0.05)


@pytest.mark.parametrize("field", ["lr_G", "lr_D", "adv_weight", "ema_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_in_the_config_are_refused(field, value):
    with pytest.raises(ValueError, match=f"{field}={value}"):
        TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="adam_betas"):
        TrainConfig(adam_betas=(0.9, value))


def test_a_batch_in_0_1_warns_once_with_the_fix(tmp_path):
    unit = (blobs(16) + 1) / 2
    with pytest.warns(UserWarning, match=r"lies in \[0, 1\].*x \* 2 - 1") as seen:
        run(tmp_path / "a", dl=list(unit.split(4)), epochs=1)
    assert sum("x * 2 - 1" in str(w.message) for w in seen) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(tmp_path / "b", dl=list(blobs(8).split(4)))     # [-1, 1]: no warning


def test_a_real_ctrl_c_stops_between_steps_and_the_resume_is_exact(tmp_path):
    import signal
    straight = run(tmp_path / "a", epochs=2)

    def press_ctrl_c(info):                 # the signal arrives while the loop runs (handler installed)
        if info.step == 3:
            signal.raise_signal(signal.SIGINT)
    stopped = run(tmp_path / "b", epochs=2, callback=press_ctrl_c)
    assert stopped.stopped_by == "SIGINT" and stopped.history["step"] == [1, 2, 3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # restored afterwards
    resumed = run(tmp_path / "b", epochs=2, resume=tmp_path / "b" / "interrupted.pth")
    assert_same_run(straight, resumed)


def test_keep_last_and_no_second_copy_of_the_final_model(tmp_path):
    import os
    run(tmp_path, CFG.replace(keep_last=2), epochs=3)
    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert names == ["epoch_0002.pth", "epoch_0003.pth", "final_model.pth"]
    assert os.path.samefile(tmp_path / "epoch_0003.pth", tmp_path / "final_model.pth")   # one file, two names


def test_a_pure_diffusion_checkpoint_holds_no_untrained_discriminator(tmp_path):
    from diffgan_lib import load_checkpoint
    from diffgan_lib.engine import read_checkpoint
    r = run(tmp_path, CFG.replace(adv_weight=0.0), max_steps=2)
    ckpt = read_checkpoint(r.checkpoint)
    assert ckpt["D"] is None and ckpt["opt_D"] is None
    G, D, scheduler = load_checkpoint(r.checkpoint, device="cpu")    # the seed's triple, with a fresh D
    assert D(torch.zeros(1, 1, 32, 32)).shape[0] == 1
