"""A training run as one object: networks, optimisers, EMA, scheduler, step and history.

``build_run(config, image_channels, timesteps, device)`` makes a fresh run; ``Run.state_dict()``
is what a checkpoint holds and ``Run.load_state_dict()`` puts it back, so resuming is
``resume_run(path)``. :func:`diffgan_lib.training.train` loops over a Run; notebook 05 builds one
to write the loop by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checkpoints import (CheckpointError, build_models, diffusion_model_fields, history_to_tensors,
                          load_state, load_training_state)
from .config import TrainConfig, resolve_amp
from .device import pick_device
from .ema import EMA
from .scheduler import DiffusionScheduler

__all__ = ["Run", "build_run", "resume_run", "HISTORY_KEYS"]

HISTORY_KEYS = ("step", "epoch", "diff", "adv", "adv_w", "D", "D_real", "D_fake")


@dataclass(eq=False)
class Run:
    """Everything a training run changes as it goes. G is the raw UNet (the optimiser's weights);
    ``ema.module`` (when ``ema`` is not None) is the averaged copy to sample from.

    ``position`` = (epoch, batches of that epoch done): where the data stream continues.
    ``data`` = {batch_size (global), batches_per_epoch, world_size}, recorded by ``train``.
    ``members`` = which images the run trains on (``data.training_record``), None when unknown.
    """
    config: TrainConfig
    G: torch.nn.Module
    D: torch.nn.Module
    scheduler: DiffusionScheduler
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: EMA | None
    device: torch.device
    step: int = 0
    position: tuple[int, int] = (0, 0)
    data: dict | None = None
    members: dict | None = None
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})

    @property
    def image_channels(self) -> int:
        return self.G.in_ch

    @property
    def G_sample(self) -> torch.nn.Module:
        """The generator to sample from: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.G

    @property
    def channels_last(self) -> bool:
        return self.config.channels_last if self.config.channels_last is not None else self.device.type == "cuda"

    def record(self, metrics: dict, epoch: int, epoch_ends: bool) -> None:
        """Count one step done: history row, step, and the data position after it."""
        self.step += 1
        for k, v in dict(step=self.step, epoch=epoch, **metrics).items():
            self.history[k].append(v)
        done = self.position[1] + 1 if self.position[0] == epoch else 1
        self.position = (epoch + 1, 0) if epoch_ends else (epoch, done)

    def state_dict(self) -> dict:
        """Plain values for a checkpoint (see diffgan_lib.checkpoints for the format)."""
        return {"model": diffusion_model_fields(self.G, self.D), "scheduler": self.scheduler.config(),
                "config": self.config.to_dict(),
                "G": self.G.state_dict(), "G_ema": self.ema.state_dict() if self.ema is not None else None,
                "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "step": self.step, "epoch": self.position[0], "position": list(self.position),
                "data": self.data, "members": self.members, "history": history_to_tensors(self.history)}

    def load_state_dict(self, state: dict) -> None:
        """Put a checkpoint's state back (state from ``load_training_state``); the config's learning
        rates and Adam betas win over the saved optimiser values. Raises CheckpointError if the
        networks or T differ from this run's."""
        ours = {**diffusion_model_fields(self.G, self.D), **self.scheduler.config()}
        theirs = {**state["model"], **(state.get("scheduler") or {})}
        diff = [k for k in ours if k in theirs and theirs[k] != ours[k] and k != "D_base"]   # D_base = base
        if diff:
            raise CheckpointError(
                f"checkpoint {state.get('path', '')} was trained with "
                f"{', '.join(f'{k}={theirs[k]!r}' for k in diff)} but this run has "
                f"{', '.join(f'{k}={ours[k]!r}' for k in diff)}; resume with the same values (leave them "
                "unset and the checkpoint's are used) or start a new run without resume")
        path = state.get("path", "checkpoint")
        load_state(self.G, state["G"], "G", path)
        load_state(self.D, state["D"], "D", path)
        cfg = self.config
        for opt, key, lr in ((self.opt_G, "opt_G", cfg.lr_G), (self.opt_D, "opt_D", cfg.lr_D)):
            if state.get(key) is not None:
                opt.load_state_dict(state[key])
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, cfg.adam_betas
        if self.ema is not None and state.get("G_ema") is not None:
            self.ema.load_state_dict(state["G_ema"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.position = tuple(state.get("position") or (state.get("epoch", 0), 0))
        self.data = state.get("data")
        self.members = state.get("members")
        self.history = {k: list(state["history"].get(k, [])) for k in HISTORY_KEYS}


def build_run(config: TrainConfig | None = None, image_channels: int = 1, timesteps: int = 1000,
              device=None, ema: bool = True) -> Run:
    """A fresh run: G (UNet), D, the scheduler with T = ``timesteps``, Adam for both, the GradScaler
    (fp16 only) and the EMA (``ema=False`` or ``config.ema_decay == 0``: none), on ``device``.

    ``config=None`` takes ``TrainConfig.for_device(device)``. Weights are seeded by ``config.seed``.
    """
    dev = pick_device(device)
    cfg = config if config is not None else TrainConfig.for_device(dev)
    if image_channels not in (1, 3):
        raise ValueError(f"image_channels={image_channels!r}: use 1 (grayscale) or 3 (RGB)")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps={timesteps!r} must be a positive int (T, e.g. 1000)")
    torch.manual_seed(cfg.seed)
    if cfg.num_classes and (cfg.variant == "as_written" or not cfg.time_embedding):
        raise ValueError("a class-conditional model (class_names) needs the corrected loop and the time "
                         "embedding; the seed's as-written network cannot take labels")
    G, D = build_models({"in_ch": image_channels, "base": cfg.base, "time_embedding": cfg.time_embedding,
                         "D_base": cfg.base, "num_classes": cfg.num_classes,
                         "mean_path": cfg.mean_path})   # False without t (TrainConfig sees to it)
    G, D = G.to(dev), D.to(dev)
    run = Run(config=cfg, G=G, D=D, scheduler=DiffusionScheduler(timesteps, schedule=cfg.schedule, device=dev),
              opt_G=torch.optim.Adam(G.parameters(), lr=cfg.lr_G, betas=cfg.adam_betas),
              opt_D=torch.optim.Adam(D.parameters(), lr=cfg.lr_D, betas=cfg.adam_betas),
              scaler=torch.amp.GradScaler(dev.type) if resolve_amp(cfg.amp, dev)[1] else None,
              ema=None, device=dev)
    if run.channels_last:
        run.G, run.D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if ema and cfg.ema_decay > 0:
        run.ema = EMA(run.G, cfg.ema_decay)
    return run


def resume_run(path, config: TrainConfig | None = None, image_channels: int | None = None,
               timesteps: int | None = None, device=None, ema: bool = True) -> Run:
    """The run saved in checkpoint ``path``, ready to continue.

    Unset arguments take the checkpoint's values (its config, channels and T); set ones must agree
    with its networks (CheckpointError names the fields otherwise), and a config's other fields
    (learning rates, adversarial weight...) replace the saved ones.
    """
    state = load_training_state(path)
    saved = TrainConfig.from_dict(state["config"]) if state["config"] else None
    if config is None:
        config = saved if saved is not None else TrainConfig.for_device(device)
    elif config.image_size is None and saved is not None:
        config = config.replace(image_size=saved.image_size)
    run = build_run(config, image_channels or state["model"]["in_ch"],
                    timesteps or (state["scheduler"] or {}).get("timesteps", 1000), device, ema=ema)
    run.load_state_dict(state)
    return run
