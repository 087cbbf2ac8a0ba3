"""The training loop: one step per batch, for diffusion training and the few-step fine-tune alike.

``loop`` is the whole of training (read it first): take a batch, let the run's step function
optimise on it, count the step, let the callbacks (progress bar, checkpoints, sample grids, the
user's) look at it. It stops when the last step is reached or every rank agreed to stop (Ctrl-C,
SIGTERM, a callback). ``fit`` puts it in its frame: where it starts and ends, the run folder, the
signals, the file written at the end.
"""
from __future__ import annotations

import math
import time
import warnings

import torch
from tqdm.auto import tqdm

from . import distributed
from .batches import batches
from .callbacks import Checkpoints, ProgressBar, SampleGrid, UserCallback
from .signals import StopSignals
from .step import batch_images, batch_labels, check_batch

__all__ = ["loop", "fit", "on_main"]


def loop(run, stream, last_step, stop: StopSignals, callbacks) -> None:
    """Train ``run`` on ``stream`` ((epoch, batch, is the epoch's last) triples) up to ``last_step``."""
    first_step = run.step
    for epoch, batch, epoch_ends in stream:
        if run.step >= last_step or stop.agreed(run.ctx):
            break
        x0, labels = _prepare(run, batch, warn=run.step == first_step)
        metrics = run.step_fn(run, x0, labels)
        run.record(metrics, epoch, epoch_ends)
        for callback in callbacks:
            if callback(run, metrics, epoch, epoch_ends) == "stop":
                stop.requested = stop.requested or "KeyboardInterrupt"


def _prepare(run, batch, warn: bool):
    """(x0 on the run's device in float32, labels or None), both checked; ``warn`` on a [0, 1] batch."""
    x0 = batch_images(batch)
    check_batch(x0, run.image_channels, getattr(run.config, "image_size", None) or run.info.get("image_size"),
                run.step + 1)
    num_classes = getattr(run.config, "num_classes", 0)
    labels = batch_labels(batch, num_classes, run.step + 1) if num_classes else None
    if warn and run.ctx.is_main:
        _warn_unit_range(x0)
    x0 = x0.to(run.device, non_blocking=True).float()
    run.data.update(batch_size=len(x0) * run.ctx.world, world_size=run.ctx.world)
    return (x0.contiguous(memory_format=torch.channels_last) if run.channels_last else x0), labels


def fit(run, dataloader, rundir, epochs: int | None = None, max_steps: int | None = None, callback=None,
        progress: bool = True, resume=None, desc: str | None = None, extra_callbacks=()):
    """Run ``loop`` from ``run.step`` to the last step (``epochs`` counted from the start of the run, or
    ``max_steps`` in total, whichever comes first), in ``rundir`` (opened and locked by the caller).
    ``extra_callbacks`` run after each step before the checkpoints are written (a measurement that fills the
    step's history row). Returns (the checkpoint written last, None or the reason it stopped early)."""
    ctx, cfg, started, first_step = run.ctx, run.config, time.time(), run.step
    per_epoch = _check_loader(dataloader, run)
    run.data = {**(run.data or {}), "batches_per_epoch": per_epoch}
    epochs = epochs if epochs is not None else 10**9
    by_epochs = (epochs - run.position[0]) * per_epoch - run.position[1] + run.step if per_epoch else math.inf
    last_step = min(max_steps if max_steps is not None else math.inf, by_epochs)
    on_main(ctx, lambda: rundir.prepare(max(last_step, run.step)))
    bar = tqdm(total=None if math.isinf(last_step) else last_step, initial=run.step, unit="step", desc=desc,
               disable=not (progress and ctx.is_main))
    grid = SampleGrid(rundir.path, getattr(cfg, "sample_every", 0), cfg.image_size) if getattr(cfg, "sample_every", 0) else None
    saves = Checkpoints(rundir, getattr(cfg, "checkpoint_every", 0), getattr(cfg, "save_every", 0),
                        (resume, first_step) if resume is not None else None, last_step, getattr(cfg, "keep_last", 0))
    pure = run.kind == "diffusion" and cfg.adv_weight == 0 and run.step_fn.__name__ == "train_step"
    callbacks = [ProgressBar(bar, getattr(cfg, "log_every", 1), pure), *([grid] if grid else []), *extra_callbacks, saves,
                 *([UserCallback(callback, grid)] if callback is not None else [])]
    try:
        with StopSignals(ctx, say=bar.write) as stop:
            if progress and ctx.is_main:
                bar.write(f"training steps {run.step} -> {last_step} on {ctx.world} x {ctx.device} in {run.precision}; "
                          "Ctrl-C stops after the current step and saves interrupted.pth")
            try:
                loop(run, batches(dataloader, cfg.seed, run.position, epochs), last_step, stop, callbacks)
            except FloatingPointError as err:
                raise _diverged(err, saves.last_saved, cfg) from None
    finally:
        bar.close()                                 # also on errors: the message then stands alone
    stopped_by = stop.requested if run.step < last_step else None
    checkpoint = saves.written[0] if saves.written else None
    if run.step > first_step or checkpoint is None:
        checkpoint = rundir.path / ("interrupted.pth" if stopped_by else "final_model.pth")
        on_main(ctx, lambda: rundir.end(run, bool(stopped_by), say=print))
        if not stopped_by and ctx.is_main:
            saves.link_final(checkpoint)
    ctx.barrier()                                   # the file exists for every rank from here on
    if ctx.is_main and (progress or stopped_by):
        print(f"Interrupted at step {run.step} (epoch {run.position[0]}); saved {checkpoint}; resume from it to "
              "continue" if stopped_by else
              f"trained {run.step - first_step} steps in {time.time() - started:.0f} s; final checkpoint: {checkpoint}")
    return checkpoint, stopped_by


def on_main(ctx, action):
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


def _check_loader(dataloader, run) -> int | None:
    """Batches per epoch (None for a loader without a length); refuses a loader that is not sharded under
    DDP, or that does not fit where the run stopped."""
    ctx = run.ctx
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
    return n


def _warn_unit_range(x0: torch.Tensor) -> None:
    """Warn when a batch looks like images in [0, 1] rather than [-1, 1] (half the range unused)."""
    lo, hi = x0.min().item(), x0.max().item()
    if 0 <= lo and hi <= 1:
        warnings.warn(f"the first batch lies in [0, 1] (min {lo:.3g}, max {hi:.3g}), but training expects images "
                      "in [-1, 1]: scale them with x * 2 - 1 (make_dataloader does it for you)", stacklevel=5)


def _diverged(err: FloatingPointError, last, cfg) -> FloatingPointError:
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
