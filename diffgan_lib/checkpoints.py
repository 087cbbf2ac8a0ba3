"""Checkpoints: save and load a training run safely (ERRATA 5: the seed's missing helpers).

A checkpoint is a dict of plain values only -- tensors, dicts, lists, numbers, strings -- so it
loads with ``torch.load(path, weights_only=True)``, which never runs code hidden in a file:
- ``format`` / ``version``: the tag ``"diffgan_lib/checkpoint"``, version 1;
- ``model``: {in_ch, base, time_embedding, D_base}; ``scheduler``: DiffusionScheduler.config();
  ``config``: TrainConfig.to_dict() (its ``image_size`` is the training side S);
- ``G`` (raw weights), ``G_ema`` (averaged weights or None), ``D``, ``opt_G``, ``opt_D``, ``scaler``;
- ``epoch``, ``step``, ``resume_at`` = [epoch, batches of it already done]; ``history``: per-step
  losses as float64 tensors; ``rng``: the torch / CUDA / Python / NumPy random states as tensors.

Files are written atomically (a temporary file in the same folder, flushed and fsync-ed, then
``os.replace``): a crash mid-write leaves the previous file intact.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .device import pick_device
from .discriminator import Discriminator
from .scheduler import DiffusionScheduler
from .unet import UNet

__all__ = ["save_checkpoint", "load_checkpoint", "load_training_state", "check_compatible",
           "CheckpointError", "LoadedCheckpoint", "export_for_sampling", "rng_state", "set_rng_state", "seed_epoch", "save_history_json",
           "FORMAT", "VERSION"]

FORMAT, VERSION = "diffgan_lib/checkpoint", 1
INT_KEYS = ("step", "epoch")


class CheckpointError(ValueError):
    """A file that is not a usable diffgan_lib checkpoint (the message says why and what to do)."""


def _unwrap(module):
    return getattr(module, "_orig_mod", module)   # a torch.compile wrapper keeps the model here


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":   # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------- random states
def rng_state() -> dict:
    """The torch, CUDA, Python and NumPy global random states, as tensors and plain values."""
    version, ints, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": [version, torch.tensor(ints, dtype=torch.int64), gauss],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, ints, gauss = state["python"]
    random.setstate((version, tuple(ints.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def seed_epoch(dataloader, seed: int, epoch: int) -> None:
    """Re-seed torch, Python and NumPy's global generators and the dataloader's own torch.Generator
    (if any) from (seed, epoch), so that an epoch's shuffle and noise do not depend on the past."""
    s = seed * 1_000_003 + epoch
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)
    sampler = getattr(dataloader, "sampler", None)
    batch_sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None)
    gens = {id(g): g for g in (getattr(dataloader, "generator", None), getattr(sampler, "generator", None),
                               getattr(batch_sampler, "generator", None)) if isinstance(g, torch.Generator)}
    for g in gens.values():
        g.manual_seed(s)


# --------------------------------------------------------------------- saving
def save_checkpoint(G, D, opt_G, opt_D, epoch: int, save_dir, final: bool = False, *, ema=None,
                    config=None, scheduler=None, step: int = 0, history: dict | None = None,
                    scaler=None, name: str | None = None, resume_at=None) -> Path:
    """Write ``epoch_{epoch+1:04d}.pth`` (or ``final_model.pth``, or ``name``) into ``save_dir``.

    ``epoch`` is the 0-based index of the epoch just finished, as in the seed. ``resume_at``
    = (epoch, batches done) where training should continue; default (epoch + 1, 0). ``ema`` is an
    :class:`~diffgan_lib.ema.EMA` (or any module with the averaged weights); without ``scheduler``,
    ``load_checkpoint`` rebuilds the default one (T = 1000). Returns the path written.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / (name or ("final_model.pth" if final else f"epoch_{epoch + 1:04d}.pth"))
    G_raw, D_raw = _unwrap(G), _unwrap(D)
    if isinstance(config, TrainConfig):
        config = config.to_dict()
    hist = {k: torch.tensor(v, dtype=torch.int64 if k in INT_KEYS else torch.float64)
            for k, v in (history or {}).items()}
    ckpt = {
        "format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__),
        "model": {"in_ch": G_raw.in_ch, "base": G_raw.base, "time_embedding": G_raw.time_embedding,
                  "D_base": D_raw.base},
        "scheduler": scheduler.config() if scheduler is not None else None,
        "config": config,
        "G": G_raw.state_dict(), "G_ema": ema.state_dict() if ema is not None else None,
        "D": D_raw.state_dict(),
        "opt_G": opt_G.state_dict() if opt_G is not None else None,
        "opt_D": opt_D.state_dict() if opt_D is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch), "step": int(step),
        "resume_at": list(resume_at) if resume_at is not None else [int(epoch) + 1, 0],
        "history": hist, "rng": rng_state(),
    }
    _atomic_write(path, lambda f: torch.save(ckpt, f))
    return path


def export_for_sampling(path, out, half: bool = True) -> Path:
    """Write a small copy of checkpoint ``path`` at ``out`` holding what sampling needs.

    The generator (its EMA weights when there are some), D, the configuration and the history stay;
    optimiser and scaler states go, and weights become float16 when ``half`` (``load_checkpoint``
    casts them back to float32). About a quarter of the full file: the course ships one in data/.
    Such a file cannot be resumed from.
    """
    ckpt = _read(path)
    cast = (lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}) if half else dict
    slim = {**ckpt, "G": cast(ckpt["G_ema"] if ckpt["G_ema"] is not None else ckpt["G"]), "G_ema": None,
            "D": cast(ckpt["D"]), "opt_G": None, "opt_D": None, "scaler": None, "sampling_only": True,
            "history": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["history"].items()}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, lambda f: torch.save(slim, f))
    return out


def save_history_json(history: dict, save_dir) -> Path:
    """Write the per-step history as ``history.json`` (NaN as null) for plotting; returns its path."""
    clean = {k: [None if isinstance(v, float) and not math.isfinite(v) else v for v in vals]
             for k, vals in history.items()}
    path = Path(save_dir) / "history.json"
    _atomic_write(path, lambda f: f.write(json.dumps(clean).encode()))
    return path


# --------------------------------------------------------------------- loading
def _missing(path: Path) -> FileNotFoundError:
    folder = path.parent
    found = sorted(p.name for p in folder.glob("*.pth")) if folder.is_dir() else []
    where = (f"; .pth files in {folder}: {', '.join(found)}" if found else
             f"; {folder} has no .pth files" if folder.is_dir() else f"; the folder {folder} does not exist")
    return FileNotFoundError(f"no checkpoint at {path}{where}. Train first (it writes final_model.pth) "
                             "or check the path")


def _read(path) -> dict:
    """torch.load(weights_only=True) with errors that say what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    corrupt = (f"{path} is truncated or not a PyTorch checkpoint; re-download it or use an earlier "
               "epoch_*.pth")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects, not only tensors and numbers, so it was not "
                "made by diffgan_lib; it will not be unpickled, for safety (unpickling can run any code). "
                "If you trust its source, open it yourself with torch.load(path, weights_only=False)") from None
        raise CheckpointError(corrupt) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError):
        raise CheckpointError(corrupt) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a diffgan_lib checkpoint (no "
                              f"format tag {FORMAT!r}); make checkpoints with diffgan_lib.train")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {ckpt['version']}, newer than this "
                              f"diffgan_lib understands ({VERSION}); upgrade diffgan_lib")
    return ckpt


def _load_state(module, state: dict, what: str, path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: the {what} weights do not fit the network of this configuration "
                              f"({detail}); use the configuration the checkpoint was trained with") from None


def load_training_state(path, device=None) -> dict:
    """The whole checkpoint dict for resuming (tensors on the CPU; load_state_dict moves them).

    ``device`` is accepted for symmetry with :func:`load_checkpoint`; RNG states must stay on the CPU.
    """
    ckpt = _read(path)
    if ckpt.get("sampling_only"):
        raise CheckpointError(f"{path} was exported for sampling only (no optimiser states); resume from "
                              "the full checkpoint it was made from, or start a new run")
    ckpt["history"] = {k: v.tolist() for k, v in ckpt["history"].items()}
    ckpt["path"] = str(path)
    return ckpt


def check_compatible(ckpt: dict, **expected) -> None:
    """Raise CheckpointError naming every field whose checkpoint value differs from ``expected``.

    Fields: in_ch, base, time_embedding, D_base (``ckpt['model']``), timesteps, schedule, beta_start,
    beta_end (``ckpt['scheduler']``).
    """
    actual = {**ckpt["model"], **(ckpt.get("scheduler") or {})}
    diff = [k for k, v in expected.items() if k in actual and actual[k] != v]
    if diff:
        theirs = ", ".join(f"{k}={actual[k]!r}" for k in diff)
        ours = ", ".join(f"{k}={expected[k]!r}" for k in diff)
        raise CheckpointError(f"checkpoint {ckpt.get('path', '')} was trained with {theirs} but this run "
                              f"has {ours}; resume with the same values (config=None reuses the "
                              "checkpoint's config) or start a new run without resume")


class LoadedCheckpoint(tuple):
    """``(G, D, scheduler)``, as the seed's ``load_checkpoint`` returns, plus ``.config`` (TrainConfig
    or None), ``.image_size``, ``.step``, ``.epoch``, ``.history`` and ``.path``."""

    def __new__(cls, G, D, scheduler, **info):
        self = super().__new__(cls, (G, D, scheduler))
        self.__dict__.update(info)
        return self


def load_checkpoint(path, device=None, which: str = "ema") -> LoadedCheckpoint:
    """Rebuild ``G, D, scheduler`` from a checkpoint, in eval mode on ``device`` (None = best here).

    ``which="ema"`` loads the averaged generator (the one to sample from; the raw one when the run
    had no EMA), ``"raw"`` the last optimiser weights.
    """
    if which not in ("ema", "raw"):
        raise ValueError(f"which={which!r}: choose 'ema' (for sampling) or 'raw'")
    ckpt = _read(path)
    dev = pick_device(device)
    m = ckpt["model"]
    G = UNet(m["in_ch"], m["base"], m["time_embedding"])
    _load_state(G, ckpt["G_ema"] if which == "ema" and ckpt["G_ema"] is not None else ckpt["G"], "G", path)
    D = Discriminator(m["in_ch"], m["D_base"])
    _load_state(D, ckpt["D"], "D", path)
    scheduler = DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev)
    config = TrainConfig.from_dict(ckpt["config"]) if ckpt["config"] else None
    return LoadedCheckpoint(G.to(dev).eval(), D.to(dev).eval(), scheduler, config=config,
                            image_size=config.image_size if config else None, step=ckpt["step"],
                            epoch=ckpt["epoch"], path=str(path),
                            history={k: v.tolist() for k, v in ckpt["history"].items()})
