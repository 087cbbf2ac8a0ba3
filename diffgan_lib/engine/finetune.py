"""What every fine-tune of a trained diffusion model shares: the record of its teacher, the checks made before
any file is touched, and the run in its folder through the one loop (``fewstep_train``, ``onecall_train``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.device import launched
from ..data.files import local_path
from .loop import fit
from .models import read_checkpoint, weights_sha256
from .run import load_training_state
from .rundir import RunDir
from .train import TrainResult

__all__ = ["teacher_record", "check_fine_tune", "resumed_config", "fine_tune_in_folder"]


def teacher_record(path) -> dict:
    """What a few-step checkpoint keeps of its teacher: its model and scheduler fields, config, weight hash, file
    name and absolute path (where ``load_teacher`` looks first; a moved file is found by name and hash).
    ValueError when ``path`` is not an unconditional diffusion model."""
    ckpt = read_checkpoint(path)
    if ckpt["model"]["kind"] != "diffusion":
        raise ValueError(f"{path} holds a {ckpt['model']['kind']!r} model; --init needs a diffusion model "
                         "(a train checkpoint or a data/pretrained export)")
    if ckpt["model"].get("num_classes"):
        raise ValueError(f"{path} is a class-conditional model; the few-step fine-tune makes unconditional "
                         "generators and would drop its classes: use an unconditional teacher")
    weights = ckpt["G_ema"] if ckpt.get("G_ema") is not None else ckpt["G"]
    return {"model": ckpt["model"], "scheduler": ckpt["scheduler"], "config": ckpt["config"],
            "sha256": weights_sha256(weights), "file": Path(path).name, "path": str(Path(path).resolve())}


def check_fine_tune(init, max_steps, resume, teacher: dict | None, kind: str):
    """(init path, teacher record, resume path, resumed state or None), every one checked: one process, a
    positive step count, a diffusion teacher, a resume file of this kind made from this very teacher."""
    if launched():
        raise ValueError("a fine-tune runs in one process; start it with python, not torchrun")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r} must be a positive int")
    init = local_path(init, "--init")
    teacher = teacher or teacher_record(init)
    state = None
    if resume is not None:
        resume = local_path(resume, "--resume")
        state = load_training_state(resume)
        if state["model"]["kind"] != kind or state["model"]["teacher"]["sha256"] != teacher["sha256"]:
            name = {"fewstep": "few-step", "onecall": "one-call"}.get(kind, kind)
            raise ValueError(f"{resume} is not a {name} run of the teacher {init} (its kind or the teacher's "
                             "weights differ); resume with the --init it was made from")
        if state["step"] > max_steps:
            raise ValueError(f"{resume} is at step {state['step']}, past --max-steps {max_steps}; raise --max-steps")
    return init, teacher, resume, state


FLAGS = {"lr_G": "--lr"}        # config fields whose command-line option is not --field-name


def resumed_config(config_cls, state: dict, cfg, resume, keys=None):
    """The resumed run's saved config; a ``cfg`` given must agree with it on ``keys`` (default: every field)."""
    saved = config_cls.from_dict(state["config"])
    if cfg is None:
        return saved
    keys = keys or [f.name for f in dataclasses.fields(saved)]
    differ = [k for k in keys if getattr(cfg, k) != getattr(saved, k)]
    if differ:
        flag = FLAGS.get(differ[0], "--" + differ[0].replace("_", "-"))
        raise ValueError(f"{resume} was fine-tuned with {', '.join(f'{k}={getattr(saved, k)!r}' for k in differ)}; "
                         f"a resumed run keeps them (leave {flag} out, or start a new run)")
    return cfg


def fine_tune_in_folder(run, state, dataloader, save_dir, max_steps: int, resume, overwrite: bool, init,
                        progress: bool, desc: str, extra_callbacks=(), prepare=None) -> TrainResult:
    """Put ``state`` back into ``run`` (a resume), then train it to ``max_steps`` in ``save_dir`` with every folder
    rule (the teacher ``init`` is never deleted by ``overwrite``); a ``TrainResult``. ``prepare(run, folder)``,
    if given, runs once the folder is checked and locked, before the first step."""
    if state is not None:
        run.load_state_dict(state)
    rundir = RunDir(save_dir, resume, overwrite, reads=(init,), what="--out")
    rundir.open()
    try:
        if prepare is not None:
            prepare(run, rundir.path)
        checkpoint, stopped_by = fit(run, dataloader, rundir, max_steps=max_steps, progress=progress, resume=resume,
                                     desc=desc, extra_callbacks=extra_callbacks)
        return TrainResult(run, checkpoint, stopped_by)
    finally:
        rundir.close()
