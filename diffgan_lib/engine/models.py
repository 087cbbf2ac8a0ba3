"""The registry of model kinds: what a checkpoint's ``model`` section says, and the networks it rebuilds.

Each kind knows its fields, checks them before anything is built, and rebuilds its networks:
- "diffusion": {in_ch, base, time_embedding, D_base, num_classes?, mean_path?}: the UNet G and
  the PatchGAN D (``train``);
- "fewstep": the UNet's fields plus {levels, image_size, teacher, D_base}: a ``FewStepGenerator``
  and its pair discriminator, or None (``fewstep_train``);
- "flow": the UNet's fields: a velocity network of rectified flow (``TrainConfig(objective="flow")``),
  whose "scheduler" is a ``RectifiedFlow``;
- "onecall": the UNet's fields plus {t_star, image_size, teacher, D}: a ``OneCallGenerator``
  (``onecall_train``); the file keeps D's trainable heads, not the teacher's encoder they read.
A new kind is one more entry in ``KINDS``; the envelope (``engine.checkpoints``) never changes for it.
"""
from __future__ import annotations

import torch

from ..core.device import pick_device
from ..core.discriminator import Discriminator
from ..core.fewstep import FewStepGenerator, PairDiscriminator
from ..core.flow import RectifiedFlow
from ..core.onecall import OneCallGenerator
from ..core.scheduler import DiffusionScheduler
from ..core.unet import UNet
from .checkpoints import CheckpointError, read_envelope, write_checkpoint
from ..data.phantoms import MAX_SIDE
from .config import MAX_BASE, FewStepConfig, OneCallConfig, TrainConfig

__all__ = ["KINDS", "read_checkpoint", "load_checkpoint", "LoadedCheckpoint", "build_models", "load_state",
           "unet_fields", "training_members", "export_for_sampling", "MAX_BASE", "MAX_T", "MAX_SIDE"]

MAX_T = 100_000          # bounds checked before any network is built (with MAX_BASE and MAX_SIDE)
_POSITIVE_EVEN = lambda v: isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= MAX_BASE and v % 8 == 0  # noqa: E731
_UNET_CHECKS = {"in_ch": lambda v: v in (1, 3) and not isinstance(v, bool), "base": _POSITIVE_EVEN,
                "D_base": _POSITIVE_EVEN, "time_embedding": lambda v: isinstance(v, bool),
                "num_classes": lambda v: v is None or (isinstance(v, int) and 0 <= v <= 1000),
                "mean_path": lambda v: v is None or isinstance(v, bool)}


def unwrap(module):
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
    unet = unwrap(unet)
    fields = {"in_ch": unet.in_ch, "base": unet.base, "time_embedding": unet.time_embedding}
    if getattr(unet, "num_classes", 0):   # optional fields: unconditional, plain files stay as they were
        fields["num_classes"] = unet.num_classes
    if getattr(unet, "mean_path", False):
        fields["mean_path"] = True
    return fields


def build_models(model: dict):
    """(G, D), untrained, from a checkpoint's ``model`` section (the UNet's fields and ``D_base``)."""
    return (UNet(model["in_ch"], model["base"], model["time_embedding"], model.get("num_classes", 0),
                 model.get("mean_path", False)),
            Discriminator(model["in_ch"], model["D_base"]))


def load_state(module, state: dict, what: str, path) -> None:
    """``module.load_state_dict(state)`` with a CheckpointError naming the network when they do not fit,
    or when the weights hold NaN or inf (a run that diverged)."""
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: the {what} weights hold NaN or inf values ({bad[0]}...): the run diverged "
                              "before this file was written; use an earlier checkpoint of the run")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: the {what} weights do not fit the network of this configuration "
                              f"({detail}); use the configuration the checkpoint was trained with") from None


def _check_ddpm_scheduler(sched, bad: list) -> None:
    T = sched.get("timesteps", 1000) if isinstance(sched, dict) else None
    if not (isinstance(sched, dict) and isinstance(T, int) and 1 <= T <= MAX_T
            and set(sched) <= {"timesteps", "schedule", "beta_start", "beta_end"}):
        bad.append(f"scheduler={sched!r}"[:120])


class _Diffusion:
    """A diffusion model: the UNet G (noise predictor) and the PatchGAN D."""
    name = "diffusion"

    def fields(self, run) -> dict:
        return {"kind": self.name, **unet_fields(run.G), "D_base": unwrap(run.D).base}

    def check(self, ckpt: dict, bad: list) -> None:
        _check_ddpm_scheduler(ckpt["scheduler"] if ckpt["scheduler"] is not None else {}, bad)

    def scheduler(self, ckpt: dict, dev):
        return DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev)

    def check_config(self, config, path) -> None:
        """The saved TrainConfig must rebuild: a dict of known fields with values of the right type."""
        if config is None:
            return
        try:
            if not isinstance(config, dict):
                raise ValueError(f"it is a {type(config).__name__}, not a dict")
            cfg = TrainConfig.from_dict(config)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path} has an unusable training configuration ({' '.join(str(err).split())}); "
                                  "it is damaged, edited by hand or written by a newer diffgan_lib; use another "
                                  "checkpoint or upgrade diffgan_lib") from None
        if cfg.image_size is not None and cfg.image_size > MAX_SIDE:
            raise CheckpointError(f"{path} says image_size={cfg.image_size}, above the largest side this course "
                                  f"samples ({MAX_SIDE}); it is damaged or was edited by hand")

    def load(self, ckpt: dict, which: str, path, dev) -> "LoadedCheckpoint":
        G, D = build_models(ckpt["model"])
        load_state(G, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G", path)
        if ckpt.get("D") is not None:
            load_state(D, ckpt["D"], "D", path)
        scheduler = self.scheduler(ckpt, dev)
        config = TrainConfig.from_dict(ckpt["config"]) if ckpt["config"] else None
        return LoadedCheckpoint(G.to(dev).eval(), D.to(dev).eval(), scheduler, config=config,
                                image_size=config.image_size if config else None, step=ckpt["step"],
                                epoch=ckpt.get("epoch", 0), path=str(path), kind=self.name,
                                history=_history(ckpt), members=training_members(ckpt))


class _FewStep:
    """A few-step generator: the UNet read at K levels, and its pair discriminator (None without one)."""

    def fields(self, run) -> dict:
        G = run.G
        return {"kind": "fewstep", **unet_fields(G.unet), "D_base": run.D.base if run.D is not None else G.unet.base,
                "levels": G.levels.tolist(), "image_size": run.info["image_size"], "teacher": run.info["teacher"]}

    def check(self, ckpt: dict, bad: list) -> None:
        _check_ddpm_scheduler(ckpt["scheduler"] if ckpt["scheduler"] is not None else {}, bad)
        m, sched = ckpt["model"], ckpt["scheduler"] if isinstance(ckpt["scheduler"], dict) else {}
        T, levels = sched.get("timesteps", 1000), m.get("levels")
        if not (isinstance(levels, list) and 1 <= len(levels) <= 8 and all(isinstance(t, int) for t in levels)
                and all(a > b for a, b in zip(levels, levels[1:])) and levels[-1] >= 0 and levels[0] < T):
            bad.append(f"levels={levels!r}")
        if not (isinstance(m.get("image_size"), int) and 32 <= m["image_size"] <= MAX_SIDE):
            bad.append(f"image_size={m.get('image_size')!r}")
        if not (isinstance(m.get("teacher"), dict) and isinstance(m["teacher"].get("sha256"), str)):
            bad.append("teacher (the record of the model it was fine-tuned from)")

    def check_config(self, config, path) -> None:
        try:
            if not isinstance(config, dict):
                raise ValueError(f"config={config!r} is not a dict")
            FewStepConfig.from_dict(config)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{path} has an unusable few-step configuration ({' '.join(str(err).split())}); "
                                  "it is damaged or was edited by hand; use another checkpoint") from None

    def load(self, ckpt: dict, which: str, path, dev) -> "LoadedCheckpoint":
        m = ckpt["model"]
        unet, _ = build_models(m)
        load_state(unet, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G", path)
        G = FewStepGenerator(unet, DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev), m["levels"])
        D = None
        if ckpt.get("D") is not None:
            D = PairDiscriminator(m["in_ch"], m["D_base"], len(m["levels"]))
            load_state(D, ckpt["D"], "D", path)
            D = D.to(dev).eval()
        return LoadedCheckpoint(G.to(dev).eval(), D, G.scheduler, config=None, fewstep_config=ckpt["config"],
                                image_size=m["image_size"], step=ckpt["step"], epoch=0, path=str(path),
                                kind="fewstep", teacher=m["teacher"], members=training_members(ckpt),
                                history=_history(ckpt))


class _Flow(_Diffusion):
    """A flow model: the UNet read as a velocity network; its "scheduler" is the straight path."""
    name = "flow"

    def check(self, ckpt: dict, bad: list) -> None:
        sched = ckpt["scheduler"]
        if not (isinstance(sched, dict) and sched.get("path") == "rectified"
                and isinstance(sched.get("time_scale"), (int, float)) and 0 < sched["time_scale"] <= MAX_T):
            bad.append(f"scheduler={sched!r}"[:120])

    def scheduler(self, ckpt: dict, dev):
        return RectifiedFlow(ckpt["scheduler"]["time_scale"], device=dev)


class _OneCall:
    """A one-call generator: the UNet read once at t_star (``core.onecall``); its D's heads need the teacher, so
    a loaded file gives D = None (sampling needs none; ``onecall_train(resume=...)`` rebuilds D)."""

    def fields(self, run) -> dict:
        return {"kind": "onecall", **unet_fields(run.G.unet), "D_base": run.G.unet.base, "t_star": run.G.t_star,
                "image_size": run.info["image_size"], "teacher": run.info["teacher"],
                "D": {"width": run.D.width, "s_max": run.D.s_max} if run.D is not None else None}

    def check(self, ckpt: dict, bad: list) -> None:
        _check_ddpm_scheduler(ckpt["scheduler"] if ckpt["scheduler"] is not None else {}, bad)
        m = ckpt["model"]
        T = (ckpt["scheduler"] or {}).get("timesteps", 1000) if isinstance(ckpt["scheduler"], dict) else 1000
        if not (isinstance(m.get("t_star"), int) and 0 < m["t_star"] < T):
            bad.append(f"t_star={m.get('t_star')!r}")
        if not (isinstance(m.get("image_size"), int) and 32 <= m["image_size"] <= MAX_SIDE):
            bad.append(f"image_size={m.get('image_size')!r}")
        if not (isinstance(m.get("teacher"), dict) and isinstance(m["teacher"].get("sha256"), str)):
            bad.append("teacher (the record of the model it was fine-tuned from)")

    def check_config(self, config, path) -> None:
        try:
            OneCallConfig.from_dict(config if isinstance(config, dict) else {"config": config})
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path} has an unusable one-call configuration ({' '.join(str(err).split())}); "
                                  "it is damaged or was edited by hand; use another checkpoint") from None

    def load(self, ckpt: dict, which: str, path, dev) -> "LoadedCheckpoint":
        m = ckpt["model"]
        unet, _ = build_models(m)
        load_state(unet, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G", path)
        G = OneCallGenerator(unet, DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev), m["t_star"])
        return LoadedCheckpoint(G.to(dev).eval(), None, G.scheduler, config=None, onecall_config=ckpt["config"],
                                image_size=m["image_size"], step=ckpt["step"], epoch=0, path=str(path),
                                kind="onecall", teacher=m["teacher"], members=training_members(ckpt),
                                history=_history(ckpt))


KINDS = {"diffusion": _Diffusion(), "fewstep": _FewStep(), "flow": _Flow(), "onecall": _OneCall()}


def _history(ckpt: dict) -> dict:
    return {k: v.tolist() for k, v in (ckpt["history"] or {}).items()}


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
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    members = ckpt.get("members")
    if members is None:
        return None
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in members.items() if k != "range"}
    if "range" in members:
        out["indices"] = list(range(*members["range"]))
    return out


class LoadedCheckpoint(tuple):
    """``(G, D, scheduler)``, as the seed's ``load_checkpoint`` returns, plus ``.config`` (TrainConfig
    or None), ``.image_size``, ``.step``, ``.epoch``, ``.history``, ``.kind``, ``.path`` and ``.members``
    (``training_members``: the training images, or None). For kind "fewstep", G is a FewStepGenerator
    (sample() then takes its own levels), D the pair discriminator (None for the regression-only
    control), and ``.teacher`` / ``.fewstep_config`` describe the run."""

    def __new__(cls, G, D, scheduler, **info):
        self = super().__new__(cls, (G, D, scheduler))
        self.members = None
        self.__dict__.update(info)
        return self


def load_checkpoint(path, device=None, which: str = "ema") -> LoadedCheckpoint:
    """Rebuild ``G, D, scheduler`` from a checkpoint, in eval mode on ``device`` (None = best here).

    ``which="ema"`` loads the averaged generator (the one to sample from; the raw one when the run
    had no EMA), ``"raw"`` the last optimiser weights. A run that saved no D (pure diffusion) gets a
    fresh, untrained D, so the seed's ``G, D, scheduler`` still unpacks.
    """
    if which not in ("ema", "raw"):
        raise ValueError(f"which={which!r}: choose 'ema' (for sampling) or 'raw'")
    ckpt = read_checkpoint(path)
    return KINDS[ckpt["model"]["kind"]].load(ckpt, which, path, pick_device(device))


def export_for_sampling(path, out, half: bool = True):
    """Write a small copy of checkpoint ``path`` at ``out`` holding what sampling needs.

    The generator (its EMA weights when there are some), D (unless it never trained), the configuration and
    the history stay;
    optimiser and scaler states go, and weights become float16 when ``half`` (the loader casts them
    back to float32). About a quarter of the full file. Such a file cannot be resumed from.
    """
    ckpt = read_checkpoint(path)
    cast = (lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}) if half else dict
    d_hist = ckpt["history"].get("D")
    if d_hist is not None and not torch.isfinite(d_hist).any():      # D never trained (pure diffusion): not kept
        ckpt["D"] = None
    slim = {**ckpt, "G": cast(ckpt["G_ema"] if ckpt["G_ema"] is not None else ckpt["G"]), "G_ema": None,
            "D": cast(ckpt["D"]) if ckpt["D"] is not None else None, "opt_G": None, "opt_D": None, "scaler": None,
            "sampling_only": True,
            "history": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["history"].items()}}
    for key in ("format", "version", "torch_version"):
        slim.pop(key)
    return write_checkpoint(out, slim)

