"""Checkpoints: the file format, written atomically and read without running code (ERRATA 5).

This module owns only the file: what is in it, how it is written and read, and how a model is
rebuilt from it. What a training run keeps (networks, optimisers, step, history) is
:class:`diffgan_lib.run.Run`, whose ``state_dict()`` is the payload written here.

A checkpoint is a dict of plain values only -- tensors, dicts, lists, numbers, strings -- so it
loads with ``torch.load(path, weights_only=True)``, which never runs code hidden in a file.
Format version 2:
- ``format`` = "diffgan_lib/checkpoint", ``version`` = 2, ``torch_version``;
- ``model``: {kind, ...}: what network to rebuild. ``kind`` "diffusion": {in_ch, base,
  time_embedding, D_base} for the UNet G and the PatchGAN D;
- ``scheduler``: DiffusionScheduler.config() (T and the beta schedule);
- ``config``: TrainConfig.to_dict() (its ``image_size`` is the training side S), or None;
- ``G`` (raw weights), ``G_ema`` (averaged weights or None), ``D``, ``opt_G``, ``opt_D``, ``scaler``;
- ``step`` (optimisation steps done), ``epoch`` and ``position`` = [epoch, batches of it done];
  ``data`` = {batch_size (global), batches_per_epoch, world_size} or None; ``history``: per-step
  losses as float64 / int64 tensors; ``sampling_only``: True in the small files of ``export_for_sampling``;
- ``members`` (optional; absent from older files, None when unknown): which images the run trained
  on, ``data.training_record``'s plain dict, e.g. {"source": "pneumoniamnist", "split": "train",
  "count": 4708, "range": [0, 4708]}; ``training_members`` reads it back with the indices as a list.

The versioning rule, for every kind that follows (few-step, conditional...): a new network adds
a ``model.kind`` and its own fields under ``model``; a reader refuses a kind it does not know by
name. Any change to the layout raises ``VERSION``, and adds one function to ``_MIGRATIONS`` that
turns a file of the previous version into the new layout when it is read (files on disk are
never rewritten): version 1 (no ``model.kind``; Adam's betas in ``config.betas``; ``resume_at``
and ``rng``) reads as version 2.

Files are written atomically (a temporary file in the same folder, flushed and fsync-ed, then
``os.replace``): a crash mid-write leaves the previous file intact.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import torch

from .config import RENAMED, TrainConfig
from .device import pick_device
from .discriminator import Discriminator
from .folders import local_path, pid_alive
from .scheduler import DiffusionScheduler
from .unet import UNet

__all__ = ["save_checkpoint", "load_checkpoint", "load_training_state", "read_checkpoint",
           "write_checkpoint", "build_models", "CheckpointError", "LoadedCheckpoint", "export_for_sampling",
           "save_history_json", "history_to_tensors", "training_members", "FORMAT", "VERSION", "KINDS"]

FORMAT, VERSION = "diffgan_lib/checkpoint", 2
KINDS = ("diffusion", "fewstep")   # fewstep: diffgan_lib.fewstep (levels, image_size, teacher)
INT_KEYS = ("step", "epoch")
MAX_BASE, MAX_T = 1024, 100_000     # sanity bounds, checked before any network is built


class CheckpointError(ValueError):
    """A file that is not a usable diffgan_lib checkpoint (the message says why and what to do)."""


# --------------------------------------------------------------------- writing
_TMP = re.compile(r"\.(.+)\.(\d+)\.tmp")      # what _atomic_write names its temporary files


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.{name}.{pid}.tmp`` files in ``folder`` left by saves that were killed (their pid is gone)."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        m = _TMP.fullmatch(p.name)
        if m and int(m.group(2)) != os.getpid() and not pid_alive(int(m.group(2))):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Temporary files of earlier saves into the same folder whose process is gone are removed first.
    """
    remove_stale_temporaries(path.parent)
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


def write_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` (plain values, e.g. ``Run.state_dict()``) atomically at ``path`` with the format tag."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__), **payload}
    _atomic_write(path, lambda f: torch.save(ckpt, f))
    return path


def history_to_tensors(history: dict | None) -> dict:
    """Per-step lists -> int64 (step, epoch) / float64 tensors, which ``weights_only`` loading accepts."""
    return {k: torch.tensor(v, dtype=torch.int64 if k in INT_KEYS else torch.float64)
            for k, v in (history or {}).items()}


def _unwrap(module):
    """The plain module inside torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def unet_fields(unet) -> dict:
    """What ``build_models`` needs to rebuild the UNet ``unet``: shared by every kind of checkpoint."""
    fields = {"in_ch": unet.in_ch, "base": unet.base, "time_embedding": unet.time_embedding}
    if getattr(unet, "num_classes", 0):   # optional fields: unconditional, plain files stay as they were
        fields["num_classes"] = unet.num_classes
    if getattr(unet, "mean_path", False):
        fields["mean_path"] = True
    return fields


def diffusion_model_fields(G, D) -> dict:
    """The ``model`` section of a "diffusion" checkpoint for the UNet G and the discriminator D."""
    G, D = _unwrap(G), _unwrap(D)
    return {"kind": "diffusion", **unet_fields(G), "D_base": D.base}


def save_checkpoint(G, D, opt_G, opt_D, epoch: int, save_dir, final: bool = False, *, scheduler=None,
                    config=None, name: str | None = None) -> Path:
    """The seed's helper: write ``epoch_{epoch+1:04d}.pth`` (or ``final_model.pth``, or ``name``).

    ``epoch`` is the 0-based index of the epoch just finished, as in the seed. Holds G, D, the
    optimisers (None is allowed), the scheduler (without it ``load_checkpoint`` rebuilds T = 1000)
    and the config. ``train()`` writes richer files (EMA, history, position) through its Run.
    """
    if isinstance(config, TrainConfig):
        config = config.to_dict()
    payload = {"model": diffusion_model_fields(G, D),
               "scheduler": scheduler.config() if scheduler is not None else None, "config": config,
               "G": _unwrap(G).state_dict(), "G_ema": None, "D": _unwrap(D).state_dict(),
               "opt_G": opt_G.state_dict() if opt_G is not None else None,
               "opt_D": opt_D.state_dict() if opt_D is not None else None, "scaler": None,
               "epoch": int(epoch), "step": 0, "position": [int(epoch) + 1, 0], "data": None, "history": {}}
    return write_checkpoint(Path(save_dir) / (name or ("final_model.pth" if final else f"epoch_{epoch + 1:04d}.pth")),
                            payload)


def export_for_sampling(path, out, half: bool = True) -> Path:
    """Write a small copy of checkpoint ``path`` at ``out`` holding what sampling needs.

    The generator (its EMA weights when there are some), D, the configuration and the history stay;
    optimiser and scaler states go, and weights become float16 when ``half`` (``load_checkpoint``
    casts them back to float32). About a quarter of the full file: the course ships one in data/.
    Such a file cannot be resumed from.
    """
    ckpt = read_checkpoint(path)
    cast = (lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}) if half else dict
    slim = {**ckpt, "G": cast(ckpt["G_ema"] if ckpt["G_ema"] is not None else ckpt["G"]), "G_ema": None,
            "D": cast(ckpt["D"]) if ckpt["D"] is not None else None, "opt_G": None, "opt_D": None, "scaler": None, "sampling_only": True,
            "history": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["history"].items()}}
    for key in ("format", "version", "torch_version"):
        slim.pop(key)
    return write_checkpoint(out, slim)


def save_history_json(history: dict, save_dir) -> Path:
    """Write the per-step history as ``history.json`` (NaN as null) for plotting; returns its path."""
    clean = {k: [None if isinstance(v, float) and not math.isfinite(v) else v for v in vals]
             for k, vals in history.items()}
    path = Path(save_dir) / "history.json"
    _atomic_write(path, lambda f: f.write(json.dumps(clean).encode()))
    return path


# --------------------------------------------------------------------- reading
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


def _validate(ckpt: dict, path) -> None:
    """Check the fields needed to rebuild the networks, before anything is built (CheckpointError)."""
    required = ("model", "scheduler", "config", "G", "D", "step", "history")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks the field(s) {', '.join(missing)}: it is damaged or was not "
                              "written by diffgan_lib; use another checkpoint")
    m = ckpt["model"]
    if not isinstance(m, dict) or m.get("kind") not in KINDS:
        kind = m.get("kind") if isinstance(m, dict) else None
        raise CheckpointError(f"{path} holds a model of kind {kind!r}, which this diffgan_lib does not know "
                              f"(known: {', '.join(KINDS)}); upgrade diffgan_lib")
    checks = {"in_ch": lambda v: v in (1, 3), "base": lambda v: isinstance(v, int) and 8 <= v <= MAX_BASE and v % 8 == 0,
              "D_base": lambda v: isinstance(v, int) and 8 <= v <= MAX_BASE and v % 8 == 0,
              "time_embedding": lambda v: isinstance(v, bool),
              "num_classes": lambda v: v is None or (isinstance(v, int) and 0 <= v <= 1000),
              "mean_path": lambda v: v is None or isinstance(v, bool)}
    bad = [f"{k}={m.get(k)!r}" for k, ok in checks.items() if not ok(m.get(k))]
    sched = ckpt["scheduler"] or {}
    if not isinstance(sched, dict) or not (isinstance(sched.get("timesteps", 1000), int)
                                           and 1 <= sched.get("timesteps", 1000) <= MAX_T):
        bad.append(f"timesteps={sched.get('timesteps') if isinstance(sched, dict) else sched!r}")
    if m["kind"] == "fewstep":
        T = sched.get("timesteps", 1000) if isinstance(sched, dict) else 1000
        levels = m.get("levels")
        if not (isinstance(levels, list) and 1 <= len(levels) <= 8 and all(isinstance(t, int) for t in levels)
                and all(a > b for a, b in zip(levels, levels[1:])) and levels[-1] >= 0 and levels[0] < T):
            bad.append(f"levels={levels!r}")
        if not (isinstance(m.get("image_size"), int) and 32 <= m["image_size"] <= 4096):
            bad.append(f"image_size={m.get('image_size')!r}")
    if bad:
        raise CheckpointError(f"{path} has impossible model settings ({', '.join(bad)}); it is damaged or "
                              "was edited by hand; use another checkpoint")
    if m["kind"] == "diffusion":            # a fewstep file keeps the fine-tune's own FewStepConfig
        _validate_config(ckpt["config"], path)
    _validate_members(ckpt.get("members"), path)


def _validate_members(members, path) -> None:
    """The optional record of the training images: None, or a dict with a str "source" and either
    "range" [a, b] (0 <= a <= b) or "indices" (ints >= 0); "files", when there, a list of str."""
    if members is None:
        return
    ok = isinstance(members, dict) and isinstance(members.get("source"), str)
    if ok and "range" in members:
        r = members["range"]
        ok = isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r) and 0 <= r[0] <= r[1]
    elif ok:
        idx = members.get("indices")
        ok = isinstance(idx, list) and all(type(v) is int and v >= 0 for v in idx)
    if ok and "files" in members:
        ok = isinstance(members["files"], list) and all(isinstance(f, str) for f in members["files"])
    if not ok:
        raise CheckpointError(f"{path} has a damaged record of its training images (members={str(members)[:120]}); "
                              "it was edited by hand or written by a newer diffgan_lib: delete the 'members' entry "
                              "(torch.load, del ckpt['members'], torch.save) or upgrade diffgan_lib")


def _validate_config(config, path) -> None:
    """The saved TrainConfig must rebuild: a dict of known fields with values of the right type."""
    if config is None:
        return
    try:
        if not isinstance(config, dict):
            raise ValueError(f"it is a {type(config).__name__}, not a dict")
        TrainConfig.from_dict(config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path} has an unusable training configuration ({' '.join(str(err).split())}); "
                              "it is damaged, edited by hand or written by a newer diffgan_lib; use another "
                              "checkpoint or upgrade diffgan_lib") from None


def read_checkpoint(path) -> dict:
    """``torch.load(weights_only=True)``, checked and migrated to the current version (see the module doc).

    Errors say what is wrong and what to do: FileNotFoundError lists the .pth files that do exist;
    CheckpointError for a damaged, foreign, newer, or pickled-object file.
    """
    path = local_path(path, "checkpoint path")
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
    _validate(ckpt, path)
    return ckpt


def training_members(checkpoint) -> dict | None:
    """Which images a model was trained on: the checkpoint's ``members`` record with "indices" always
    a list of ints (a stored "range" [a, b] becomes a, ..., b - 1), or None when the file does not say
    (written before the record existed, trained from a TensorDataset or list, or resumed on other data).

    checkpoint: a path, or a dict from ``read_checkpoint``. For phantoms, index i is phantom i of
    ``PhantomDataset(seed=...)``; for "pneumoniamnist" or a .npz, row i of the ``split``; for a
    folder, ``files[i]`` (relative to ``source``). Any image not listed is a non-member.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    members = ckpt.get("members")
    if members is None:
        return None
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in members.items() if k != "range"}
    if "range" in members:
        out["indices"] = list(range(*members["range"]))
    return out


def load_training_state(path) -> dict:
    """The whole checkpoint dict for resuming (tensors on the CPU), history as lists, ``path`` added."""
    ckpt = read_checkpoint(path)
    if ckpt.get("sampling_only"):
        raise CheckpointError(f"{path} was exported for sampling only (no optimiser states); resume from "
                              "the full checkpoint it was made from, or start a new run")
    ckpt["history"] = {k: v.tolist() for k, v in ckpt["history"].items()}
    ckpt["path"] = str(path)
    return ckpt


def load_state(module, state: dict, what: str, path) -> None:
    """``module.load_state_dict(state)`` with a CheckpointError naming the network when they do not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: the {what} weights do not fit the network of this configuration "
                              f"({detail}); use the configuration the checkpoint was trained with") from None


def build_models(model: dict):
    """(G, D), untrained, from a checkpoint's ``model`` section (kind "diffusion"; ``num_classes`` and
    ``mean_path`` optional)."""
    return (UNet(model["in_ch"], model["base"], model["time_embedding"], model.get("num_classes", 0),
                 model.get("mean_path", False)),
            Discriminator(model["in_ch"], model["D_base"]))


class LoadedCheckpoint(tuple):
    """``(G, D, scheduler)``, as the seed's ``load_checkpoint`` returns, plus ``.config`` (TrainConfig
    or None), ``.image_size``, ``.step``, ``.epoch``, ``.history``, ``.kind``, ``.path`` and ``.members``
    (``training_members``: the training images, or None). For kind
    "fewstep", G is a FewStepGenerator (sample() then takes its own levels), D the pair discriminator
    (None for the regression-only control), and ``.teacher`` / ``.fewstep_config`` describe the run."""

    def __new__(cls, G, D, scheduler, **info):
        self = super().__new__(cls, (G, D, scheduler))
        self.members = None
        self.__dict__.update(info)
        return self


def load_checkpoint(path, device=None, which: str = "ema") -> LoadedCheckpoint:
    """Rebuild ``G, D, scheduler`` from a checkpoint, in eval mode on ``device`` (None = best here).

    ``which="ema"`` loads the averaged generator (the one to sample from; the raw one when the run
    had no EMA), ``"raw"`` the last optimiser weights.
    """
    if which not in ("ema", "raw"):
        raise ValueError(f"which={which!r}: choose 'ema' (for sampling) or 'raw'")
    ckpt = read_checkpoint(path)
    dev = pick_device(device)
    if ckpt["model"]["kind"] == "fewstep":
        from .fewstep import load_fewstep
        G, D = load_fewstep({**ckpt, "path": str(path)}, which)
        G.scheduler.to(dev)
        return LoadedCheckpoint(G.to(dev), D.to(dev) if D is not None else None, G.scheduler, config=None,
                                fewstep_config=ckpt["config"], image_size=ckpt["model"]["image_size"],
                                step=ckpt["step"], epoch=0, path=str(path), kind="fewstep",
                                teacher=ckpt["model"]["teacher"], members=training_members(ckpt),
                                history={k: v.tolist() for k, v in ckpt["history"].items()})
    G, D = build_models(ckpt["model"])
    load_state(G, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G", path)
    load_state(D, ckpt["D"], "D", path)
    scheduler = DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev)
    config = TrainConfig.from_dict(ckpt["config"]) if ckpt["config"] else None
    return LoadedCheckpoint(G.to(dev).eval(), D.to(dev).eval(), scheduler, config=config,
                            image_size=config.image_size if config else None, step=ckpt["step"],
                            epoch=ckpt.get("epoch", 0), path=str(path), kind=ckpt["model"]["kind"],
                            history={k: v.tolist() for k, v in ckpt["history"].items()}, members=training_members(ckpt))
