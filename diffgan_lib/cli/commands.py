"""What each command does: train, sample, fewstep. Each takes the parsed arguments and returns an exit status."""
from __future__ import annotations

import math
import sys
import unicodedata
from pathlib import Path

import torch

from ..data.files import check_writable, local_path

__all__ = ["train_command", "sample_command", "fewstep_command"]

DEFAULT_BATCH = 256      # sample: images per network call unless --batch-size says otherwise (bounds memory)


def _positive(**values) -> None:
    """Refuse zero or negative counts with one line naming the option."""
    for name, v in values.items():
        if v is not None and v < 1:
            flag = "-n" if name == "n" else f"--{name.replace('_', '-')}"
            raise ValueError(f"{flag} {v}: must be at least 1")


def _data_source(value: str) -> str:
    """--data: a dataset name as given, or a local path (``~`` expanded; empty and URLs refused)."""
    from ..data.loaders import SOURCES
    return value if value.lower() in SOURCES else str(local_path(value, "--data"))


def _class_names(data) -> tuple[str, ...]:
    """The classes a --conditional run learns from --data."""
    from ..data.loaders import PNEUMONIAMNIST_CLASSES
    from ..data.phantoms import PHANTOM_CLASSES
    name = str(data).lower()
    if name == "phantoms":
        return PHANTOM_CLASSES
    if name == "pneumoniamnist":
        return PNEUMONIAMNIST_CLASSES
    if _is_folder(str(data)):
        raise ValueError(f"--conditional needs labels: for a folder of your scans ({data}) put each class's images "
                         "in a sub-folder named after it (DATA/CLASS_NAME/*.png) and add --labels folders")
    raise ValueError(f"--conditional needs labels: it works with --data phantoms, pneumoniamnist or a folder with "
                     f"one sub-folder per class (--labels folders), not with {data}")


def _is_folder(data: str) -> bool:
    """Whether --data is a folder of the user's (not a dataset name)."""
    from ..data.loaders import SOURCES
    return data.lower() not in SOURCES and Path(data).is_dir()


def _folder_labels(a) -> bool:
    """Whether train takes class labels from the sub-folders of --data (--labels folders), checked."""
    if a.labels is None:
        return False
    if not _is_folder(a.data):
        raise ValueError("--labels folders reads the classes from the sub-folders of a folder (DATA/CLASS_NAME/*.png), "
                         f"but --data {a.data} is not a folder; phantoms and pneumoniamnist carry their own labels: "
                         "drop --labels")
    if not (a.conditional or a.resume):
        raise ValueError("--labels folders gives class labels, which only a conditional model uses: add --conditional "
                         "(or drop --labels to train an unconditional model on every image below the folder)")
    return True


def _folder_classes(cfg, names: tuple[str, ...], a):
    """The config with the folder's class names; on --resume they must be the checkpoint's."""
    if not a.resume:
        return cfg.replace(class_names=names)
    if tuple(names) != cfg.class_names:
        raise ValueError(f"--resume {a.resume} learned the classes {', '.join(cfg.class_names) or '(none)'}, but the "
                         f"sub-folders of --data {a.data} are {', '.join(names)}; resume on the same classes")
    return cfg


def label_index(label: str, names) -> int:
    """A class given by name (first: a class called "1" is the class "1") or by index -> its index,
    names compared in Unicode NFC form; ValueError listing the known ones."""
    nfc = [unicodedata.normalize("NFC", n) for n in names]
    wanted = unicodedata.normalize("NFC", label.strip())
    if wanted in nfc:
        return nfc.index(wanted)
    if wanted.isascii() and wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise ValueError(f"--label {label}: this model knows {', '.join(f'{i} {n}' for i, n in enumerate(names))}")


def _resumed_config(a, changes: dict, folder_labels: bool):
    """(config, channels, folder_labels) of the run ``--resume`` continues, command-line values applied."""
    from ..engine.config import TrainConfig
    from ..engine.models import read_checkpoint
    saved = read_checkpoint(a.resume)
    if saved["model"]["kind"] not in ("diffusion", "flow"):
        raise ValueError(f"--resume {a.resume} is a {saved['model']['kind']} model, not a diffusion training run; "
                         "continue it with the command that made it (python -m diffgan_lib fewstep --resume ...)")
    if saved["config"] is None:
        raise ValueError(f"--resume {a.resume} holds no training configuration (a file of the seed's "
                         "save_checkpoint); resume it from Python with train(..., resume=..., config=...)")
    cfg = TrainConfig.from_dict(saved["config"])
    if a.objective is not None and a.objective != cfg.objective:
        raise ValueError(f"--objective {a.objective}: {a.resume} was trained with objective {cfg.objective}, "
                         "which a resumed run keeps; leave the flag out, or start a new run in another --out")
    if a.mean_path is not None and a.mean_path != cfg.mean_path:
        raise ValueError(f"--{'' if a.mean_path else 'no-'}mean-path: {a.resume} was trained "
                         f"{'without' if a.mean_path else 'with'} the mean path, which is part of its network; "
                         "leave the flag out to resume it, or start a new run in another --out")
    cfg = cfg.replace(**changes)
    folder_labels = folder_labels or bool(cfg.class_names) and _is_folder(a.data)
    if cfg.class_names and not folder_labels and tuple(cfg.class_names) != _class_names(a.data):
        raise ValueError(f"--resume {a.resume} learned the classes {', '.join(cfg.class_names)}, but --data "
                         f"{a.data} has the classes {', '.join(_class_names(a.data))}; resume on the same data")
    return cfg, saved["model"]["in_ch"], folder_labels


def _train_config(a, dev):
    """(config, channels, folder_labels) of the run the arguments ask for (new, or resumed)."""
    from ..engine.config import TrainConfig
    lr = {} if a.lr is None else {"lr_G": a.lr, "lr_D": a.lr}
    changes = {k: v for k, v in dict(image_size=a.image_size, base=a.base, adv_weight=a.adv_weight,
                                      objective=None if a.resume else a.objective,
                                      mean_path=a.mean_path, checkpoint_every=a.checkpoint_every, keep_last=a.keep_last,
                                      save_every=a.save_every, precision=a.precision, **lr).items()
               if v is not None}
    folder_labels = _folder_labels(a)
    if a.resume:     # the run's own configuration, T and channels; command-line values override
        return _resumed_config(a, changes, folder_labels)
    classes = _class_names(a.data) if a.conditional and not folder_labels else ()
    return TrainConfig.for_device(dev).replace(seed=a.seed, class_names=classes, **changes), a.channels, folder_labels


def _print_classes(cfg, dataset, data) -> None:
    counts = dataset.labels.bincount(minlength=len(cfg.class_names)).tolist()
    print(f"{len(counts)} classes from the sub-folders of {data}: "
          + ", ".join(f"{name} ({n} image{'' if n == 1 else 's'})" for name, n in zip(cfg.class_names, counts)))


def train_command(a) -> int:
    from ..core.device import env_world, pick_device
    from ..data.loaders import make_dataloader
    from ..engine.models import MAX_T
    from ..engine.rundir import check_run_folder
    from ..engine.train import train
    _positive(epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size, timesteps=a.timesteps,
              n_images=a.n_images, keep_last=a.keep_last)
    if a.timesteps is not None and a.timesteps > MAX_T:
        raise ValueError(f"--timesteps {a.timesteps}: at most {MAX_T} (the seed's T is 1000)")
    a.data = _data_source(a.data)
    a.resume = None if a.resume is None else str(local_path(a.resume, "--resume"))
    out = str(local_path(a.out, "--out")) if a.out is not None else (
        str(Path(a.resume).parent) if a.resume else "checkpoints")
    dev = pick_device(a.device)
    cfg, channels, folder_labels = _train_config(a, dev)
    if env_world()[0] == 0:          # fail fast, before any data is loaded (train() checks again, locked)
        check_writable(out, "--out", create=False)      # made by train() once the data have loaded
        check_run_folder(out, a.resume, a.overwrite)
    labelled = {"return_labels": True, **({"labels": "folders"} if folder_labels else {})}
    loader = make_dataloader(a.data, cfg.image_size, a.batch_size, channels=channels, n=a.n_images,
                             seed=cfg.seed, device=dev, **(labelled if cfg.class_names or folder_labels else {}))
    if folder_labels:                # the classes are the folder's: new in the config, or the resumed run's
        cfg = _folder_classes(cfg, loader.dataset.class_names, a)
        _print_classes(cfg, loader.dataset, a.data)
    epochs = a.epochs if a.epochs is not None else 10**9 if a.max_steps else 10   # --max-steps alone: that many steps
    result = train(loader, image_channels=channels, timesteps=a.timesteps, device=dev, epochs=epochs,
                   save_dir=out, config=cfg, resume=a.resume, max_steps=a.max_steps, overwrite=a.overwrite)
    status = 143 if result.stopped_by == "SIGTERM" else 130 if result.stopped_by else 0
    if env_world()[0] != 0:          # under torchrun only rank 0 prints
        return status
    if result.stopped_by:
        print(f"stopped by {result.stopped_by}; continue with: python -m diffgan_lib train --resume "
              f"{result.checkpoint} --data {a.data}" + (f" --n-images {a.n_images}" if a.n_images else "")
              + f" --batch-size {a.batch_size}" + (f" --epochs {a.epochs}" if a.epochs is not None else "")
              + (f" --max-steps {a.max_steps}" if a.max_steps else "") + f" --out {out}", file=sys.stderr)
    else:
        size = sum({f.stat().st_ino: f.stat().st_size for f in Path(out).glob("*.pth")}.values()) / 2**20  # links once
        print(f"history: {Path(out) / 'history.json'}; checkpoints in {out}: {size:.1f} MB\n"
              f"sample it with: python -m diffgan_lib sample --checkpoint {result.checkpoint} -n 64 "
              f"--out {Path(out) / 'samples'}")
    return status


def sample_command(a) -> int:
    from ..engine.models import load_checkpoint
    from ..sampling import FAST_SAMPLER, sample, to_unit, write_sample_set
    from ..data.phantoms import check_image_size
    _positive(n=a.n, steps=a.steps, batch_size=a.batch_size)
    if a.image_size is not None:
        check_image_size(a.image_size, name="--image-size")
    if a.eta is not None and not 0 <= a.eta <= 1:          # also refuses nan
        raise ValueError(f"--eta {a.eta}: must lie in [0, 1] (0 deterministic DDIM, 1 DDPM-like noise)")
    if a.sampler == "ddpm" and a.eta is not None:
        raise ValueError(f"--eta {a.eta}: eta is DDIM's; --sampler ddpm always adds its noise (leave --eta out)")
    out = None if a.list_labels else check_writable(a.out, "--out", create=False)   # before minutes of sampling
    G, _, scheduler = loaded = load_checkpoint(local_path(a.checkpoint, "--checkpoint"), device=a.device,
                                               which=a.which)
    names = loaded.config.class_names if loaded.config is not None else ()
    if a.list_labels:
        print("\n".join(f"{i} {n}" for i, n in enumerate(names)) if names else "unconditional model: no labels")
        return 0
    if (a.label is not None or a.guidance is not None) and not names:
        raise ValueError("--label / --guidance need a conditional model (train --conditional); this one is unconditional")
    if a.guidance is not None and a.label is None:
        raise ValueError(f"--guidance {a.guidance} needs --label, the class to guide towards (see --list-labels)")
    if a.guidance is not None and not 0 <= a.guidance < 100:          # also refuses nan
        raise ValueError(f"--guidance {a.guidance}: use a number in [0, 100): 0 unconditional, 1 conditional, 3 usual")
    if a.teacher is not None and not (loaded.kind == "onecall" and (a.steps or 1) > 1):
        raise ValueError("--teacher: the teacher finishes a one-call model's images when --steps is 2 or more; "
                         "leave it out here")
    if loaded.kind in ("fewstep", "onecall") and not a.clip_x0:
        raise ValueError("--no-clip-x0: a few-step generator always clamps its x̂0 to [-1, 1]; leave the flag out")
    guided = {} if a.label is None else {"labels": label_index(a.label, names), "guidance_scale": a.guidance}
    size = a.image_size if a.image_size is not None else (loaded.image_size or 32)
    if a.solver is not None and loaded.kind != "flow":
        raise ValueError(f"--solver {a.solver}: ODE solvers sample flow models (train --objective flow); this is a "
                         f"{loaded.kind} model (use --sampler)")
    if loaded.kind == "flow":      # an ODE solver; sample() names any DDPM/DDIM option given
        if a.sampler is not None:
            raise ValueError(f"--sampler {a.sampler}: a flow model is sampled by an ODE solver (--solver euler|heun)")
        x = sample(G, scheduler, n=a.n, image_size=size, sampler=a.solver, steps=a.steps, eta=a.eta or 0.0,
                   seed=a.seed, batch_size=a.batch_size or DEFAULT_BATCH, **guided)
    elif loaded.kind in ("fewstep", "onecall"):   # its own levels; sample() names any sampler option given
        teacher = None
        if loaded.kind == "onecall" and (a.steps or 1) > 1:
            from ..engine.models import load_teacher
            teacher = load_teacher(loaded.path, a.teacher and local_path(a.teacher, "--teacher"), device=a.device)
        x = sample(G, scheduler, n=a.n, image_size=size, sampler=a.sampler, steps=a.steps, eta=a.eta or 0.0,
                   seed=a.seed, batch_size=a.batch_size or DEFAULT_BATCH, teacher=teacher)
    else:
        sampler = a.sampler or FAST_SAMPLER["sampler"]
        if sampler == "ddpm" and a.steps is not None:
            raise ValueError(f"--steps {a.steps}: DDPM walks all T={scheduler.T} steps; use --sampler ddim for fewer")
        eta = FAST_SAMPLER["eta"] if a.eta is None else a.eta
        x = sample(G, scheduler, n=a.n, image_size=size, sampler=sampler,
                   steps=(a.steps or FAST_SAMPLER["steps"]) if sampler == "ddim" else None, eta=eta, seed=a.seed,
                   batch_size=a.batch_size or DEFAULT_BATCH, clip_x0=a.clip_x0, **guided)
    images = to_unit(x).float().cpu()
    _, replaced = write_sample_set(images, out)      # complete, or the earlier set stays as it was
    if replaced:
        print(f"replaced the earlier samples in {out} ({replaced} images)")
    print(f"wrote {a.n} samples of {size} px to {out}: grid.png, images/, samples.npy (float32 in [0, 1])")
    return 0


def _heldout(data: str, side: int, seed: int, loader):
    """256 real images the fine-tune never trains on, for D's AUROC: PneumoniaMNIST's val split, phantoms of
    another seed, else (with a warning) the first training images."""
    import warnings
    from ..data.loaders import ImageDataset
    from ..data.phantoms import PhantomDataset
    if data.lower() == "pneumoniamnist":
        return ImageDataset("pneumoniamnist", side, split="val").images[:256]
    if data.lower() == "phantoms":
        ds = PhantomDataset(n=256, image_size=side, seed=seed + 1)
        return torch.stack([ds[i] for i in range(256)])
    warnings.warn("D's AUROC is measured on training images (no held-out split is known for this data): it says "
                  "less about what D has learned", stacklevel=2)
    return loader.dataset.images[:256] if hasattr(loader.dataset, "images") else next(iter(loader))[:256]


def _given_config(config_cls, a, given: dict):
    """The fine-tune's config from the options ``given``: None for a resume given none (the run keeps its own);
    for a resume, the run's own settings with ``given`` on top (not the current defaults), which the engine then
    checks against the run; else ``config_cls(**given)``."""
    if not a.resume:
        return config_cls(**given)
    if not given:
        return None
    from ..engine.run import load_training_state
    return config_cls.from_dict({**load_training_state(local_path(a.resume, "--resume"))["config"], **given})


def _onecall(a, teacher, loader, side) -> int:
    """fewstep --levels 1: the one-call generator with the teacher-feature discriminator."""
    from ..engine.config import OneCallConfig
    from ..engine.onecall import CHANCE_BAND, onecall_train
    given = {k: v for k, v in dict(adv_weight=a.adv_weight, reg_weight=a.reg_weight, pairs=a.pairs, seed=a.seed,
                                   freeze=a.freeze, lr_G=a.lr).items() if v is not None}
    cfg = _given_config(OneCallConfig, a, given)
    result = onecall_train(a.init, loader, cfg, a.max_steps, a.out, _heldout(a.data, side, cfg.seed if cfg else 0, loader),
                           resume=a.resume, device=a.device, overwrite=a.overwrite, teacher=teacher)
    scores = [v for v in result.history["auroc"] if v == v]
    if scores:
        best = max(scores)
        verdict = ("D learned" if best >= CHANCE_BAND else
                   f"D never left chance (below {CHANCE_BAND}): a failed run, whatever its samples look like")
        print(f"D's held-out AUROC: first {scores[0]:.3f}, best {best:.3f}, last {scores[-1]:.3f}: {verdict}")
    return _fewstep_done(a, result, 1)


def _fewstep_done(a, result, levels: int) -> int:
    path = result.checkpoint
    if result.stopped_by:
        print(f"stopped by {result.stopped_by}; continue with: python -m diffgan_lib fewstep --init {a.init} "
              f"--data {a.data}" + (f" --n-images {a.n_images}" if a.n_images else "") + f" --levels {levels}"
              + f" --batch-size {a.batch_size} --max-steps {a.max_steps} --resume {path} --out {a.out}", file=sys.stderr)
        return 143 if result.stopped_by == "SIGTERM" else 130
    print(f"{'one-call' if levels == 1 else 'few-step'} model: {path} ({levels} network call{'s' * (levels > 1)} "
          f"per image); sample it with: python -m diffgan_lib sample --checkpoint {path} -n 64 "
          f"--out {Path(path).parent / 'samples'}")
    return 0


def fewstep_command(a) -> int:
    from ..data.loaders import make_dataloader
    from ..engine.config import FewStepConfig
    from ..engine.fewstep import fewstep_train, teacher_record
    _positive(levels=a.levels, max_steps=a.max_steps, batch_size=a.batch_size, n_images=a.n_images)
    if a.lr is not None and not (math.isfinite(a.lr) and a.lr > 0):
        raise ValueError(f"--lr {a.lr}: G's learning rate must be a positive number, e.g. 2e-5")
    teacher = teacher_record(local_path(a.init, "--init"))        # read once: its side here, its hash in the run
    side = (teacher["config"] or {}).get("image_size") or 32
    seed = a.seed if a.seed is not None else 0
    loader = make_dataloader(a.data, side, a.batch_size, n=a.n_images, seed=seed, device=a.device)
    if a.levels == 1:
        return _onecall(a, teacher, loader, side)
    only_one_call = [f"--{k.replace('_', '-')}" for k in ("freeze", "reg_weight", "pairs") if getattr(a, k) is not None]
    if only_one_call:
        raise ValueError(f"{', '.join(only_one_call)}: the one-call fine-tune's options (--levels 1)")
    given = {k: v for k, v in dict(levels=a.levels, adv_weight=a.adv_weight, seed=a.seed, lr_G=a.lr).items()
             if v is not None}
    cfg = _given_config(FewStepConfig, a, given)
    result = fewstep_train(a.init, loader, cfg, a.max_steps, a.out, resume=a.resume, device=a.device,
                           overwrite=a.overwrite, teacher=teacher)
    return _fewstep_done(a, result, result.run.G.n_levels)