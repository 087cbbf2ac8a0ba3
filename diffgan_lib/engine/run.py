"""A training run as one object: networks, optimisers, EMA, scheduler, step, history, and its step function.

``build_run(config, image_channels, timesteps, device)`` makes a fresh diffusion run;
``engine.fewstep.fewstep_run`` a few-step fine-tune. Both run through the same loop
(``engine.loop.fit``), which calls ``run.step_fn(run, x0, labels)`` once per batch.
``Run.state_dict()`` is the only place that builds what a checkpoint holds; ``Run.load_state_dict()``
puts it back, so resuming is ``resume_run(path)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..core.device import pick_device
from ..core.ema import EMA
from ..core.flow import RectifiedFlow
from ..core.scheduler import DiffusionScheduler
from .checkpoints import CheckpointError, write_checkpoint
from .config import TrainConfig
from .precision import precision_name, resolve_precision
from .distributed import DistContext
from .models import KINDS, build_models, load_state, read_checkpoint, unwrap
from .flow import FLOW_KEYS, flow_step
from .step import train_step

__all__ = ["Run", "build_run", "resume_run", "load_training_state", "save_checkpoint", "HISTORY_KEYS"]

HISTORY_KEYS = ("step", "epoch", "diff", "adv", "adv_w", "D", "D_real", "D_fake")
INT_KEYS = ("step", "epoch")


def history_to_tensors(history: dict | None) -> dict:
    """Per-step lists -> int64 (step, epoch) / float64 tensors, which ``weights_only`` loading accepts."""
    return {k: torch.tensor(v, dtype=torch.int64 if k in INT_KEYS else torch.float64)
            for k, v in (history or {}).items()}


@dataclass(eq=False)
class Run:
    """Everything a training run changes as it goes. G is the trained network (the optimiser's weights);
    ``ema.module`` (when ``ema`` is not None) is the averaged copy to sample from. D and opt_D are None
    for a run without a discriminator.

    ``kind``: the checkpoint kind ("diffusion", "fewstep"); ``info``: that kind's extra model fields.
    ``step_fn(run, x0, labels) -> dict of floats``: one optimisation step (``engine.step.train_step``
    by default); ``history_keys``: what it returns, plus "step" and "epoch".
    ``position`` = (epoch, batches of that epoch done): where the data stream continues.
    ``data`` = {batch_size (global), batches_per_epoch, world_size}; ``members`` = the training images.
    ``aux``: tensors the step function reads that no checkpoint holds (the one-call fine-tune's teacher pairs).
    ``ctx`` (this process among the torchrun processes) and ``G_train`` / ``D_train`` (the modules the
    step calls: DDP-wrapped and/or compiled, or G and D themselves) are set by the loop.
    """
    config: TrainConfig
    G: torch.nn.Module
    D: torch.nn.Module | None
    scheduler: DiffusionScheduler
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler | None
    ema: EMA | None
    device: torch.device
    kind: str = "diffusion"
    info: dict = field(default_factory=dict)
    step_fn: Callable | None = None
    history_keys: tuple = HISTORY_KEYS
    step: int = 0
    position: tuple[int, int] = (0, 0)
    data: dict | None = None
    members: dict | None = None
    history: dict = field(default_factory=dict)
    aux: dict = field(default_factory=dict)
    ctx: DistContext = field(default_factory=DistContext)
    G_train: torch.nn.Module | None = None
    D_train: torch.nn.Module | None = None

    def __post_init__(self):
        self.history = self.history or {k: [] for k in self.history_keys}
        self.G_train = self.G_train or self.G
        self.D_train = self.D_train or self.D

    @property
    def image_channels(self) -> int:
        return self.G.in_ch

    @property
    def G_sample(self) -> torch.nn.Module:
        """The generator to sample from: the EMA copy when there is one."""
        if self.ema is None:
            return self.G
        return self.G.with_unet(self.ema.module) if hasattr(self.G, "with_unet") else self.ema.module

    @property
    def precision(self) -> str:
        """The number format this run trains in here, in words ("bf16 autocast", "float32", ...)."""
        return precision_name(getattr(self.config, "precision", "fp32"), self.device)

    @property
    def channels_last(self) -> bool:
        cl = getattr(self.config, "channels_last", None)
        return cl if cl is not None else self.device.type == "cuda"

    @property
    def D_trained(self) -> bool:
        """Whether D has taken a step (its loss is finite somewhere in the history): else it is not saved."""
        return self.D is not None and any(math.isfinite(v) for v in self.history.get("D", []))

    def record(self, metrics: dict, epoch: int, epoch_ends: bool) -> None:
        """Count one step done: history row, step, and the data position after it."""
        self.step += 1
        for k, v in dict(step=self.step, epoch=epoch, **metrics).items():
            self.history.setdefault(k, []).append(v)
        done = self.position[1] + 1 if self.position[0] == epoch else 1
        self.position = (epoch + 1, 0) if epoch_ends else (epoch, done)

    def state_dict(self) -> dict:
        """Plain values for a checkpoint (``engine.checkpoints`` describes the format). D and its optimiser
        are left out while D has never trained (pure diffusion): the loader builds a fresh one."""
        net, with_D = self._saved_G(), self.D_trained
        return {"model": KINDS[self.kind].fields(self), "scheduler": self.scheduler.config(),
                "config": self.config.to_dict(),
                "G": net.state_dict(), "G_ema": self.ema.state_dict() if self.ema is not None else None,
                "D": self._saved_D().state_dict() if with_D else None,
                "opt_G": self.opt_G.state_dict() if self.opt_G is not None else None,
                "opt_D": self.opt_D.state_dict() if with_D and self.opt_D is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "step": self.step, "epoch": self.position[0], "position": list(self.position),
                "data": self.data, "members": self.members, "history": history_to_tensors(self.history),
                "precision": self.precision}

    def _saved_G(self) -> torch.nn.Module:
        """What a checkpoint keeps of G: the UNet (inside a few-step or one-call generator, or a wrapper)."""
        G = unwrap(self.G)
        return getattr(G, "unet", G)

    def _saved_D(self) -> torch.nn.Module:
        """What a checkpoint keeps of D: its trainable heads when it reads a frozen teacher, else all of it."""
        D = unwrap(self.D)
        return getattr(D, "heads", D)

    def save(self, path) -> Path:
        """Write this run's checkpoint at ``path`` (atomically)."""
        return write_checkpoint(path, self.state_dict())

    def load_state_dict(self, state: dict) -> None:
        """Put a checkpoint's state back (state from ``load_training_state``); the config's learning
        rates and Adam betas win over the saved optimiser values. Raises CheckpointError if the
        networks or T differ from this run's."""
        ours = {**KINDS[self.kind].fields(self), **self.scheduler.config()}
        theirs = {**state["model"], **(state.get("scheduler") or {})}
        diff = [k for k in ours if k in theirs and theirs[k] != ours[k] and k not in ("D_base", "teacher")]
        if diff:
            raise CheckpointError(
                f"checkpoint {state.get('path', '')} was trained with "
                f"{', '.join(f'{k}={theirs[k]!r}' for k in diff)} but this run has "
                f"{', '.join(f'{k}={ours[k]!r}' for k in diff)}; resume with the same values (leave them "
                "unset and the checkpoint's are used) or start a new run without resume")
        path = state.get("path", "checkpoint")
        load_state(self._saved_G(), state["G"], "G", path)
        if self.D is not None and state.get("D") is not None:
            load_state(self._saved_D(), state["D"], "D", path)
        cfg = self.config
        for opt, key, lr in ((self.opt_G, "opt_G", cfg.lr_G), (self.opt_D, "opt_D", cfg.lr_D)):
            if opt is None:
                continue
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
        self.history = {k: list(v) for k, v in state["history"].items()} or {k: [] for k in self.history_keys}
        for k in self.history_keys:        # a column the saving code did not have yet: nan for its steps
            self.history.setdefault(k, [float("nan")] * len(self.history.get("step", [])))


def build_run(config: TrainConfig | None = None, image_channels: int = 1, timesteps: int = 1000,
              device=None, ema: bool = True, step_fn: Callable | None = None) -> Run:
    """A fresh run: G (UNet), D, the scheduler with T = ``timesteps`` (a ``RectifiedFlow`` when
    ``config.objective == "flow"``), Adam for both, the GradScaler (fp16 only) and the EMA
    (``ema=False`` or ``config.ema_decay == 0``: none), on ``device``.

    ``config=None`` takes ``TrainConfig.for_device(device)``. Weights are seeded by ``config.seed``.
    ``step_fn`` is the step the loop runs (default ``engine.step.train_step``, the corrected step).
    """
    dev = pick_device(device)
    cfg = config if config is not None else TrainConfig.for_device(dev)
    if image_channels not in (1, 3):
        raise ValueError(f"image_channels={image_channels!r}: use 1 (grayscale) or 3 (RGB)")
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or not 1 <= timesteps <= 100_000:
        raise ValueError(f"timesteps={timesteps!r} must be an int in [1, 100000] (T, e.g. 1000)")
    torch.manual_seed(cfg.seed)
    if cfg.num_classes and not cfg.time_embedding:
        raise ValueError("a class-conditional model (class_names) needs the time embedding; the seed's "
                         "network without t cannot take labels")
    G, D = build_models({"in_ch": image_channels, "base": cfg.base, "time_embedding": cfg.time_embedding,
                         "D_base": cfg.base, "num_classes": cfg.num_classes, "mean_path": cfg.mean_path})
    G, D = G.to(dev), D.to(dev)
    flow = cfg.objective == "flow"
    scheduler = RectifiedFlow(device=dev) if flow else DiffusionScheduler(timesteps, schedule=cfg.schedule, device=dev)
    run = Run(config=cfg, G=G, D=D, scheduler=scheduler, kind="flow" if flow else "diffusion",
              history_keys=("step", "epoch", *FLOW_KEYS) if flow else HISTORY_KEYS,
              opt_G=torch.optim.Adam(G.parameters(), lr=cfg.lr_G, betas=cfg.adam_betas),
              opt_D=torch.optim.Adam(D.parameters(), lr=cfg.lr_D, betas=cfg.adam_betas),
              scaler=torch.amp.GradScaler(dev.type) if resolve_precision(cfg.precision, dev)[1] else None,
              ema=None, device=dev, step_fn=step_fn or (flow_step if flow else train_step))
    if run.channels_last:
        run.G, run.D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        run.G_train, run.D_train = run.G, run.D
    if ema and cfg.ema_decay > 0:
        run.ema = EMA(run.G, cfg.ema_decay)
    return run


def load_training_state(path) -> dict:
    """The whole checkpoint dict for resuming (tensors on the CPU), history as lists, ``path`` added."""
    ckpt = read_checkpoint(path)
    if ckpt.get("sampling_only"):
        raise CheckpointError(f"{path} was exported for sampling only (no optimiser states); resume from "
                              "the full checkpoint it was made from, or start a new run")
    ckpt["history"] = {k: v.tolist() for k, v in ckpt["history"].items()}
    ckpt["path"] = str(path)
    return ckpt


def resume_run(path, config: TrainConfig | None = None, image_channels: int | None = None,
               timesteps: int | None = None, device=None, ema: bool = True, step_fn: Callable | None = None) -> Run:
    """The diffusion run saved in checkpoint ``path``, ready to continue.

    Unset arguments take the checkpoint's values (its config, channels and T); set ones must agree
    with its networks (CheckpointError names the fields otherwise), and a config's other fields
    (learning rates, adversarial weight...) replace the saved ones.
    """
    state = load_training_state(path)
    if state["model"]["kind"] not in ("diffusion", "flow"):
        raise CheckpointError(f"{path} holds a {state['model']['kind']} model, not a diffusion or flow training run; "
                              "continue it with the command that made it (few-step: fewstep --resume)")
    saved = TrainConfig.from_dict(state["config"]) if state["config"] else None
    if config is None:
        config = saved if saved is not None else TrainConfig.for_device(device)
    elif config.image_size is None and saved is not None:
        config = config.replace(image_size=saved.image_size)
    run = build_run(config, image_channels or state["model"]["in_ch"],
                    timesteps or (state["scheduler"] or {}).get("timesteps", 1000), device, ema=ema, step_fn=step_fn)
    run.load_state_dict(state)
    return run


def save_checkpoint(G, D, opt_G, opt_D, epoch: int, save_dir, final: bool = False, *, scheduler=None,
                    config=None, name: str | None = None) -> Path:
    """The seed's helper: write ``epoch_{epoch+1:04d}.pth`` (or ``final_model.pth``, or ``name``).

    ``epoch`` is the 0-based index of the epoch just finished, as in the seed. Holds G, D, the
    optimisers (None is allowed), the scheduler (without it ``load_checkpoint`` rebuilds T = 1000)
    and the config. ``train()`` writes richer files (EMA, history, position) through its Run.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    run = Run(config=config or TrainConfig(), G=G, D=D, scheduler=scheduler or DiffusionScheduler(1000),
              opt_G=opt_G, opt_D=opt_D, scaler=None, ema=None, device=torch.device("cpu"),
              position=(int(epoch) + 1, 0), history={})
    state = run.state_dict()
    state.update(D=unwrap(D).state_dict(), opt_D=opt_D.state_dict() if opt_D is not None else None,
                 scheduler=scheduler.config() if scheduler is not None else None,
                 config=config.to_dict() if config is not None else None, epoch=int(epoch), history={})
    name = name or ("final_model.pth" if final else f"epoch_{epoch + 1:04d}.pth")
    return write_checkpoint(Path(save_dir) / name, state)
