"""Reading checkpoints whole (the envelope, then its kind's checks, ``engine.kinds``), loading the networks they
hold (``load_checkpoint``), the record of training images, and small exports for sampling.
"""
from __future__ import annotations

import torch

from ..core.device import pick_device
from ..core.onecall import OneCallGenerator
from .checkpoints import CheckpointError, read_envelope, write_checkpoint
from .config import MAX_BASE
from .kinds import KINDS, MAX_T
from .weights import (LoadedCheckpoint, build_models, load_state, members_record, unet_fields, unwrap,
                      weights_sha256)

__all__ = ["KINDS", "read_checkpoint", "load_checkpoint", "load_teacher", "LoadedCheckpoint", "build_models", "load_state",
           "unet_fields", "unwrap", "weights_sha256", "training_members", "export_for_sampling", "MAX_T"]

_POSITIVE_EVEN = lambda v: isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= MAX_BASE and v % 8 == 0  # noqa: E731
_UNET_CHECKS = {"in_ch": lambda v: v in (1, 3) and not isinstance(v, bool), "base": _POSITIVE_EVEN,
                "D_base": _POSITIVE_EVEN, "time_embedding": lambda v: isinstance(v, bool),
                "num_classes": lambda v: v is None or (isinstance(v, int) and 0 <= v <= 1000),
                "mean_path": lambda v: v is None or isinstance(v, bool)}


def read_checkpoint(path) -> dict:
    """The checkpoint at ``path`` (``engine.checkpoints.read_envelope``) with its model section checked by
    its kind, before anything is built: CheckpointError names the file and the field otherwise."""
    ckpt = read_envelope(path)
    m = ckpt["model"]
    if not isinstance(m, dict) or m.get("kind") not in KINDS:
        kind = m.get("kind") if isinstance(m, dict) else None
        raise CheckpointError(f"{path} holds a model of kind {kind!r}, which this diffgan_lib does not know "
                              f"(known: {', '.join(KINDS)}); upgrade diffgan_lib")
    bad = [f"{k}={m.get(k)!r}" for k, ok in _UNET_CHECKS.items() if not ok(m.get(k))]
    if not isinstance(ckpt["history"], dict):
        bad.append(f"history={type(ckpt['history']).__name__}")
    if not (isinstance(ckpt["step"], int) and ckpt["step"] >= 0):
        bad.append(f"step={ckpt['step']!r}")
    KINDS[m["kind"]].check(ckpt, bad)
    if bad:
        raise CheckpointError(f"{path} has impossible model settings ({', '.join(bad)}); it is damaged or "
                              "was edited by hand; use another checkpoint")
    KINDS[m["kind"]].check_config(ckpt["config"], path)
    _check_members(ckpt.get("members"), path)
    return ckpt


def _check_members(members, path) -> None:
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


def training_members(checkpoint) -> dict | None:
    """Which images a model was trained on: the checkpoint's ``members`` record with "indices" always
    a list of ints (a stored "range" [a, b] becomes a, ..., b - 1), or None when the file does not say.

    checkpoint: a path, or a dict from ``read_checkpoint``. For phantoms, index i is phantom i of
    ``PhantomDataset(seed=...)``; for "pneumoniamnist" or a .npz, row i of the ``split``; for a
    folder, ``files[i]`` (relative to ``source``). Any image not listed is a non-member.
    """
    return members_record(checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint))


def load_checkpoint(path, device=None, which: str = "ema") -> LoadedCheckpoint:
    """Rebuild ``G, D, scheduler`` from a checkpoint, in eval mode on ``device`` (None = best here).

    ``which="ema"`` loads the averaged generator (the one to sample from; the raw one when the run
    had no EMA), ``"raw"`` the last optimiser weights. A run that saved no D (pure diffusion) gets a
    fresh, untrained D, so the seed's ``G, D, scheduler`` still unpacks.
    """
    if which not in ("ema", "raw"):
        raise ValueError(f"which={which!r}: choose 'ema' (for sampling) or 'raw'")
    ckpt = read_checkpoint(path)
    return KINDS[ckpt["model"]["kind"]].load(ckpt, which, path, pick_device(device), read=read_checkpoint)


def load_teacher(checkpoint, teacher=None, device=None):
    """The teacher UNet of a one-call checkpoint (a path), in eval mode on ``device``: the file ``teacher`` if
    given, else the file its record names beside the checkpoint or among the shipped models, always checked
    against the recorded weight hash. ``sample(G, scheduler, steps=k, teacher=...)`` uses it for k >= 2 calls."""
    from .kinds import teacher_weights
    ckpt = read_checkpoint(checkpoint)
    if ckpt["model"]["kind"] != "onecall":
        raise ValueError(f"{checkpoint} holds a {ckpt['model']['kind']!r} model; only a one-call generator "
                         "(fewstep --levels 1) has a teacher that finishes its images")
    record = ckpt["model"]["teacher"]
    weights = teacher_weights(record, checkpoint, read_checkpoint, given=teacher,
                               why="makes images in more than one call with")
    unet, _ = build_models(record["model"])
    load_state(unet, weights, "G", teacher or record.get("file"))
    return unet.to(pick_device(device)).eval()


def export_for_sampling(path, out, half: bool = True, keep_D: bool = False):
    """Write a small copy of checkpoint ``path`` at ``out`` holding what sampling needs.

    The generator (its EMA weights when there are some), the configuration and the history stay; optimiser
    and scaler states go, and so does D unless ``keep_D`` (sampling needs none; a D that never trained is
    never kept). Weights become float16 when ``half`` (the loader casts them back to float32). About a
    quarter of the full file. Such a file cannot be resumed from.
    """
    ckpt = read_checkpoint(path)
    cast = (lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}) if half else dict
    d_hist = ckpt["history"].get("D")
    if not keep_D or d_hist is not None and not torch.isfinite(d_hist).any():   # unasked for, or never trained
        ckpt["D"] = None
    if ckpt["model"]["kind"] in ("onecall", "fewstep"):      # a shared file names its teacher, not this machine's path
        ckpt["model"] = {**ckpt["model"], "teacher": {k: v for k, v in ckpt["model"]["teacher"].items() if k != "path"}}
    if ckpt["model"]["kind"] == "onecall":       # D's heads read the teacher: no use for sampling
        ckpt["D"] = None
        G = ckpt["G_ema"] if ckpt["G_ema"] is not None else ckpt["G"]
        frozen = OneCallGenerator.FROZEN.get((ckpt["config"] or {}).get("freeze", "none"), ())
        if frozen:                                                   # keep only what the fine-tune changed
            ckpt["G_ema"] = {k: v for k, v in G.items() if not k.startswith(frozen)}
            ckpt["model"] = {**ckpt["model"], "partial": True}
    slim = {**ckpt, "G": cast(ckpt["G_ema"] if ckpt["G_ema"] is not None else ckpt["G"]), "G_ema": None,
            "D": cast(ckpt["D"]) if ckpt["D"] is not None else None, "opt_G": None, "opt_D": None, "scaler": None,
            "sampling_only": True,
            "history": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["history"].items()}}
    for key in ("format", "version", "torch_version"):
        slim.pop(key)
    return write_checkpoint(out, slim)

