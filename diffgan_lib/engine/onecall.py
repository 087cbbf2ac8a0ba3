"""The one-call fine-tune: a diffusion model's UNet taught to make an image in one call, by a GAN whose
discriminator learns (``core.onecall``, ``core.feature_disc``). It runs through the same loop as training.

Per step, on real images x0 (B, C, S, S) in [-1, 1] and B latents z, drawn from (seed, step) among the
teacher's pairs (z, x_teacher) (``engine.pairs``) when the regression term is on, else z ~ N(0, I):
1. ``d_steps`` times: re-noise x0 and G(z) (detached) to levels s in [0, s_max), D on both, the
   non-saturating losses softplus(-D(real)) + softplus(D(fake)), a D step (heads only);
2. G's step on adv_weight * softplus(-D(G(z))) (D's heads frozen; the gradient flows through the frozen
   encoder into G) + reg_weight * mean((pool(raw x̂0) - pool(x_teacher))^2), pool = reg_pool x reg_pool
   average pooling (the teacher gives the layout, D the texture: the teacher's deterministic images are
   speckled, so matching their pixels would copy the speckle) + range_weight * mean(relu(|raw x̂0| - 1)^2);
   then the EMA.
``HeldOutAUROC`` measures what D has learned on images it never trained on, every ``every`` steps, into the
history's "auroc" column: a run whose D stays near 0.5 is a failed run, whatever its samples score.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ..core.auroc import auroc
from ..core.device import pick_device
from ..core.ema import EMA
from ..core.feature_disc import FeatureDiscriminator
from ..core.losses import frozen
from ..core.onecall import OneCallGenerator, softclamp
from .batches import mix
from .config import OneCallConfig
from .finetune import check_fine_tune, fine_tune_in_folder, resumed_config, teacher_record
from .models import load_checkpoint
from .pairs import pairs_in_folder
from .run import Run
from .train import TrainResult

__all__ = ["onecall_step", "onecall_run", "onecall_train", "HeldOutAUROC", "ONECALL_KEYS", "CHANCE_BAND"]

ONECALL_KEYS = ("step", "epoch", "adv", "reg", "range", "D", "D_real", "D_fake", "auroc")
CHANCE_BAND = 0.6        # a D whose held-out AUROC never reaches this has not learned: the run failed


def onecall_step(run: Run, x0: torch.Tensor, labels=None) -> dict:
    """One fine-tune step at ``run.step`` (module docstring); returns floats adv, reg, range, D, D_real, D_fake,
    auroc (nan)."""
    G, D, cfg = run.G, run.D, run.config
    g = torch.Generator().manual_seed(mix(7, cfg.seed, run.step))
    draw = lambda: torch.randn(x0.shape, generator=g).to(x0.device)                      # noqa: E731
    level = lambda: torch.randint(0, cfg.s_max, (len(x0),), generator=g).to(x0.device)   # noqa: E731
    pairs = run.aux.get("pairs")
    if pairs is None and cfg.reg_weight > 0:
        raise ValueError(f"reg_weight={cfg.reg_weight} needs the teacher's pairs in run.aux['pairs'] (onecall_train "
                         "makes them); for the GAN term alone use OneCallConfig(reg_weight=0)")
    if pairs is not None:
        pick = torch.randint(0, len(pairs["z"]), (len(x0),), generator=g).to(x0.device)
        z, target = pairs["z"][pick], pairs["x"][pick]
    else:
        z, target = draw(), None
    raw = G.raw(z)
    fake = softclamp(raw)
    for _ in range(cfg.d_steps):
        s = level()
        real_logit, fake_logit = D(x0, s, draw()), D(fake.detach(), s, draw())
        D_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        run.opt_D.zero_grad(set_to_none=True)
        D_loss.backward()
        run.opt_D.step()
    with frozen(D.heads):
        adv = F.softplus(-D(fake, level(), draw())).mean()
    out_of_range = F.relu(raw.abs() - 1).pow(2).mean()
    k = cfg.reg_pool
    reg = (F.avg_pool2d(raw, k) - F.avg_pool2d(target, k)).pow(2).mean() if target is not None else raw.new_zeros(())
    G_loss = cfg.adv_weight * adv + cfg.reg_weight * reg + cfg.range_weight * out_of_range
    if cfg.denoise_weight > 0:      # the teacher's one-call denoise of G(z) at a low level, a fixed target
        G_loss = G_loss + cfg.denoise_weight * (raw - _teacher_x0(run, fake.detach(), cfg.denoise_t, draw())).pow(2).mean()
    run.opt_G.zero_grad(set_to_none=True)
    G_loss.backward()
    run.opt_G.step()
    if run.ema is not None:
        run.ema.update(G.unet, run.step)
    values = dict(zip(ONECALL_KEYS[2:8], torch.stack([v.detach().float() for v in (
        adv, reg, out_of_range, D_loss, real_logit.mean(), fake_logit.mean())]).tolist()), auroc=float("nan"))
    if not all(math.isfinite(values[k]) for k in ("adv", "D")):
        raise FloatingPointError(f"one-call fine-tune step {run.step + 1}: a loss is not finite ({values}); "
                                 f"lower lr_G={cfg.lr_G} / lr_D={cfg.lr_D}")
    return values


@torch.no_grad()
def _teacher_x0(run: Run, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """The teacher's x̂0 (clamped to [-1, 1]) of x0 re-noised to level t."""
    teacher = run.aux["teacher"]
    tt = torch.full((len(x0),), t, dtype=torch.long, device=x0.device)
    x_t, _ = run.scheduler.add_noise(x0, tt, noise)
    return run.scheduler.predict_x0(x_t, tt, teacher(x_t, tt)).clamp(-1, 1)


class HeldOutAUROC:
    """Every ``every`` steps, D's AUROC of held-out real images (never trained on) against G's samples of
    fixed latents, with the same fixed levels and noises for both; written into the step's "auroc" entry."""

    def __init__(self, real: torch.Tensor, every: int = 50, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.real, self.every = real, every
        self.z, self.noise = torch.randn(real.shape, generator=g), torch.randn(real.shape, generator=g)

    @torch.no_grad()
    def measure(self, run: Run) -> float:
        dev = run.device
        s = torch.randint(0, run.config.s_max, (len(self.real),), generator=torch.Generator().manual_seed(2)).to(dev)
        fake = run.G(self.z.to(dev))
        real_logit = run.D(self.real.to(dev), s, self.noise.to(dev))
        fake_logit = run.D(fake, s, self.noise.to(dev))
        return auroc(torch.cat([real_logit, fake_logit]).cpu(), torch.arange(2 * len(real_logit)) < len(real_logit))

    def __call__(self, run, metrics, epoch, epoch_ends):
        if run.step % self.every == 0 or run.step == 1:
            run.history["auroc"][-1] = metrics["auroc"] = self.measure(run)


def onecall_run(init, cfg: OneCallConfig, device=None, teacher: dict | None = None) -> Run:
    """A fresh one-call run from the diffusion checkpoint ``init``: G a trainable copy of the teacher UNet read
    at ``cfg.t_star``, D trainable heads on a frozen copy of the teacher's encoder, Adam for both, the EMA."""
    dev = pick_device(device)
    teacher = teacher or teacher_record(init)
    unet, _, scheduler = loaded = load_checkpoint(init, device=dev)
    size = loaded.image_size or 32
    torch.manual_seed(cfg.seed)
    G = OneCallGenerator(copy.deepcopy(unet).train().requires_grad_(True), scheduler, cfg.t_star).to(dev)
    G.freeze(cfg.freeze)
    D = FeatureDiscriminator(unet, scheduler, size, cfg.head_width, cfg.s_max).to(dev)
    run = Run(config=cfg, G=G, D=D, scheduler=scheduler,
              opt_G=torch.optim.Adam([p for p in G.unet.parameters() if p.requires_grad], lr=cfg.lr_G,
                                     betas=cfg.adam_betas),
              opt_D=torch.optim.Adam(D.heads.parameters(), lr=cfg.lr_D, betas=cfg.adam_betas),
              scaler=None, ema=EMA(G.unet, cfg.ema_decay) if cfg.ema_decay > 0 else None, device=dev,
              kind="onecall", info={"image_size": size, "teacher": teacher}, step_fn=onecall_step,
              history_keys=ONECALL_KEYS)
    if cfg.denoise_weight > 0:
        run.aux["teacher"] = unet.eval().requires_grad_(False)
    return run


def onecall_train(init, dataloader, cfg: OneCallConfig | None, max_steps: int, save_dir, heldout: torch.Tensor,
                  resume=None, device=None, progress: bool = True, overwrite: bool = False,
                  teacher: dict | None = None, auroc_every: int = 50) -> TrainResult:
    """Fine-tune a one-call generator from the diffusion checkpoint ``init`` for ``max_steps`` steps in total,
    with every folder rule of ``train``; ``heldout`` (N, C, S, S) real images never trained on measure D's
    AUROC every ``auroc_every`` steps. Returns a ``TrainResult`` (G the EMA generator). Everything is
    checked before a file is touched. Single process."""
    init, teacher, resume, state = check_fine_tune(init, max_steps, resume, teacher, "onecall")
    if state is not None:
        cfg = resumed_config(OneCallConfig, state, cfg, resume)
    run = onecall_run(init, cfg or OneCallConfig(), device, teacher)

    def teacher_pairs(run, folder):        # made once the folder is checked; kept there for a resume
        c = run.config
        if c.reg_weight > 0:
            held = run.aux.get("teacher")                       # the denoise term's teacher, if it is on
            pairs = pairs_in_folder(folder, teacher["sha256"], lambda: held or load_checkpoint(init, device=run.device)[0],
                                    run.scheduler, c.pairs, c.pairs_steps, mix(11, c.seed), tuple(heldout.shape[1:]),
                                    run.device, progress, eta=c.pairs_eta)
            run.aux["pairs"] = {k: v.to(run.device) for k, v in pairs.items()}     # on the device once
    return fine_tune_in_folder(run, state, dataloader, save_dir, max_steps, resume, overwrite, init, progress,
                               "one-call fine-tune", [HeldOutAUROC(heldout, auroc_every)], teacher_pairs)
