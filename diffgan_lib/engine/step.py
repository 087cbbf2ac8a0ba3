"""One optimisation step of diffusion training (the corrected step), and what checks a batch.

Data: x0 (B, C, S, S) in [-1, 1] (ERRATA 9), S a multiple of 8, at least 32; t (B,) int64 in [0, T).

``train_step(run, x0, labels)``, per batch:
1. one generator forward: eps_pred = G(x_t, t), diff = ||eps - eps_pred||^2; the fake is the
   predicted clean image x0_pred of that same pass, clamped to [-1, 1] (ERRATA 2);
2. (the seed's hybrid only, ``adv_weight`` > 0, after the warm-up, for images with t < ``adv_t_max``)
   a D step on (x0, x0_pred.detach()): softplus(-D(real)) + softplus(D(fake));
3. a G step on diff + w * adv with D frozen (ERRATA 4); then the EMA update (ERRATA 12).
With the default ``adv_weight=0`` it is pure diffusion and D never trains. The seed's loop as
written is a different step function, taught in notebook 05: ``diffgan_lib.course.seed_loop``.
"""
from __future__ import annotations

import math

import torch

from ..core.losses import diffusion_forward, discriminator_loss, generator_adv_loss
from ..data.phantoms import phantom_class
from .batches import mix
from .precision import resolve_precision

__all__ = ["train_step", "keyed_t_and_noise", "keyed_label_dropout", "batch_images", "batch_labels",
           "check_batch", "check_finite", "progress_text", "LOSS_KEYS"]

LOSS_KEYS = ("diff", "adv", "adv_w", "D", "D_real", "D_fake")


def keyed_t_and_noise(seed: int, step: int, index, T: int, shape, device=None):
    """t (B,) int64 in [0, T) and noise (B, *shape) ~ N(0, 1), sample i drawn from its own generator
    seeded by (seed, step, index[i]): the draws do not depend on how a batch is split over processes."""
    g, ts, eps = torch.Generator(), [], []
    for i in index:
        g.manual_seed(mix(3, seed, step, int(i)))
        ts.append(torch.randint(0, T, (1,), generator=g))
        eps.append(torch.randn(tuple(shape), generator=g))
    return torch.cat(ts).to(device), torch.stack(eps).to(device)


def keyed_label_dropout(labels: torch.Tensor, p: float, num_classes: int, seed: int, step: int, index) -> torch.Tensor:
    """Each label replaced by "no class" (index ``num_classes``) with probability p, keyed like the noise."""
    g = torch.Generator()
    u = torch.tensor([torch.rand(1, generator=g.manual_seed(mix(5, seed, step, int(i)))).item() for i in index])
    return torch.where(u.to(labels.device) < p, torch.full_like(labels, num_classes), labels)


def train_step(run, x0: torch.Tensor, labels: torch.Tensor | None = None, *, t=None, noise=None) -> dict:
    """The corrected step at ``run.step`` on x0 (B, C, S, S) in [-1, 1]; returns floats diff, adv, adv_w,
    D, D_real, D_fake (D's values nan on steps without the adversarial term). ``t`` and ``noise`` default
    to the keyed draws of (seed, step, sample index); ``labels`` (B,) go to a conditional G after the
    keyed label dropout. Does not advance ``run.step`` (the loop's ``run.record`` does). Raises
    FloatingPointError naming the step when a loss is not finite."""
    cfg, step, ctx, T = run.config, run.step, run.ctx, run.scheduler.T
    torch.manual_seed(mix(2, cfg.seed, step))     # what the step draws from the global generator
    index = torch.arange(len(x0)) * ctx.world + ctx.rank      # position in the global batch
    if t is None or noise is None:
        keyed_t, keyed_noise = keyed_t_and_noise(cfg.seed, step, index, T, x0.shape[1:], x0.device)
        t, noise = (keyed_t if t is None else t), (keyed_noise if noise is None else noise)
    noise = noise.contiguous(memory_format=torch.channels_last) if run.channels_last else noise
    if labels is not None:
        labels = keyed_label_dropout(labels, cfg.label_dropout, cfg.num_classes, cfg.seed, step, index).to(x0.device)
    amp_dtype, _ = resolve_precision(cfg.precision, x0.device)
    autocast = torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    with autocast:
        out = diffusion_forward(run.G_train, x0, t, run.scheduler, noise, labels)
    nan = torch.tensor(float("nan"), device=x0.device)
    diff, adv, w, D_loss, D_real, D_fake = out.loss, nan, nan, nan, nan, nan
    keep = t < cfg.adv_t_max if cfg.adv_t_max is not None else torch.ones_like(t, dtype=torch.bool)
    # on every rank or none (the D step is a collective under DDP): warm-up over, lightly noised images
    adv_on = cfg.adv_weight > 0 and step >= cfg.adv_warmup_steps and ctx.all_true(bool(keep.any()))
    G_loss = diff
    if adv_on:
        real, fake = x0[keep], out.x0_pred[keep]
        with autocast:
            D_loss, D_real, D_fake = discriminator_loss(run.D_train, real, fake.detach())
        _backward_step(D_loss, run.opt_D, run.scaler)
        with autocast:
            adv = generator_adv_loss(run.D, fake, freeze_D=True)     # the bare D: no gradient into its weights
        w = torch.tensor(cfg.adv_weight, device=x0.device)
        G_loss = diff + w * adv
    finish_G_step(run, G_loss)
    losses = torch.stack([v.detach().float() for v in (diff, adv, w, D_loss, D_real, D_fake)])
    return check_finite(ctx.mean(losses), ("diff", "adv", "adv_w", "D") if adv_on else ("diff",), run)


def _backward_step(loss, opt, scaler) -> None:
    """zero_grad; loss.backward(); opt.step(), through the GradScaler when there is one (float16)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(opt)
    else:
        loss.backward()
        opt.step()


def finish_G_step(run, G_loss) -> None:
    """The G update and what follows every step: the scaler update, the EMA update."""
    _backward_step(G_loss, run.opt_G, run.scaler)
    if run.scaler is not None and run.scaler.is_enabled():
        run.scaler.update()
    if run.ema is not None:
        run.ema.update(run.G, run.step)


def check_finite(losses: torch.Tensor, must: tuple, run, keys=LOSS_KEYS) -> dict:
    """The losses as floats (one device sync); FloatingPointError naming the step if one of ``must`` is not finite."""
    values = dict(zip(keys, losses.tolist()))
    bad = [k for k in must if not math.isfinite(values[k])]
    if bad:
        cfg = run.config
        raise FloatingPointError(
            f"step {run.step + 1}: loss {', '.join(f'{k}={values[k]}' for k in bad)} is not finite; training "
            f"diverged. Lower the learning rate (lr_G={cfg.lr_G}, lr_D={cfg.lr_D}) or adv_weight, and check "
            "that the data are scaled to [-1, 1]")
    return values


def progress_text(metrics: dict, pure: bool = False) -> str:
    """The progress bar's text, e.g. "Diff 0.0512 | Adv 0.8413 | D 1.3125"; "off" while a loss is NaN
    (warm-up); "Diff 0.0512 | pure diffusion" for a run without the adversarial term (``pure``)."""
    if "diff" not in metrics:      # another step function: its own keys
        return " | ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v))
    if pure:
        return f"Diff {metrics['diff']:.4f} | pure diffusion"
    return " | ".join(f"{k} " + ("off" if math.isnan(metrics[m]) else f"{metrics[m]:.4f}")
                      for k, m in (("Diff", "diff"), ("Adv", "adv"), ("D", "D")))


# ---------------------------------------------------------------------------------------- batches
def batch_images(batch) -> torch.Tensor:
    """The image tensor of a batch: a tensor, batch[0] of a tuple/list, or batch['image']."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"a dict batch needs the key 'image' (got keys {sorted(batch)})")
        return batch["image"]
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def batch_labels(batch, num_classes: int, step: int) -> torch.Tensor:
    """The (B,) int64 class indices of a labelled batch (x, y): y a tensor, or phantom labels
    {"contrast", "lesion"} (PHANTOM_CLASSES). ValueError when a conditional run gets no labels."""
    y = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
    if isinstance(y, dict) and {"contrast", "lesion"} <= set(y):
        y = phantom_class(y)
    if not torch.is_tensor(y):
        raise ValueError(f"step {step}: this model is class-conditional (class_names) but the batch has no labels; "
                         "use make_dataloader(..., return_labels=True), whose batches are (images, labels)")
    y = y.reshape(-1).long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"step {step}: labels span [{int(y.min())}, {int(y.max())}] but the model has "
                         f"{num_classes} classes (0 .. {num_classes - 1}); check class_names")
    return y


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
