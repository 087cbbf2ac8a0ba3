"""Training: one step of the Diffusion + GAN hybrid, and the seed's ``train`` loop around it.

Data: batches x0 (B, C, S, S) in [-1, 1] (ERRATA 9), S divisible by 8; a batch may be a tensor,
an (x, y) tuple or list, or a dict with key "image" (as the seed accepts). t is (B,) int64 in [0, T).

The corrected step (``TrainConfig.variant="corrected"``), per batch:
1. one generator forward: eps_pred = G(x_t, t), diff = ||eps - eps_pred||^2, and the fake is the
   predicted clean image x0_pred of that same pass, clamped to [-1, 1] (ERRATA 2);
2. D step on (x0, x0_pred.detach()): softplus(-D(real)) + softplus(D(fake)) (+ R1);
3. G step on diff + w * adv with D frozen (ERRATA 4); then the EMA update (ERRATA 12).
``variant="as_written"`` runs the seed's loop exactly: a second forward pass G(add_noise(x0, 0))
as the fake (a noise prediction), weight 0.1, D not frozen, no warm-up; for the lesson.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoints import (check_compatible, load_training_state, save_checkpoint, save_history_json,
                          seed_epoch, set_rng_state)
from .config import TrainConfig, resolve_amp
from .device import pick_device
from .discriminator import Discriminator
from .ema import EMA
from .losses import diffusion_forward, diffusion_loss, fake_images, generator_adv_loss
from .sampling import sample_grid
from .scheduler import DiffusionScheduler
from .unet import UNet

__all__ = ["train", "train_step", "TrainResult", "discriminator_loss", "check_batch", "HISTORY_KEYS"]

HISTORY_KEYS = ("step", "epoch", "diff", "adv", "adv_w", "D", "D_real", "D_fake")
NAN = float("nan")


class TrainResult(tuple):
    """Unpacks as ``G, D, scheduler`` like the seed's ``train``; G is the EMA generator in eval mode
    (the one to sample from). Also ``.G_raw`` (last optimiser weights), ``.history`` (per-step
    lists, keys HISTORY_KEYS) and ``.checkpoint`` (path of the last checkpoint written)."""

    def __new__(cls, G, D, scheduler, *, G_raw, history, checkpoint):
        self = super().__new__(cls, (G, D, scheduler))
        self.G, self.D, self.scheduler = G, D, scheduler
        self.G_raw, self.history, self.checkpoint = G_raw, history, checkpoint
        return self


def _images(batch) -> torch.Tensor:
    """The image tensor of a batch: a tensor, batch[0] of a tuple/list, or batch['image']."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"a dict batch needs the key 'image' (got keys {sorted(batch)})")
        return batch["image"]
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def check_batch(x: torch.Tensor, image_channels: int, image_size: int | None, step: int) -> None:
    """Raise ValueError if x is not (B, image_channels, S, S) with finite values in about [-1, 1]."""
    if not torch.is_tensor(x) or x.dim() != 4:
        raise ValueError(f"step {step}: expected a batch of images (B, C, H, W), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if x.shape[1] != image_channels:
        raise ValueError(f"step {step}: the batch has {x.shape[1]} channels but image_channels="
                         f"{image_channels}; pass image_channels={x.shape[1]} or convert the images")
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        raise ValueError(f"step {step}: the batch has side {tuple(x.shape[-2:])} but config.image_size="
                         f"{image_size}; resize the images or use config.replace(image_size=None)")
    lo, hi = torch.aminmax(x.detach().float())
    lo, hi = lo.item(), hi.item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"step {step}: the batch contains NaN or inf values; check the dataset")
    if lo < -1.5 or hi > 1.5:
        raise ValueError(f"step {step}: image values span [{lo:.3g}, {hi:.3g}] but must lie in [-1, 1] "
                         "(the noise has unit variance); scale them, e.g. x / 127.5 - 1 for uint8 pixels")


def discriminator_loss(D, real, fake, r1_gamma: float = 0.0):
    """(D_loss, mean score on real, mean score on fake); D_loss = the sum of ``gan_losses`` + R1.

    Computed from the scores directly so that they can be logged (ERRATA 11: 0 and 2 ln 2 at chance).
    R1 = r1_gamma / 2 * E ||grad_x sum D(x_real)||^2 (Mescheder et al. 2018), in float32 even under
    autocast: a float16 gradient of a gradient overflows.
    """
    s_real, s_fake = D(real).float(), D(fake).float()
    loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
    if r1_gamma > 0:
        with torch.autocast(real.device.type, enabled=False):
            real = real.detach().float().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
        loss = loss + r1_gamma / 2 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
    return loss, s_real.detach().mean(), s_fake.detach().mean()


def _backward_step(loss, opt, scaler) -> None:
    """loss.backward(); opt.step(), through the GradScaler when there is one (float16)."""
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(opt)
    else:
        loss.backward()
        opt.step()


def _adaptive_weight(G, diff, adv, cfg, scaler):
    """VQGAN (Esser et al. 2021, eq. 7): ||grad diff|| / ||grad adv|| at G's last layer, clamped."""
    last = getattr(G, "_orig_mod", G).final.weight
    s = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
    (g_diff,) = torch.autograd.grad(diff * s, last, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv * s, last, retain_graph=True)
    ratio = g_diff.float().norm() / (g_adv.float().norm() + 1e-4 * s)
    return cfg.adv_weight * ratio.clamp(0, cfg.adaptive_max).detach()


def _postfix(metrics: dict) -> str:
    """The progress bar's text, e.g. "Diff 0.0512 | Adv 0.8413 | D 1.3125"; "off" while a loss is NaN
    because the adversarial term is not on yet (warm-up, or adv_weight = 0)."""
    return " | ".join(f"{k} " + ("off" if math.isnan(metrics[m]) else f"{metrics[m]:.4f}")
                      for k, m in (("Diff", "diff"), ("Adv", "adv"), ("D", "D")))


def train_step(G, D, opt_G, opt_D, x0, scheduler, cfg: TrainConfig, step: int, ema=None, scaler=None) -> dict:
    """One step on x0 (B, C, S, S) in [-1, 1]; returns floats diff, adv, adv_w, D, D_real, D_fake.

    D's values are nan on steps without an adversarial term (adv_weight 0, warm-up, no t < adv_t_max).
    Raises FloatingPointError naming ``step`` when a loss is not finite.
    """
    amp_dtype, _ = resolve_amp(cfg.amp, x0.device)
    autocast = torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    nan = torch.tensor(NAN, device=x0.device)
    if cfg.variant == "as_written":                   # ---- the seed's loop, line by line
        t = torch.randint(0, scheduler.T, (x0.size(0),)).to(x0.device)
        with autocast:
            diff = diffusion_loss(G, x0, t, scheduler)
            fake = fake_images(G, x0, scheduler, "as_written")      # 2nd forward: a noise prediction
            D_loss, D_real, D_fake = discriminator_loss(D, x0, fake.detach())
        opt_D.zero_grad()
        _backward_step(D_loss, opt_D, scaler)
        with autocast:
            adv = generator_adv_loss(D, fake, freeze_D=False)        # fills D's .grad (ERRATA 4)
        w, adv_on = torch.tensor(0.1, device=x0.device), True
        G_loss = diff + w * adv
    else:                                             # ---- corrected: one generator forward
        t = torch.randint(0, scheduler.T, (x0.size(0),), device=x0.device)
        with autocast:
            out = diffusion_forward(G, x0, t, scheduler)
        diff, adv, w, D_loss, D_real, D_fake = out.loss, nan, nan, nan, nan, nan
        real, fake = x0, out.x0_pred
        adv_on = cfg.adv_weight > 0 and step >= cfg.adv_warmup_steps
        if adv_on and cfg.adv_t_max is not None:      # only the lightly noised images
            keep = t < cfg.adv_t_max
            real, fake, adv_on = x0[keep], out.x0_pred[keep], bool(keep.any())
        if adv_on:
            with autocast:
                D_loss, D_real, D_fake = discriminator_loss(D, real, fake.detach(), cfg.r1_gamma)
            opt_D.zero_grad(set_to_none=True)
            _backward_step(D_loss, opt_D, scaler)
            with autocast:
                adv = generator_adv_loss(D, fake, freeze_D=True)     # no gradient into D's weights
            w = (_adaptive_weight(G, diff, adv, cfg, scaler) if cfg.adaptive_adv_weight
                 else torch.tensor(cfg.adv_weight, device=x0.device))
            G_loss = diff + w * adv
        else:
            G_loss = diff
    opt_G.zero_grad(set_to_none=True)
    _backward_step(G_loss, opt_G, scaler)
    if scaler is not None and scaler.is_enabled():
        scaler.update()
    if ema is not None:
        ema.update(getattr(G, "_orig_mod", G), step)
    losses = torch.stack([v.detach().float() for v in (diff, adv, w, D_loss, D_real, D_fake)]).tolist()
    values = dict(zip(("diff", "adv", "adv_w", "D", "D_real", "D_fake"), losses))   # one device sync
    bad = [k for k in (("diff", "adv", "adv_w", "D") if adv_on else ("diff",)) if not math.isfinite(values[k])]
    if bad:
        raise FloatingPointError(
            f"step {step + 1}: loss {', '.join(f'{k}={values[k]}' for k in bad)} is not finite; training "
            f"diverged. Lower the learning rate (lr_G={cfg.lr_G}, lr_D={cfg.lr_D}) or adv_weight, and check "
            "that the data are scaled to [-1, 1]")
    return values


def _build(image_channels, timesteps, cfg, dev):
    """G, D, scheduler, optimisers, GradScaler (fp16 only), EMA, and whether to use channels_last."""
    torch.manual_seed(cfg.seed)
    G_raw = UNet(image_channels, cfg.base, cfg.time_embedding).to(dev)
    D = Discriminator(image_channels, cfg.base).to(dev)
    channels_last = cfg.channels_last if cfg.channels_last is not None else dev.type == "cuda"
    if channels_last:
        G_raw, D = G_raw.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    scheduler = DiffusionScheduler(timesteps, schedule=cfg.schedule, device=dev)
    opt_G = torch.optim.Adam(G_raw.parameters(), lr=cfg.lr_G, betas=cfg.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_D, betas=cfg.betas)
    scaler = torch.amp.GradScaler(dev.type) if resolve_amp(cfg.amp, dev)[1] else None
    ema = EMA(G_raw, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return G_raw, D, scheduler, opt_G, opt_D, scaler, ema, channels_last


def train(dataloader, image_channels: int = 1, timesteps: int = 1000, device=None, epochs: int = 100,
          save_dir="checkpoints", config: TrainConfig | None = None, resume=None, max_steps: int | None = None,
          callback=None, progress: bool = True) -> TrainResult:
    """Train G and D on ``dataloader``; returns ``G, D, scheduler`` (a TrainResult, see its docstring).

    ``config=None`` takes ``TrainConfig.for_device(device)`` with the image size read from the data
    (or, when resuming, the checkpoint's config). ``epochs`` counts from the start of the run, also
    when resuming from ``resume`` (a checkpoint path); ``max_steps`` stops earlier. Writes
    ``epoch_XXXX.pth`` every ``config.checkpoint_every`` epochs, ``final_model.pth`` and
    ``history.json`` into ``save_dir``; Ctrl-C (KeyboardInterrupt) saves ``interrupted.pth`` and
    returns. ``callback(info)`` runs after every step (info.step, .epoch, .metrics, .G, .D, ...).
    Resuming is exact on the CPU: every epoch re-seeds the shuffle and the noise from (seed, epoch),
    and a checkpoint inside an epoch (interrupted.pth, max_steps) skips the batches already done and
    restores the random states (exact when Ctrl-C came between two steps, as in a callback).
    """
    dev = pick_device(device)
    state = load_training_state(resume) if resume is not None else None
    if config is None:
        config = (TrainConfig.from_dict(state["config"]) if state and state["config"] else
                  TrainConfig.for_device(dev).replace(image_size=None))
    cfg = config
    G_raw, D, scheduler, opt_G, opt_D, scaler, ema, channels_last = _build(image_channels, timesteps, cfg, dev)
    history = {k: [] for k in HISTORY_KEYS}
    step, epoch, done = 0, 0, 0
    if state is not None:
        check_compatible(state, in_ch=image_channels, base=cfg.base, time_embedding=cfg.time_embedding,
                         timesteps=timesteps, schedule=cfg.schedule)
        G_raw.load_state_dict(state["G"]), D.load_state_dict(state["D"])
        for opt, key, lr in ((opt_G, "opt_G", cfg.lr_G), (opt_D, "opt_D", cfg.lr_D)):
            opt.load_state_dict(state[key])
            for group in opt.param_groups:              # the config's values win over the saved ones
                group["lr"], group["betas"] = lr, cfg.betas
        if ema is not None and state["G_ema"] is not None:
            ema.load_state_dict(state["G_ema"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        step, (epoch, done) = state["step"], state["resume_at"]
        history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}
        if cfg.image_size is None and state["config"]:
            cfg = cfg.replace(image_size=state["config"]["image_size"])
    G = torch.compile(G_raw) if cfg.compile else G_raw
    G_sample = ema.module if ema is not None else G_raw     # what callbacks and the caller sample from
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    last_ckpt, t_start, steps_before, bar = (resume if state else None), time.time(), step, None

    def save(ep, final=False, name=None, resume_at=None):
        path = save_checkpoint(G_raw, D, opt_G, opt_D, ep, save_dir, final, ema=ema, config=cfg,
                               scheduler=scheduler, step=step, history=history, scaler=scaler,
                               name=name, resume_at=resume_at)
        save_history_json(history, save_dir)
        return path

    first_epoch, stop, finished = epoch, False, True
    try:
        for epoch in range(first_epoch, epochs):
            seed_epoch(dataloader, cfg.seed, epoch)
            batches = iter(dataloader)
            done = done if epoch == first_epoch else 0
            if done:                                  # resume inside an epoch: same order, skip what was done
                if sum(1 for _, _ in zip(range(done), batches)) < done:
                    raise ValueError(f"{resume} stopped after batch {done} of epoch {epoch}, but this "
                                     "dataloader has fewer batches: resume with the same data and batch size")
                set_rng_state(state["rng"])
            total = len(dataloader) if hasattr(dataloader, "__len__") else None
            bar = tqdm(total=total, initial=done, desc=f"Epoch {epoch}", disable=not progress,
                       leave=epoch == epochs - 1)         # only the last epoch's bar stays on screen
            finished = False
            for batch in batches:
                x0 = _images(batch)
                check_batch(x0, image_channels, cfg.image_size, step + 1)
                if cfg.image_size is None:
                    cfg = cfg.replace(image_size=x0.shape[-1])
                x0 = x0.to(dev, non_blocking=True).float()
                if channels_last:
                    x0 = x0.contiguous(memory_format=torch.channels_last)
                metrics = train_step(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema=ema, scaler=scaler)
                step, done = step + 1, done + 1
                for k, v in dict(step=step, epoch=epoch, **metrics).items():
                    history[k].append(v)
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix_str(_postfix(metrics))
                samples = None
                if cfg.sample_every and step % cfg.sample_every == 0:
                    samples = sample_grid(G_sample, scheduler, cfg.image_size,
                                          save_dir / "samples" / f"step_{step:06d}.png")
                if callback is not None:
                    callback(SimpleNamespace(step=step, epoch=epoch, batch=done, metrics=metrics, G=G_sample,
                                             G_raw=G_raw, D=D, scheduler=scheduler, config=cfg,
                                             save_dir=save_dir, samples=samples))
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
            else:
                finished = True
            finished = finished or (total is not None and done >= total)
            bar.close()
            if finished and cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                last_ckpt = save(epoch)
            if stop:
                break
    except KeyboardInterrupt:
        last_ckpt = save(epoch, name="interrupted.pth", resume_at=(epoch, done))
        print(f"Interrupted at step {step} (epoch {epoch}); saved {last_ckpt}; continue with "
              f"train(..., resume={str(last_ckpt)!r})")
        return _result(G_sample, D, scheduler, G_raw, history, last_ckpt)
    finally:
        if bar is not None:
            bar.close()
    if first_epoch < epochs:
        last_ckpt = save(epoch, final=True, resume_at=(epoch + 1, 0) if finished else (epoch, done))
    if progress:
        print(f"trained {step - steps_before} steps in {time.time() - t_start:.0f} s; "
              f"final checkpoint: {last_ckpt}")
    return _result(G_sample, D, scheduler, G_raw, history, last_ckpt)


def _result(G_sample, D, scheduler, G_raw, history, checkpoint) -> TrainResult:
    return TrainResult(G_sample.eval(), D, scheduler, G_raw=G_raw, history=history, checkpoint=checkpoint)
