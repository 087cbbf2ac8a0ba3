"""The few-step fine-tune: a diffusion model's UNet taught K big denoising jumps, DDGAN-style.

It runs through the same loop as diffusion training (``engine.loop.fit``); only the run differs:
G is a ``FewStepGenerator`` (``core.fewstep``) started from the teacher's weights, D a pair
discriminator (None for the regression-only control), and the step is ``fewstep_step``:
every sample gets a random level k; real pair = (x_{t_next} ~ q(.|x_t, x0), x_t), fake pair =
(x_{t_next} ~ q(.|x_t, x̂0), x_t) with the same posterior noise. D learns real vs fake pairs (+ lazy
R1); G minimises adv_weight * softplus(-D(fake)) with D frozen plus rec_weight * mean(ᾱ_t (x̂0 - x0)²).
"""
from __future__ import annotations

import copy
import math

import torch

from ..core.device import pick_device
from ..core.ema import EMA
from ..core.fewstep import FewStepGenerator, PairDiscriminator, level_timesteps, next_timestep, posterior_sample
from ..core.losses import discriminator_loss, generator_adv_loss
from .batches import mix
from .config import FewStepConfig
from .finetune import check_fine_tune, fine_tune_in_folder, resumed_config, teacher_record
from .models import load_checkpoint, weights_sha256
from .run import Run

__all__ = ["FewStepConfig", "fewstep_step", "fewstep_from_teacher", "fewstep_run", "fewstep_train", "teacher_record", "weights_sha256",
           "FEWSTEP_KEYS"]

FEWSTEP_KEYS = ("step", "epoch", "rec", "adv", "D", "D_real", "D_fake")


def fewstep_step(run: Run, x0: torch.Tensor, labels=None) -> dict:
    """One fine-tune step at ``run.step`` on real images x0 (B, C, S, S) in [-1, 1]; returns floats rec,
    adv, D, D_real, D_fake (the D values nan without a discriminator). Levels and noise come from a
    generator seeded by (seed, step): a resumed run continues as the straight one would."""
    G, D, cfg, step = run.G, run.D, run.config, run.step
    dev, B = x0.device, x0.shape[0]
    draw = dict(generator=torch.Generator().manual_seed(mix(4, cfg.seed, step)), device="cpu")
    k = torch.randint(0, G.n_levels, (B,), **draw).to(dev)
    t, t_next = G.levels.to(dev)[k], next_timestep(G, k)
    x_t, _ = G.scheduler.add_noise(x0, t, torch.randn(x0.shape, **draw).to(dev))
    post_noise = torch.randn(x0.shape, **draw).to(dev)
    x0_raw = G.unclamped(x_t, k)
    x0_hat = x0_raw.clamp(-1, 1)
    a_hat = G.scheduler.alpha_hat.to(dev)[t].reshape(-1, 1, 1, 1)
    rec = (a_hat * (x0_raw - x0) ** 2).mean()
    nan = torch.tensor(float("nan"), device=dev)
    adv, D_loss, D_real, D_fake, G_loss = nan, nan, nan, nan, cfg.rec_weight * rec
    if cfg.adv_weight > 0:
        real = D.pair(posterior_sample(G.scheduler, x_t, x0, t, t_next, post_noise), x_t, k)
        fake = D.pair(posterior_sample(G.scheduler, x_t, x0_hat, t, t_next, post_noise), x_t, k)
        r1 = cfg.r1_gamma * cfg.r1_every if step % cfg.r1_every == 0 else 0.0
        D_loss, D_real, D_fake = discriminator_loss(D, real, fake.detach(), r1)
        run.opt_D.zero_grad(set_to_none=True)
        D_loss.backward()
        run.opt_D.step()
        adv = generator_adv_loss(D, fake, freeze_D=True)
        G_loss = G_loss + cfg.adv_weight * adv
    run.opt_G.zero_grad(set_to_none=True)
    G_loss.backward()
    run.opt_G.step()
    if run.ema is not None:
        run.ema.update(G.unet, step)
    values = dict(zip(FEWSTEP_KEYS[2:], torch.stack([v.detach().float() for v in (rec, adv, D_loss, D_real, D_fake)]).tolist()))
    if not math.isfinite(values["rec"]) or (cfg.adv_weight > 0 and not math.isfinite(values["D"])):
        raise FloatingPointError(f"few-step fine-tune step {step + 1}: a loss is not finite ({values}); "
                                 f"lower lr_G={cfg.lr_G} / lr_D={cfg.lr_D} or adv_weight={cfg.adv_weight}")
    return values


def fewstep_from_teacher(unet, scheduler, cfg: FewStepConfig, device=None, image_size: int = 32,
                         teacher: dict | None = None) -> Run:
    """A fresh fine-tune run from a teacher UNet: G a copy of it read at ``cfg.levels`` levels, a pair
    discriminator of the same width (None when adv_weight = 0), Adam for both (only G's UNet is
    optimised), the EMA of the UNet. ``teacher`` is its record in the run's checkpoints."""
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    G = FewStepGenerator(copy.deepcopy(unet).train().requires_grad_(True), scheduler,
                         level_timesteps(scheduler, cfg.levels)).to(dev)
    D = PairDiscriminator(G.in_ch, unet.base, cfg.levels).to(dev) if cfg.adv_weight > 0 else None
    return Run(config=cfg, G=G, D=D, scheduler=scheduler,
               opt_G=torch.optim.Adam(G.unet.parameters(), lr=cfg.lr_G, betas=cfg.adam_betas),
               opt_D=torch.optim.Adam(D.parameters(), lr=cfg.lr_D, betas=cfg.adam_betas) if D is not None else None,
               scaler=None, ema=EMA(G.unet, cfg.ema_decay) if cfg.ema_decay > 0 else None, device=dev,
               kind="fewstep", info={"image_size": image_size, "teacher": teacher or {"sha256": weights_sha256(unet.state_dict())}},
               step_fn=fewstep_step, history_keys=FEWSTEP_KEYS)


def fewstep_run(init, cfg: FewStepConfig, device=None, teacher: dict | None = None) -> Run:
    """A fresh fine-tune run from the diffusion checkpoint ``init`` (``fewstep_from_teacher`` of its UNet)."""
    dev = pick_device(device)
    teacher = teacher or teacher_record(init)
    unet, _, scheduler = loaded = load_checkpoint(init, device=dev)
    return fewstep_from_teacher(unet, scheduler, cfg, dev, loaded.image_size or 32, teacher)


def fewstep_train(init, dataloader, cfg: FewStepConfig | None, max_steps: int, save_dir, resume=None, device=None,
                  progress: bool = True, overwrite: bool = False, teacher: dict | None = None):
    """Fine-tune a few-step generator from the diffusion checkpoint ``init`` for ``max_steps`` steps in
    total (also when resuming from ``resume``, whose config is used when ``cfg`` is None); writes
    ``save_dir/final_model.pth`` (kind "fewstep") and history.json through the training loop, with every
    folder rule of ``train`` (``engine.rundir``). Every argument, the teacher and the resume file are
    checked before any file is touched. Single process. Returns a ``TrainResult``: ``G, D, scheduler``
    (G the EMA generator), ``.checkpoint`` and ``.stopped_by``."""
    init, teacher, resume, state = check_fine_tune(init, max_steps, resume, teacher, "fewstep")
    if state is not None:
        cfg = resumed_config(FewStepConfig, state, cfg, resume, ("levels", "adv_weight", "rec_weight", "lr_G", "seed"))
    run = fewstep_run(init, cfg or FewStepConfig(), device, teacher)
    return fine_tune_in_folder(run, state, dataloader, save_dir, max_steps, resume, overwrite, init, progress,
                               "few-step fine-tune")
