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

from pathlib import Path

from ..core.fewstep import FewStepGenerator, PairDiscriminator
from ..core.flow import RectifiedFlow
from ..core.onecall import OneCallGenerator
from ..core.scheduler import DiffusionScheduler
from ..data.phantoms import MAX_SIDE
from .checkpoints import CheckpointError
from .config import FewStepConfig, OneCallConfig, TrainConfig
from .weights import LoadedCheckpoint, build_models, load_state, members_record, unet_fields, unwrap, weights_sha256

__all__ = ["KINDS", "MAX_T", "teacher_weights"]

MAX_T = 100_000          # the largest T accepted, checked before any network is built


def _check_ddpm_scheduler(sched, bad: list) -> None:
    T = sched.get("timesteps", 1000) if isinstance(sched, dict) else None
    if not (isinstance(sched, dict) and isinstance(T, int) and 1 <= T <= MAX_T
            and set(sched) <= {"timesteps", "schedule", "beta_start", "beta_end"}):
        bad.append(f"scheduler={sched!r}"[:120])


def _check_fine_tuned(m: dict, bad: list) -> None:
    """The fields every fine-tuned generator's model section has: its image side and its teacher's record."""
    if not (isinstance(m.get("image_size"), int) and 32 <= m["image_size"] <= MAX_SIDE):
        bad.append(f"image_size={m.get('image_size')!r}")
    if not (isinstance(m.get("teacher"), dict) and isinstance(m["teacher"].get("sha256"), str)):
        bad.append("teacher (the record of the model it was fine-tuned from)")


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

    def load(self, ckpt: dict, which: str, path, dev, read=None) -> "LoadedCheckpoint":
        G, D = build_models(ckpt["model"])
        load_state(G, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G", path)
        if ckpt.get("D") is not None:
            load_state(D, ckpt["D"], "D", path)
        scheduler = self.scheduler(ckpt, dev)
        config = TrainConfig.from_dict(ckpt["config"]) if ckpt["config"] else None
        return LoadedCheckpoint(G.to(dev).eval(), D.to(dev).eval(), scheduler, config=config,
                                image_size=config.image_size if config else None, step=ckpt["step"],
                                epoch=ckpt.get("epoch", 0), path=str(path), kind=self.name,
                                history=_history(ckpt), members=members_record(ckpt))


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
        _check_fine_tuned(m, bad)

    def check_config(self, config, path) -> None:
        try:
            if not isinstance(config, dict):
                raise ValueError(f"config={config!r} is not a dict")
            FewStepConfig.from_dict(config)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{path} has an unusable few-step configuration ({' '.join(str(err).split())}); "
                                  "it is damaged or was edited by hand; use another checkpoint") from None

    def load(self, ckpt: dict, which: str, path, dev, read=None) -> "LoadedCheckpoint":
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
                                kind="fewstep", teacher=m["teacher"], members=members_record(ckpt),
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
        _check_fine_tuned(m, bad)

    def check_config(self, config, path) -> None:
        try:
            OneCallConfig.from_dict(config if isinstance(config, dict) else {"config": config})
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path} has an unusable one-call configuration ({' '.join(str(err).split())}); "
                                  "it is damaged or was edited by hand; use another checkpoint") from None

    def load(self, ckpt: dict, which: str, path, dev, read=None) -> "LoadedCheckpoint":
        m = ckpt["model"]
        unet, _ = build_models(m)
        weights = ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"]
        if m.get("partial"):                     # an export that keeps only what the fine-tune changed
            weights = {**teacher_weights(m["teacher"], path, read), **weights}
        load_state(unet, weights, "G", path)
        G = OneCallGenerator(unet, DiffusionScheduler(**(ckpt["scheduler"] or {}), device=dev), m["t_star"])
        return LoadedCheckpoint(G.to(dev).eval(), None, G.scheduler, config=None, onecall_config=ckpt["config"],
                                image_size=m["image_size"], step=ckpt["step"], epoch=0, path=str(path),
                                kind="onecall", teacher=m["teacher"], members=members_record(ckpt),
                                history=_history(ckpt))


def teacher_weights(teacher: dict, path, read, given=None,
                     why: str = "keeps only the layers its fine-tune changed; the rest come from") -> dict:
    """The teacher's generator weights for a fine-tuned file at ``path``: the file ``given``, else the recorded
    ``teacher["path"]``, else ``teacher["file"]`` beside ``path`` or among the shipped models; always checked
    against the recorded hash."""
    from ..data.files import shipped_path
    name = teacher.get("file") or "?"
    candidates = [Path(given)] if given is not None else [
        *([Path(teacher["path"])] if teacher.get("path") else []),          # where it was when the fine-tune ran
        Path(path).parent / name, shipped_path(f"pretrained/{name}", must_exist=False)]
    for candidate in candidates:
        if candidate.is_file():
            t = read(candidate)
            w = t.get("G_ema") if t.get("G_ema") is not None else t.get("G")
            if w is not None and weights_sha256(w) == teacher["sha256"]:
                return w
    where = (f"{given} is not it" if given is not None else
             f"found neither {'at ' + teacher['path'] + ', ' if teacher.get('path') else ''}beside it nor among the "
             "shipped models")
    fix = "put the teacher file beside it" if given is None else "name the file it was fine-tuned from"
    raise CheckpointError(f"{path} {why} its teacher {name} (sha256 {teacher['sha256'][:12]}...), {where}: {fix}")


KINDS = {"diffusion": _Diffusion(), "fewstep": _FewStep(), "flow": _Flow(), "onecall": _OneCall()}




def _history(ckpt: dict) -> dict:
    return {k: v.tolist() for k, v in (ckpt["history"] or {}).items()}


