"""Checkpoints: the file envelope, written atomically and read without running code (ERRATA 5).

This module owns only the envelope: the format tag, the version, the migrations of older layouts,
the atomic write and the weights-only read. What a file holds is built by ``Run.state_dict()``
(``engine.run``) and rebuilt into networks by the registry of model kinds (``engine.kinds``).

A checkpoint is a dict of plain values only -- tensors, dicts, lists, numbers, strings -- so it
loads with ``torch.load(path, weights_only=True)``, which never runs code hidden in a file.
Format version 2:
- ``format`` = "diffgan_lib/checkpoint", ``version`` = 2, ``torch_version``;
- ``model``: {kind, ...}: what network to rebuild (``engine.kinds.KINDS`` lists the kinds and
  their fields); ``scheduler``: DiffusionScheduler.config(); ``config``: the run's configuration;
- ``G`` (raw weights), ``G_ema`` (averaged weights or None), ``D`` (or None), ``opt_G``, ``opt_D``,
  ``scaler``; ``step``, ``epoch``, ``position`` = [epoch, batches of it done]; ``data``; ``history``:
  per-step values as float64 / int64 tensors; ``sampling_only``: True in exported files;
  ``members`` (optional): which images the run trained on.

The versioning rule: a new network adds a ``model.kind``; any change to the layout raises
``VERSION`` and adds one function to ``_MIGRATIONS`` that turns a file of the previous version into
the new layout when it is read (files on disk are never rewritten): version 1 (no ``model.kind``;
Adam's betas in ``config.betas``; ``resume_at`` and ``rng``) reads as version 2.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..data.files import DATA_ENV, atomic_write, is_shipped, local_path
from .config import RENAMED

__all__ = ["CheckpointError", "write_checkpoint", "read_envelope", "FORMAT", "VERSION", "REQUIRED"]

FORMAT, VERSION = "diffgan_lib/checkpoint", 2
REQUIRED = ("model", "scheduler", "config", "G", "D", "step", "history")


class CheckpointError(ValueError):
    """A file that is not a usable diffgan_lib checkpoint (the message says why and what to do)."""


def write_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` (plain values, ``Run.state_dict()``) atomically at ``path`` with the format tag."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__), **payload}
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def _folder_given(path: Path, limit: int = 5) -> FileNotFoundError:
    """The error for a folder passed as a checkpoint: the .pth files below it (recursively, a few)."""
    found = sorted(path.rglob("*.pth"))
    listed = ", ".join(str(p) for p in found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return FileNotFoundError(f"{path} is a folder, not a checkpoint file; "
                             + (f"pass one of the .pth files below it: {listed}" if found else
                                "it holds no .pth files: train first (it writes final_model.pth)"))


def _missing(path: Path) -> FileNotFoundError:
    if path.is_dir():
        return _folder_given(path)
    if path.is_symlink() and not path.exists():
        return FileNotFoundError(f"{path} is a symbolic link that leads to no file (a loop, or its target is gone); "
                                 "give the checkpoint file itself")
    if path.exists():
        return FileNotFoundError(f"{path} is not a regular file (a pipe, a socket or a device); give a checkpoint file")
    if is_shipped(path) and not path.parent.exists():
        return FileNotFoundError(f"{path} is one of the course's shipped files, and its data/ folder is not here "
                                 f"(diffgan_lib installed without a clone?): copy the repository's data/ folder "
                                 f"somewhere and set {DATA_ENV} to it")
    folder = path.parent
    found = sorted(p.name for p in folder.glob("*.pth")) if folder.is_dir() else []
    where = (f"; .pth files in {folder}: {', '.join(found)}" if found else
             f"; {folder} has no .pth files" if folder.is_dir() else f"; the folder {folder} does not exist")
    return FileNotFoundError(f"no checkpoint at {path}{where}. Train first (it writes final_model.pth) "
                             "or check the path")


def _v1_to_v2(ckpt: dict) -> dict:
    """Version 1 -> 2: add model.kind, rename Adam's ``betas``, ``resume_at`` -> ``position``, drop ``rng``."""
    ckpt["model"] = {"kind": "diffusion", **ckpt["model"]}
    if ckpt.get("config"):
        ckpt["config"] = {RENAMED.get(k, k): v for k, v in ckpt["config"].items()}
    ckpt["position"] = list(ckpt.pop("resume_at", None) or [ckpt.get("epoch", 0) + 1, 0])
    ckpt.pop("rng", None)      # random states are no longer needed: noise is keyed by (seed, step, sample)
    ckpt.setdefault("data", None)
    return ckpt


_MIGRATIONS = {1: _v1_to_v2}    # version v -> a function giving version v + 1


def read_envelope(path) -> dict:
    """``torch.load(weights_only=True)`` of a diffgan_lib checkpoint, migrated to the current version, with
    every top-level field present. The model section is checked by ``engine.models.read_checkpoint``.

    Errors say what is wrong and what to do: FileNotFoundError lists the .pth files that do exist;
    CheckpointError for a damaged, foreign, newer, or pickled-object file.
    """
    path = local_path(path, "checkpoint path")
    if not path.is_file():
        raise _missing(path)
    corrupt = f"{path} is not a PyTorch checkpoint (truncated, or another kind of file); re-download it or use an earlier epoch_*.pth"
    if not zipfile.is_zipfile(path):
        raise CheckpointError(corrupt)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects, not only tensors and numbers, so it was not "
                "made by diffgan_lib; it is refused, because unpickling a file can run any code in it. "
                "Use a checkpoint written by diffgan_lib") from None
        raise CheckpointError(corrupt) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError):
        raise CheckpointError(corrupt) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a diffgan_lib checkpoint (no "
                              f"format tag {FORMAT!r}); make checkpoints with diffgan_lib.train")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}, which this diffgan_lib "
                              f"does not understand (it reads 1 to {VERSION}); upgrade diffgan_lib")
    while ckpt["version"] < VERSION:
        ckpt = _MIGRATIONS[ckpt["version"]](ckpt)
        ckpt["version"] += 1
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks the field(s) {', '.join(missing)}: it is damaged or was not "
                              "written by diffgan_lib; use another checkpoint")
    return ckpt
