"""``train``: the seed's entry point, a diffusion run from a dataloader to final_model.pth through ``fit``."""
from __future__ import annotations

import warnings

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ..data.loaders import training_record
from . import distributed
from .config import TrainConfig
from .loop import fit, on_main
from .run import Run, build_run, resume_run
from .rundir import RunDir
from .step import batch_images

__all__ = ["train", "TrainResult"]


class TrainResult(tuple):
    """Unpacks as ``G, D, scheduler`` like the seed's ``train``; G is the EMA generator in eval mode
    (the one to sample from). Also ``.G_raw`` (last optimiser weights), ``.history`` (per-step
    lists), ``.checkpoint`` (path of the last checkpoint written), ``.run`` and ``.stopped_by`` (None,
    or "SIGINT", "SIGTERM", "KeyboardInterrupt" when it stopped early)."""

    def __new__(cls, run: Run, checkpoint, stopped_by=None):
        self = super().__new__(cls, (run.G_sample.eval(), run.D, run.scheduler))
        self.G, self.D, self.scheduler = self
        self.G_raw, self.history, self.run = run.G, run.history, run
        self.checkpoint, self.stopped_by = checkpoint, stopped_by
        return self


def train(dataloader, image_channels: int | None = None, timesteps: int | None = None, device=None,
          epochs: int = 100, save_dir="checkpoints", config: TrainConfig | None = None, resume=None,
          max_steps: int | None = None, callback=None, progress: bool = True, overwrite: bool = False,
          step=None) -> TrainResult:
    """Train G (and D, for the hybrid) on ``dataloader``; returns ``G, D, scheduler`` (a TrainResult).

    A new run: ``config=None`` takes ``TrainConfig.for_device(device)`` with the image size read from
    the data; ``image_channels`` defaults to 1 and ``timesteps`` (T) to 1000. ``resume`` (a checkpoint
    path) continues a run: unset arguments take the checkpoint's values. ``epochs`` counts from the
    start of the run; ``max_steps`` (total steps) stops earlier. ``step`` is the step function
    (default: the corrected ``train_step``; the seed's as written: ``course.seed_loop.train_step_as_written``).

    Writes ``epoch_XXXX.pth`` every ``config.checkpoint_every`` epochs (``last.pth`` every
    ``config.save_every`` steps), then ``final_model.pth`` and ``history.json`` into ``save_dir``.
    Ctrl-C (or SIGTERM) stops after the current step and saves ``interrupted.pth`` instead; so does a
    KeyboardInterrupt raised by ``callback(info)`` (``engine.callbacks.UserCallback`` lists info's
    fields). Resuming is exact. Under torchrun every process runs this with its own shard of the data
    (``engine.distributed``); rank 0 alone writes files and prints. One run per folder, locked while
    it trains (``engine.rundir``: the folder rules; docs/cli.md).
    """
    ctx = distributed.setup(device)
    if ctx.distributed and step is not None:
        ctx.close()
        raise ValueError("under torchrun (DDP) train() runs its own corrected step; a step function of your own "
                         "(such as the seed's loop as written) runs in a single process")
    rundir = RunDir(save_dir, resume, overwrite)
    try:
        on_main(ctx, rundir.open)
        if resume is not None:
            run = resume_run(resume, config, image_channels, timesteps, ctx.device, ema=ctx.is_main, step_fn=step)
        else:
            if config is None or config.image_size is None:     # read the image side from the data
                side = batch_images(next(iter(dataloader))).shape[-1]
                config = (config or TrainConfig.for_device(ctx.device)).replace(image_size=side)
            run = build_run(config, image_channels or 1, timesteps or 1000, ctx.device, ema=ctx.is_main, step_fn=step)
        run.ctx = ctx
        _wrap(run, ctx)
        _record_members(run, dataloader, resume is not None, ctx.is_main)
        checkpoint, stopped_by = fit(run, dataloader, rundir, epochs, max_steps, callback, progress, resume)
        return TrainResult(run, checkpoint, stopped_by)
    finally:
        if ctx.is_main:
            rundir.close()
        ctx.close()


def _wrap(run: Run, ctx) -> None:
    """The modules the step calls: G (DDP-wrapped and/or compiled) and D's DDP wrapper."""
    if not ctx.distributed:
        run.G_train = torch.compile(run.G) if run.config.compile else run.G
        return
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # gradients are all-reduced in place (no bucket copy); with gloo on a CPU in one bucket after the
    # backward pass (measured faster on 2 cores than overlapping buckets, which compete for the cores)
    opts = dict(device_ids=ids, gradient_as_bucket_view=True, **({} if ids else {"bucket_cap_mb": 1000}))
    G = DDP(run.G, **opts)
    run.G_train, run.D_train = (torch.compile(G) if run.config.compile else G), DDP(run.D, **opts)


def _record_members(run: Run, dataloader, resumed: bool, say: bool) -> None:
    """Set ``run.members``: the images this run trains on (``data.loaders.training_record``), which its
    checkpoints keep. A run resumed on other data than its checkpoint records has trained on both, which
    no single record says: its members become unknown (None), with a warning."""
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
