"""Training: one step of the Diffusion + GAN hybrid, and ``train``, a flat loop of such steps.

Data: batches x0 (B, C, S, S) in [-1, 1] (ERRATA 9), S a multiple of 8, at least 32; a batch may
be a tensor, an (x, y) tuple or list, or a dict with key "image" (as the seed accepts). t is (B,)
int64 in [0, T).

The corrected step (``train_step``), per batch:
1. one generator forward: eps_pred = G(x_t, t), diff = ||eps - eps_pred||^2, and the fake is the
   predicted clean image x0_pred of that same pass, clamped to [-1, 1] (ERRATA 2);
2. D step on (x0, x0_pred.detach()): softplus(-D(real)) + softplus(D(fake)) (+ R1);
3. G step on diff + w * adv with D frozen (ERRATA 4); then the EMA update (ERRATA 12).
Steps 2 and the adversarial part of 3 run only when ``adv_weight`` > 0, after the warm-up and for
images with t < ``adv_t_max``; the default, ``adv_weight=0``, is pure diffusion (``config.py`` says why).
The seed's loop as written (``train_step_as_written``, ``TrainConfig.variant="as_written"``) is a
separate function, for the lesson: a second forward G(add_noise(x0, 0)) as the fake (a noise
prediction), weight 0.1, D not frozen, no warm-up.

Inside ``train``, t and the noise of each sample come from a generator seeded by (seed, step,
the sample's index in the global batch): a run resumes exactly, and 2 processes x batch B draw
what 1 process x batch 2B draws.
"""
from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from . import distributed
from .checkpoints import _unwrap, save_history_json, write_checkpoint
from .config import TrainConfig, resolve_amp
from .data import training_record
from .folders import (FolderLock, check_final_not_longer, check_run_folder, check_writable, clear_run,
                      final_step, local_path, retire_final)
from .losses import (diffusion_forward, diffusion_loss, discriminator_loss, fake_images,
                     generator_adv_loss)
from .run import HISTORY_KEYS, Run, build_run, resume_run
from .phantoms import phantom_class
from .sampling import sample_grid

__all__ = ["train", "train_step", "train_step_as_written", "TrainResult", "check_batch", "keyed_t_and_noise",
           "keyed_label_dropout",
           "progress_text", "HISTORY_KEYS", "Run", "build_run", "resume_run"]

NAN = float("nan")
LOSS_KEYS = ("diff", "adv", "adv_w", "D", "D_real", "D_fake")


class TrainResult(tuple):
    """Unpacks as ``G, D, scheduler`` like the seed's ``train``; G is the EMA generator in eval mode
    (the one to sample from). Also ``.G_raw`` (last optimiser weights), ``.history`` (per-step
    lists, keys HISTORY_KEYS), ``.checkpoint`` (path of the last checkpoint written), ``.run`` and
    ``.stopped_by`` (None, or "SIGINT", "SIGTERM", "KeyboardInterrupt" when it stopped early)."""

    def __new__(cls, run: Run, checkpoint, stopped_by=None):
        self = super().__new__(cls, (run.G_sample.eval(), run.D, run.scheduler))
        self.G, self.D, self.scheduler = self
        self.G_raw, self.history, self.run = run.G, run.history, run
        self.checkpoint, self.stopped_by = checkpoint, stopped_by
        return self


# ---------------------------------------------------------------------------------------- checks
def _images(batch) -> torch.Tensor:
    """The image tensor of a batch: a tensor, batch[0] of a tuple/list, or batch['image']."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"a dict batch needs the key 'image' (got keys {sorted(batch)})")
        return batch["image"]
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _class_labels(batch, num_classes: int, step: int) -> torch.Tensor:
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


def keyed_label_dropout(labels: torch.Tensor, p: float, num_classes: int, seed: int, step: int, index) -> torch.Tensor:
    """Label dropout keyed like the noise, by (seed, step, sample index): the same on 1 or N processes."""
    g = torch.Generator()
    u = torch.tensor([torch.rand(1, generator=g.manual_seed(_mix(5, seed, step, int(i)))).item() for i in index])
    return torch.where(u.to(labels.device) < p, torch.full_like(labels, num_classes), labels)


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


def _check_finite(losses: torch.Tensor, adv_on: bool, step: int, cfg: TrainConfig) -> dict:
    """The losses as floats (one device sync); FloatingPointError naming the step if one is not finite."""
    values = dict(zip(LOSS_KEYS, losses.tolist()))
    bad = [k for k in (("diff", "adv", "adv_w", "D") if adv_on else ("diff",)) if not math.isfinite(values[k])]
    if bad:
        raise FloatingPointError(
            f"step {step + 1}: loss {', '.join(f'{k}={values[k]}' for k in bad)} is not finite; training "
            f"diverged. Lower the learning rate (lr_G={cfg.lr_G}, lr_D={cfg.lr_D}) or adv_weight, and check "
            "that the data are scaled to [-1, 1]")
    return values


# ---------------------------------------------------------------------------------------- one step
def _mix(*keys: int) -> int:
    """A 63-bit seed from integers (the first one a tag naming the use), so that neighbouring keys
    give unrelated random streams."""
    h = 0x94D049BB133111EB
    for k in keys:
        h = ((h ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) % 2**64
    return h % 2**63


def keyed_t_and_noise(seed: int, step: int, index, T: int, shape, device=None):
    """t (B,) int64 in [0, T) and noise (B, *shape) ~ N(0, 1), sample i drawn from its own generator
    seeded by (seed, step, index[i]): the draws do not depend on how a batch is split over processes."""
    g, ts, eps = torch.Generator(), [], []
    for i in index:
        g.manual_seed(_mix(3, seed, step, int(i)))
        ts.append(torch.randint(0, T, (1,), generator=g))
        eps.append(torch.randn(tuple(shape), generator=g))
    return torch.cat(ts).to(device), torch.stack(eps).to(device)


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
    last = _unwrap(G).final.weight
    s = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
    (g_diff,) = torch.autograd.grad(diff * s, last, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv * s, last, retain_graph=True)
    ratio = g_diff.float().norm() / (g_adv.float().norm() + 1e-4 * s)
    return cfg.adv_weight * ratio.clamp(0, cfg.adaptive_max).detach()


def _finish_G(G, G_loss, opt_G, ema, scaler, step) -> None:
    """The G update and what follows every step: scaler update, EMA update."""
    opt_G.zero_grad(set_to_none=True)
    _backward_step(G_loss, opt_G, scaler)
    if scaler is not None and scaler.is_enabled():
        scaler.update()
    if ema is not None:
        ema.update(_unwrap(G), step)


def _autocast(cfg, x0):
    amp_dtype, _ = resolve_amp(cfg.amp, x0.device)
    return torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def _step_losses(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema=None, scaler=None, t=None, noise=None,
                 D_ddp=None, agree=bool, labels=None):
    """The corrected step; returns (losses (6,) tensor in LOSS_KEYS order, whether the GAN term ran)."""
    autocast = _autocast(cfg, x0)
    if t is None:
        t = torch.randint(0, scheduler.T, (x0.size(0),), device=x0.device)
    with autocast:
        out = diffusion_forward(G, x0, t, scheduler, noise, labels)
    nan = torch.tensor(NAN, device=x0.device)
    diff, adv, w, D_loss, D_real, D_fake = out.loss, nan, nan, nan, nan, nan
    keep = t < cfg.adv_t_max if cfg.adv_t_max is not None else torch.ones_like(t, dtype=torch.bool)
    # on every rank or none (the D step is a collective under DDP): warm-up over, lightly noised images
    adv_on = cfg.adv_weight > 0 and step >= cfg.adv_warmup_steps and agree(bool(keep.any()))
    G_loss = diff
    if adv_on:
        real, fake = x0[keep], out.x0_pred[keep]
        with autocast:
            D_loss, D_real, D_fake = discriminator_loss(D_ddp or D, real, fake.detach(), cfg.r1_gamma)
        opt_D.zero_grad(set_to_none=True)
        _backward_step(D_loss, opt_D, scaler)
        with autocast:
            adv = generator_adv_loss(D, fake, freeze_D=True)     # the bare D: no gradient into its weights
        w = (_adaptive_weight(G, diff, adv, cfg, scaler) if cfg.adaptive_adv_weight
             else torch.tensor(cfg.adv_weight, device=x0.device))
        G_loss = diff + w * adv
    _finish_G(G, G_loss, opt_G, ema, scaler, step)
    return torch.stack([v.detach().float() for v in (diff, adv, w, D_loss, D_real, D_fake)]), adv_on


def _step_losses_as_written(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema=None, scaler=None):
    """The seed's loop, line by line; returns (losses (6,), True)."""
    autocast = _autocast(cfg, x0)
    t = torch.randint(0, scheduler.T, (x0.size(0),)).to(x0.device)
    with autocast:
        diff = diffusion_loss(G, x0, t, scheduler)
        fake = fake_images(G, x0, scheduler, "as_written")      # 2nd forward: a noise prediction
        D_loss, D_real, D_fake = discriminator_loss(D, x0, fake.detach())
    opt_D.zero_grad()
    _backward_step(D_loss, opt_D, scaler)
    with autocast:
        adv = generator_adv_loss(D, fake, freeze_D=False)        # fills D's .grad (ERRATA 4)
    w = torch.tensor(0.1, device=x0.device)
    _finish_G(G, diff + w * adv, opt_G, ema, scaler, step)
    return torch.stack([v.detach().float() for v in (diff, adv, w, D_loss, D_real, D_fake)]), True


def train_step_as_written(G, D, opt_G, opt_D, x0, scheduler, cfg: TrainConfig, step: int, ema=None,
                          scaler=None) -> dict:
    """The seed's training step as written (two G forwards, the noise prediction as the fake, D not
    frozen, w = 0.1); returns floats diff, adv, adv_w, D, D_real, D_fake. For the side-by-side lesson."""
    return _check_finite(*_step_losses_as_written(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema, scaler),
                         step, cfg)


def train_step(G, D, opt_G, opt_D, x0, scheduler, cfg: TrainConfig, step: int, ema=None, scaler=None, *,
               t=None, noise=None, D_ddp=None, agree=bool, labels=None) -> dict:
    """One step on x0 (B, C, S, S) in [-1, 1]; returns floats diff, adv, adv_w, D, D_real, D_fake.

    ``cfg.variant="as_written"`` runs :func:`train_step_as_written` instead. ``t`` (B,) and ``noise``
    (B, C, S, S) default to fresh draws; ``labels`` (B,) (after dropout) go to a class-conditional G. Under DDP, G is the DDP-wrapped generator, D the bare
    discriminator (for the frozen pass of the generator loss), ``D_ddp`` its DDP wrapper (for D's own
    loss) and ``agree`` makes the "adversarial term on this step" decision the same on every rank.
    D's values are nan on steps without an adversarial term (adv_weight 0, warm-up, no t < adv_t_max).
    Raises FloatingPointError naming ``step`` when a loss is not finite.
    """
    if cfg.variant == "as_written":
        return train_step_as_written(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema, scaler)
    losses, adv_on = _step_losses(G, D, opt_G, opt_D, x0, scheduler, cfg, step, ema, scaler, t, noise, D_ddp, agree,
                                  labels)
    return _check_finite(losses, adv_on, step, cfg)


def progress_text(metrics: dict, pure: bool = False) -> str:
    """The progress bar's text, e.g. "Diff 0.0512 | Adv 0.8413 | D 1.3125"; "off" while a loss is NaN
    because the adversarial term is not on yet (warm-up); "Diff 0.0512 | pure diffusion" for a run
    without it (``pure``: adv_weight = 0)."""
    if pure:
        return f"Diff {metrics['diff']:.4f} | pure diffusion"
    return " | ".join(f"{k} " + ("off" if math.isnan(metrics[m]) else f"{metrics[m]:.4f}")
                      for k, m in (("Diff", "diff"), ("Adv", "adv"), ("D", "D")))


# ---------------------------------------------------------------------------------------- the loop
class StopSignals:
    """While active, Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the current step, so the
    checkpoint it saves lies between two steps. A second Ctrl-C in a single process quits at once,
    without saving. ``requested`` holds the signal's name ("SIGINT", "SIGTERM") or None."""
    REASONS = (None, "KeyboardInterrupt", "SIGINT", "SIGTERM")

    def __init__(self, ctx, say=print):
        self.ctx, self.say, self.requested, self._old = ctx, say, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT and not self.ctx.distributed:
            raise KeyboardInterrupt          # the second Ctrl-C: quit now
        if not self.requested and self.ctx.is_main:
            self.say(f"\n{signal.Signals(signum).name}: stopping after this step and saving "
                     "interrupted.pth" + ("" if self.ctx.distributed else " (Ctrl-C again quits without saving)"))
        self.requested = self.requested or signal.Signals(signum).name

    def agreed(self, ctx) -> bool:
        """Whether any rank was asked to stop; every rank then takes the strongest reason
        (SIGTERM > SIGINT > a KeyboardInterrupt from a callback) as its own ``requested``."""
        code = ctx.max_int(self.REASONS.index(self.requested))
        self.requested = self.REASONS[code]
        return code > 0

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)
        return False


def _seed_epoch(dataloader, seed: int, epoch: int) -> None:
    """Seed what shuffles an epoch from (seed, epoch): the global generators (a DataLoader without a
    generator draws its order from them), the loader's own generators and a sampler's ``set_epoch``."""
    s = _mix(1, seed, epoch)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    sampler = getattr(dataloader, "sampler", None)
    batch_sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None)
    for smp in {id(x): x for x in (sampler, batch_sampler) if x is not None}.values():
        if hasattr(smp, "set_epoch"):
            smp.set_epoch(epoch)
        if isinstance(getattr(smp, "generator", None), torch.Generator):
            smp.generator.manual_seed(s)
    if isinstance(getattr(dataloader, "generator", None), torch.Generator):
        dataloader.generator.manual_seed(s)


def _batches(dataloader, seed: int, position: tuple[int, int], epochs: int):
    """Yield (epoch, batch, whether it is the epoch's last) from ``position`` = (epoch, batches done)
    to the end of epoch ``epochs - 1``; each epoch's order comes from (seed, epoch)."""
    first, done = position
    for epoch in range(first, epochs):
        _seed_epoch(dataloader, seed, epoch)
        it = iter(dataloader)
        skip = done if epoch == first else 0
        if sum(1 for _, _ in zip(range(skip), it)) < skip:
            raise ValueError(f"the checkpoint stopped after batch {skip} of epoch {epoch}, but this dataloader "
                             "has fewer batches: resume with the same data and batch size")
        nxt = next(it, None)
        while nxt is not None:
            batch, nxt = nxt, next(it, None)
            yield epoch, batch, nxt is None


def _check_loader(dataloader, run: Run, ctx) -> None:
    """Refuse a loader that is not sharded under DDP, or that does not fit where the run stopped."""
    if ctx.distributed and not distributed.is_sharded(dataloader):
        raise ValueError(f"this process is rank {ctx.rank} of {ctx.world} (torchrun), but its dataloader is not "
                         "sharded, so every process would train on the same images: use make_dataloader(...), "
                         "which shards under torchrun, or DataLoader(dataset, sampler=DistributedSampler(dataset))")
    n = len(dataloader) if hasattr(dataloader, "__len__") else None
    if ctx.distributed and not ctx.same_on_all(n or 0):
        raise ValueError("the processes' dataloaders have different numbers of batches; every rank must run "
                         "the same number of steps (DistributedSampler gives equal shards)")
    if run.data and run.position[1] and n and run.data.get("batches_per_epoch") not in (None, n):
        raise ValueError(f"the checkpoint stopped inside an epoch of {run.data['batches_per_epoch']} batches "
                         f"(global batch {run.data['batch_size']}), but this dataloader has {n} batches per epoch: "
                         "resume with the same data, --batch-size and number of processes")


def _wrap(run: Run, ctx):
    """The modules the loop calls: G (DDP-wrapped and/or compiled) and D's DDP wrapper (or None)."""
    cfg = run.config
    if not ctx.distributed:
        return (torch.compile(run.G) if cfg.compile else run.G), None
    if cfg.variant == "as_written" or cfg.r1_gamma > 0 or cfg.adaptive_adv_weight:
        raise ValueError("under torchrun (DDP) the seed's as-written loop, R1 and the adaptive adversarial "
                         "weight are not supported (each needs a second pass through a wrapped network); "
                         "run them in a single process, or set variant='corrected', r1_gamma=0, "
                         "adaptive_adv_weight=False")
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # gradients are all-reduced in place (no bucket copy); with gloo on a CPU in one bucket after the
    # backward pass (measured faster on 2 cores than overlapping buckets, which compete for the cores)
    opts = dict(device_ids=ids, gradient_as_bucket_view=True, **({} if ids else {"bucket_cap_mb": 1000}))
    G = DDP(run.G, **opts)
    return (torch.compile(G) if cfg.compile else G), DDP(run.D, **opts)


def _run_step(run: Run, G, D_ddp, x0: torch.Tensor, ctx, labels=None) -> dict:
    """One step of the loop: keyed t and noise (and label dropout), the step, losses averaged over ranks,
    the NaN check."""
    cfg, step = run.config, run.step
    torch.manual_seed(_mix(2, cfg.seed, step))     # what the step draws from the global generator
    if cfg.variant == "as_written":
        losses, adv_on = _step_losses_as_written(G, run.D, run.opt_G, run.opt_D, x0, run.scheduler, cfg, step,
                                                 run.ema, run.scaler)
    else:
        index = torch.arange(len(x0)) * ctx.world + ctx.rank      # position in the global batch
        t, noise = keyed_t_and_noise(cfg.seed, step, index, run.scheduler.T, x0.shape[1:], x0.device)
        noise = noise.contiguous(memory_format=torch.channels_last) if run.channels_last else noise
        if labels is not None:
            labels = keyed_label_dropout(labels, cfg.label_dropout, cfg.num_classes, cfg.seed, step, index).to(x0.device)
        losses, adv_on = _step_losses(G, run.D, run.opt_G, run.opt_D, x0, run.scheduler, cfg, step, run.ema,
                                      run.scaler, t, noise, D_ddp, ctx.all_true, labels)
    return _check_finite(ctx.mean(losses), adv_on, step, cfg)


def _sample_grid_due(run: Run, save_dir: Path, ctx):
    """Every ``sample_every`` steps rank 0 saves a grid of the EMA generator's samples; returns them or None."""
    cfg = run.config
    if not (cfg.sample_every and run.step % cfg.sample_every == 0 and ctx.is_main):
        return None
    return sample_grid(run.G_sample, run.scheduler, cfg.image_size, save_dir / "samples" / f"step_{run.step:06d}.png")


def _callback_says_stop(callback, run: Run, epoch: int, metrics: dict, samples, ctx) -> bool:
    """Call ``callback(info)``; True when it raised KeyboardInterrupt (a stop after this step)."""
    try:
        callback(SimpleNamespace(step=run.step, epoch=epoch, metrics=metrics, G=run.G_sample, G_raw=run.G, D=run.D,
                                 scheduler=run.scheduler, config=run.config, samples=samples, rank=ctx.rank, run=run))
    except KeyboardInterrupt:
        return True
    return False


def _checkpoints_due(run: Run, epoch: int, epoch_ends: bool) -> list[str]:
    """The checkpoint files due after this step: epoch_XXXX.pth at every checkpoint_every-th epoch's end,
    last.pth every save_every steps."""
    cfg, names = run.config, []
    if epoch_ends and cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
        names.append(f"epoch_{epoch + 1:04d}.pth")
    if cfg.save_every and run.step % cfg.save_every == 0:
        names.append("last.pth")
    return names


def _save(run: Run, save_dir: Path, name: str, ctx) -> Path:
    """Rank 0 writes the checkpoint ``name`` and history.json; every rank gets the path."""
    path = save_dir / name
    if ctx.is_main:
        write_checkpoint(path, run.state_dict())
        save_history_json(run.history, save_dir)
    return path


def _on_main(ctx, action):
    """Run ``action`` (file work) on rank 0 alone; a ValueError there stops every rank, with rank 0's
    message on rank 0. Returns what ``action`` returned (None on the other ranks)."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = action()
        except ValueError as err:
            error = err
    if ctx.any_true(error is not None):
        raise error or ValueError("rank 0 refused the save folder (its message says why); every rank stops")
    return result


def _warn_unit_range(x0: torch.Tensor) -> None:
    """Warn when a batch looks like images in [0, 1] rather than [-1, 1] (half the range unused)."""
    lo, hi = x0.min().item(), x0.max().item()
    if 0 <= lo and hi <= 1:
        warnings.warn(f"the first batch lies in [0, 1] (min {lo:.3g}, max {hi:.3g}), but training expects images "
                      "in [-1, 1]: scale them with x * 2 - 1 (make_dataloader does it for you)", stacklevel=4)


def _diverged(err: FloatingPointError, last: tuple[Path, int] | None, cfg: TrainConfig) -> FloatingPointError:
    """The divergence message plus where to go back to: nothing is saved for the diverged steps."""
    lr = f"{min(cfg.lr_G, cfg.lr_D) / 10:g}"
    if last is None:
        hint = (f"No checkpoint was saved before it diverged: start again with a lower learning rate "
                f"(--lr {lr}, or config.replace(lr_G={lr}, lr_D={lr})).")
    else:
        hint = (f"Nothing was saved for the diverged steps; the last checkpoint on disk is {last[0]} (step "
                f"{last[1]}): resume from it with a lower learning rate (--resume {last[0]} --lr {lr}, or "
                f"resume=..., config=config.replace(lr_G={lr}, lr_D={lr})).")
    return FloatingPointError(f"{str(err).rstrip('.')}. {hint}")


def train(dataloader, image_channels: int | None = None, timesteps: int | None = None, device=None,
          epochs: int = 100, save_dir="checkpoints", config: TrainConfig | None = None, resume=None,
          max_steps: int | None = None, callback=None, progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train G and D on ``dataloader``; returns ``G, D, scheduler`` (a TrainResult, see its docstring).

    A new run: ``config=None`` takes ``TrainConfig.for_device(device)`` with the image size read from
    the data; ``image_channels`` defaults to 1 and ``timesteps`` (T) to 1000. ``resume`` (a
    checkpoint path) continues a run: unset arguments take the checkpoint's values. ``epochs`` counts
    from the start of the run; ``max_steps`` (total steps) stops earlier.

    Writes ``epoch_XXXX.pth`` every ``config.checkpoint_every`` epochs (and ``last.pth`` every
    ``config.save_every`` steps, for long runs), then ``final_model.pth`` and
    ``history.json`` into ``save_dir``. Ctrl-C (or SIGTERM) stops after the current step and saves
    ``interrupted.pth`` instead; so does a KeyboardInterrupt raised by ``callback(info)``, which runs
    after every step (info.step, .epoch, .metrics, .G (EMA), .G_raw, .D, .scheduler, .config, .samples,
    .rank, .run). Resuming is exact: each epoch's order comes from (seed, epoch), each sample's t and
    noise from (seed, step, index). Under torchrun (WORLD_SIZE > 1) every process runs this with its
    own shard of the data (see diffgan_lib.distributed); rank 0 alone writes files and prints.

    One run, one folder: ``save_dir`` must be writable (checked before anything is built) and is
    locked (``train.lock``) while the run trains; a folder holding another run's checkpoints is
    refused unless ``resume`` names a file in it or ``overwrite=True``, which deletes that run's
    checkpoints, history.json and training grids first. Resuming never replaces a longer run's
    ``final_model.pth`` unless ``overwrite=True``. See the README, "Folders, interrupts and exit codes".
    Checkpoints record which images the run trains on (``members``, read by ``training_members``) when
    the loader's dataset can say: make_dataloader's datasets and Subsets of them.
    """
    ctx = distributed.setup(device)
    save_dir = local_path(save_dir, "save_dir")
    resume = None if resume is None else local_path(resume, "resume")
    lock = FolderLock(save_dir)
    try:
        old = _on_main(ctx, lambda: (check_writable(save_dir, "save_dir"), lock.acquire(),
                                     check_run_folder(save_dir, resume, overwrite))[-1])   # an old run to clear
        if resume is not None:
            run = resume_run(resume, config, image_channels, timesteps, ctx.device, ema=ctx.is_main)
        else:
            if config is None or config.image_size is None:     # read the image side from the data
                side = _images(next(iter(dataloader))).shape[-1]
                config = (config or TrainConfig.for_device(ctx.device)).replace(image_size=side)
            run = build_run(config, image_channels or 1, timesteps or 1000, ctx.device, ema=ctx.is_main)
        _record_members(run, dataloader, resume is not None, ctx.is_main)
        return _loop(run, ctx, dataloader, epochs, save_dir, max_steps, callback, progress, old or [],
                     resume=resume, overwrite=overwrite)
    finally:
        if ctx.is_main:
            lock.release()
        ctx.close()


def _record_members(run: Run, dataloader, resumed: bool, say: bool) -> None:
    """Set ``run.members``: the images this run trains on (``data.training_record`` of the loader's dataset),
    which its checkpoints keep. A run resumed on other data than its checkpoint records has trained on
    both, which no single record says: its members become unknown (None), with a warning."""
    record = training_record(getattr(dataloader, "dataset", None))
    if not resumed or run.step == 0:
        run.members = record
    elif run.members is not None and run.members != record:
        if say:
            was = f"{run.members.get('source')} ({run.members.get('count', '?')} images)"
            warnings.warn(f"the checkpoint records training on {was}, but this run continues on other data, so "
                          "its checkpoints will not say which images it trained on (members=None); resume with "
                          "the same data to keep the record", stacklevel=3)
        run.members = None


def _prepare_folder(save_dir: Path, old: list, overwrite: bool, last_step) -> None:
    """Rank 0, with the folder locked: refuse a shorter final over a longer one, then clear the old run's
    files ``old`` (what check_run_folder found when train() began, non-empty only with overwrite)."""
    check_final_not_longer(save_dir, last_step, overwrite)
    if old:
        clear_run(save_dir, old)


def _save_end(run: Run, save_dir: Path, stopped_by, overwrite: bool, ctx) -> Path:
    """interrupted.pth after a stop, else final_model.pth. An earlier final_model.pth that is not this
    run's end (a stop came later, or it is longer and nobody said overwrite) is renamed final_model_step_N.pth."""
    if ctx.is_main and (stopped_by or not overwrite and (final_step(save_dir / "final_model.pth") or 0) > run.step):
        retire_final(save_dir, say=print)
    return _save(run, save_dir, "interrupted.pth" if stopped_by else "final_model.pth", ctx)


def _loop(run: Run, ctx, dataloader, epochs, save_dir, max_steps, callback, progress, old: list, resume=None,
          overwrite=False) -> TrainResult:
    """The training loop: one stop condition (last step reached, or a stop agreed by every rank)."""
    cfg, started, first_step = run.config, time.time(), run.step
    pure = cfg.adv_weight == 0 and cfg.variant != "as_written"     # D never trains: say so on the bar
    _check_loader(dataloader, run, ctx)
    G, D_ddp = _wrap(run, ctx)
    per_epoch = len(dataloader) if hasattr(dataloader, "__len__") else None
    by_epochs = (epochs - run.position[0]) * per_epoch - run.position[1] + run.step if per_epoch else math.inf
    last_step = min(max_steps if max_steps is not None else math.inf, by_epochs)
    _on_main(ctx, lambda: _prepare_folder(save_dir, old, overwrite, max(last_step, run.step)))
    last_saved = (resume, first_step) if resume is not None else None     # the last checkpoint on disk
    bar = tqdm(total=None if math.isinf(last_step) else last_step, initial=run.step, unit="step",
               disable=not (progress and ctx.is_main))
    checkpoint = None
    try:
        with StopSignals(ctx, say=bar.write) as stop:
            if progress and ctx.is_main:
                bar.write(f"training steps {run.step} -> {last_step} on {ctx.world} x {ctx.device}; Ctrl-C stops "
                          "after the current step and saves interrupted.pth")
            for epoch, batch, epoch_ends in _batches(dataloader, cfg.seed, run.position, epochs):
                if run.step >= last_step or stop.agreed(ctx):
                    break
                x0 = _images(batch)
                check_batch(x0, run.image_channels, cfg.image_size, run.step + 1)
                labels = _class_labels(batch, cfg.num_classes, run.step + 1) if cfg.num_classes else None
                if run.step == first_step and ctx.is_main:
                    _warn_unit_range(x0)
                x0 = x0.to(ctx.device, non_blocking=True).float()
                x0 = x0.contiguous(memory_format=torch.channels_last) if run.channels_last else x0
                run.data = {"batch_size": len(x0) * ctx.world, "batches_per_epoch": per_epoch, "world_size": ctx.world}
                try:
                    metrics = _run_step(run, G, D_ddp, x0, ctx, labels)
                except FloatingPointError as err:
                    raise _diverged(err, last_saved, cfg) from None
                run.record(metrics, epoch, epoch_ends)
                bar.update(1)
                if run.step % cfg.log_every == 0:
                    bar.set_postfix_str(f"epoch {epoch} | " + progress_text(metrics, pure=pure))
                samples = _sample_grid_due(run, save_dir, ctx)
                if callback is not None and _callback_says_stop(callback, run, epoch, metrics, samples, ctx):
                    stop.requested = "KeyboardInterrupt"
                for name in _checkpoints_due(run, epoch, epoch_ends):
                    checkpoint = _save(run, save_dir, name, ctx)
                    last_saved = (checkpoint, run.step)
    finally:
        bar.close()                                 # also on errors: the message then stands alone
    stopped_by = stop.requested if run.step < last_step else None
    if run.step > first_step or checkpoint is None:
        checkpoint = _save_end(run, save_dir, stopped_by, overwrite, ctx)
    ctx.barrier()                                   # the file exists for every rank from here on
    if ctx.is_main and (progress or stopped_by):
        print(f"Interrupted at step {run.step} (epoch {run.position[0]}); saved {checkpoint}; resume from it to "
              "continue" if stopped_by else
              f"trained {run.step - first_step} steps in {time.time() - started:.0f} s; final checkpoint: {checkpoint}")
    return TrainResult(run, checkpoint, stopped_by)
