"""Command line: ``python -m diffgan_lib train ...`` and ``python -m diffgan_lib sample ...``.

train  -- trains on phantoms (the course's generated head slices) or on your scans (a folder of
          PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz), writing checkpoints to --out;
          under torchrun, one process per GPU (or CPU core) with DDP;
sample -- loads a checkpoint and writes grid.png, images/sample_XXX.png and samples.npy, the
          images as float32 (n, C, S, S) in [0, 1];
fewstep -- fine-tunes a few-step generator (DDGAN-style, adversarial) from a trained diffusion model.
Exit status: 0 done; 2 bad arguments or input, a folder that cannot be used, or a diverging run
(one line on stderr, no traceback); 130 after Ctrl-C and 143 after SIGTERM, once interrupted.pth is
saved. Paths: ``~`` is expanded; an empty path and a URL are refused. One run per --out folder
(--resume continues it, --overwrite replaces it); sample replaces its own earlier outputs in --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data.files import check_writable, local_path

__all__ = ["main", "build_parser"]


EXAMPLES = """examples:
  python -m diffgan_lib train --data phantoms --epochs 5 --out runs/quick
  python -m diffgan_lib train --data scans/ --image-size 64 --epochs 50 --out runs/scans
  python -m diffgan_lib train --data scans/ --conditional --labels folders --out runs/classes   # scans/CLASS/*.png
  python -m diffgan_lib train --resume runs/quick/final_model.pth --epochs 10
  python -m diffgan_lib sample --checkpoint runs/quick/final_model.pth -n 16 --out runs/quick/samples
  python -m diffgan_lib fewstep --init runs/quick/final_model.pth --data phantoms --max-steps 300 --out runs/fs
  python -m diffgan_lib sample --checkpoint runs/fs/final_model.pth -n 64 --out runs/fs/samples   # 4 evaluations
  torchrun --standalone --nproc_per_node 2 -m diffgan_lib train --data phantoms --batch-size 16 --out runs/ddp
  torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
      -m diffgan_lib train --data scans/ --out runs/big     # the same command on each of 2 machines"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m diffgan_lib", description="Train and sample the diffgan Diffusion + GAN "
                "model for synthetic medical images. Images are scaled to [-1, 1] for training.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,sample,fewstep}")
    t = sub.add_parser("train", help="train a model and write checkpoints",
                       description="Train G (UNet) and D (PatchGAN) and write epoch_XXXX.pth, "
                       "final_model.pth and history.json into --out. Ctrl-C (or SIGTERM) stops after the "
                       "current step, saves interrupted.pth and exits 130 (143). Under torchrun every process "
                       "trains on its own shard of the data and rank 0 writes the files.")
    t.add_argument("--data", default="phantoms", help="'phantoms' (generated head slices, the default), "
                   "'pneumoniamnist' (real chest X-rays shipped in data/, 4708 training images) or a path: a "
                   "folder of PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz (8-bit images keep their "
                   "levels, v / 127.5 - 1; see data/README.md)")
    t.add_argument("--image-size", type=int, help="side S of the training images, a multiple of 8, >= 32 "
                   "(default: 32 on CPU, 128 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--base", type=int, help="UNet / discriminator width, a multiple of 8 (default: 32 on "
                   "CPU, 64 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grayscale, 3 RGB (default 1)")
    t.add_argument("--epochs", type=int, help="total epochs, counted from the start of the run also when "
                   "resuming (default 10; with --max-steps alone, as many as those steps need)")
    t.add_argument("--max-steps", type=int, help="stop after this many optimisation steps in total, counted "
                   "from the start of the run")
    t.add_argument("--batch-size", type=int, default=16, help="images per step in each process (default 16); "
                   "under torchrun the global batch is batch-size x the number of processes")
    t.add_argument("--n-images", type=int, help="number of phantoms (default 1024), or keep only the first "
                   "N real images (yours or PneumoniaMNIST's)")
    t.add_argument("--out", help="folder for checkpoints (default ./checkpoints, or the --resume file's folder); "
                   "one run per folder: a folder holding another run's checkpoints is refused")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (its configuration is reused)")
    t.add_argument("--overwrite", action="store_true", help="delete the checkpoints, history.json and training "
                   "grids of an earlier run in --out first (with --resume into the file's own folder: allow "
                   "replacing a longer run's final_model.pth)")
    t.add_argument("--lr", type=float, help="learning rate of both G and D (default 2e-4; lower it to resume a "
                   "run that diverged)")
    t.add_argument("--adv-weight", type=float, help="weight w of the adversarial term on x0_pred in diff + w * adv "
                   "(default 0: pure diffusion, which measured better; 0.01 = the seed's kind of hybrid; with "
                   "--resume: the checkpoint's unless given)")
    t.add_argument("--mean-path", action=argparse.BooleanOptionalAction, default=None,
                   help="give the UNet a path for each image's mean brightness past its GroupNorms "
                   "(UNet(mean_path=True); default from TrainConfig; fixed for a run: not with --resume)")
    t.add_argument("--timesteps", type=int, help="diffusion steps T (default 1000; the checkpoint's when resuming)")
    t.add_argument("--checkpoint-every", type=int, help="epochs between epoch_XXXX.pth files (default 10)")
    t.add_argument("--save-every", type=int, help="steps between saves of last.pth, overwritten each time: "
                   "what a long run resumes from after a crash (default: never)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    t.add_argument("--seed", type=int, default=0, help="seeds the weights, noise and shuffling (default 0)")
    t.add_argument("--conditional", action="store_true", help="train a class-conditional model for classifier-free "
                   "guidance: phantoms get 6 classes (ct, ct+lesion, t1, ... t2+lesion), pneumoniamnist 2 (normal, "
                   "pneumonia), a folder of your scans one per sub-folder (with --labels folders); 10%% of the labels "
                   "are dropped to 'no class' while training")
    t.add_argument("--labels", choices=("folders",), help="with --conditional and --data a folder: the classes are its "
                   "sub-folders, DATA/CLASS_NAME/*.png as torchvision's ImageFolder (names sorted; each image in "
                   "its class's folder)")
    s = sub.add_parser("sample", help="generate images from a checkpoint",
                       description="Generate images with a trained generator (the EMA weights by default) "
                       "and write grid.png, images/sample_XXX.png and samples.npy (float32 in [0, 1]) into --out.")
    s.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pth written by train")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--sampler", choices=("ddim", "ddpm"), help="ddim: --steps steps (fast, the default); ddpm: "
                   "all T steps, the original sampler. A few-step model uses its own levels: leave it out")
    s.add_argument("--steps", type=int, help="DDIM steps (default 50; not for ddpm or a few-step model)")
    s.add_argument("--eta", type=float, help="DDIM noise: 1 fresh noise each step, like DDPM (default: measured "
                   "far better on young models), 0 deterministic (not for a few-step model)")
    s.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=True,
                   help="clamp each step's predicted clean image to [-1, 1] (default on; --no-clip-x0 "
                   "is the original unclipped update)")
    s.add_argument("--image-size", type=int, help="side of the samples (default: the training size)")
    s.add_argument("--batch-size", type=int, help="images per network call (default: all n at once)")
    s.add_argument("--which", default="ema", choices=("ema", "raw"), help="generator weights: ema (default) or raw")
    s.add_argument("--out", default="samples", help="output folder (default ./samples); the grid.png, "
                   "samples.npy and images/sample_*.png of an earlier sample run there are replaced")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    s.add_argument("--label", help="a conditional model: the class to generate, by name or index (see --list-labels)")
    s.add_argument("--guidance", type=float, help="a conditional model: classifier-free guidance scale w "
                   "(0 unconditional, 1 plain conditional, default 3)")
    s.add_argument("--list-labels", action="store_true", help="print the checkpoint's class names and exit")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    f = sub.add_parser("fewstep", help="fine-tune a few-step generator from a diffusion model",
                       description="Read a trained diffusion model (--init: a train checkpoint or a data/pretrained "
                       "export) as a generator of K big denoising jumps and fine-tune it DDGAN-style: a discriminator "
                       "on (next state, current state, level) plus an alpha_hat-weighted reconstruction term. Writes "
                       "final_model.pth (kind 'fewstep'), which sample uses with K network evaluations. One process.")
    f.add_argument("--init", required=True, metavar="CKPT", help="the teacher: a diffusion checkpoint")
    f.add_argument("--data", default="phantoms", help="'phantoms', 'pneumoniamnist' or a path, as for train "
                   "(the images are resized to the teacher's side)")
    f.add_argument("--levels", type=int, default=4, help="K, the number of jumps and network evaluations "
                   "(default 4: t = 999, 749, 499, 249)")
    f.add_argument("--max-steps", type=int, default=300, help="fine-tune steps in total (default 300)")
    f.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    f.add_argument("--adv-weight", type=float, default=1.0, help="weight of the adversarial term (default 1; "
                   "0 = the regression-only control, no discriminator)")
    f.add_argument("--n-images", type=int, help="number of phantoms (default 1024) or keep the first N real images")
    f.add_argument("--out", default="runs/fewstep", help="folder for final_model.pth (default runs/fewstep)")
    f.add_argument("--resume", metavar="CKPT", help="continue a fine-tune (same --init) to --max-steps")
    f.add_argument("--overwrite", action="store_true", help="replace an earlier run's checkpoints in --out")
    f.add_argument("--seed", type=int, default=0, help="seeds D's weights, the levels and the noise (default 0)")
    f.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    return p


def _positive(**values) -> None:
    """Refuse zero or negative counts with one line naming the option."""
    for name, v in values.items():
        if v is not None and v < 1:
            flag = "-n" if name == "n" else f"--{name.replace('_', '-')}"
            raise ValueError(f"{flag} {v}: must be at least 1")


def _data_source(value: str) -> str:
    """--data: a dataset name as given, or a local path (``~`` expanded; empty and URLs refused)."""
    from .data.loaders import SOURCES
    return value if value.lower() in SOURCES else str(local_path(value, "--data"))


def _class_names(data) -> tuple[str, ...]:
    """The classes a --conditional run learns from --data."""
    from .data.loaders import PNEUMONIAMNIST_CLASSES
    from .data.phantoms import PHANTOM_CLASSES
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
    from .data.loaders import SOURCES
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


def _label_index(label: str, names) -> int:
    """A class given by name or index -> its index; ValueError listing the known ones."""
    if label.isdigit() and int(label) < len(names):
        return int(label)
    if label in names:
        return list(names).index(label)
    raise ValueError(f"--label {label}: this model knows {', '.join(f'{i} {n}' for i, n in enumerate(names))}")


def _train(a) -> int:
    from .engine.models import read_checkpoint
    from .engine.config import TrainConfig
    from .data.loaders import make_dataloader
    from .core.device import pick_device
    from .core.device import env_world
    from .engine.rundir import check_run_folder
    from .engine.train import train
    _positive(epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size, timesteps=a.timesteps,
              n_images=a.n_images)
    a.data = _data_source(a.data)
    a.resume = None if a.resume is None else str(local_path(a.resume, "--resume"))
    out = str(local_path(a.out, "--out")) if a.out is not None else (
        str(Path(a.resume).parent) if a.resume else "checkpoints")
    dev = pick_device(a.device)
    lr = {} if a.lr is None else {"lr_G": a.lr, "lr_D": a.lr}
    changes = {k: v for k, v in dict(image_size=a.image_size, base=a.base, adv_weight=a.adv_weight,
                                      mean_path=a.mean_path, checkpoint_every=a.checkpoint_every,
                                      save_every=a.save_every, **lr).items()
               if v is not None}
    folder_labels = _folder_labels(a)
    if a.resume:     # the run's own configuration, T and channels; command-line values override
        saved = read_checkpoint(a.resume)
        cfg = TrainConfig.from_dict(saved["config"])
        if a.mean_path is not None and a.mean_path != cfg.mean_path:
            raise ValueError(f"--{'' if a.mean_path else 'no-'}mean-path: {a.resume} was trained "
                             f"{'without' if a.mean_path else 'with'} the mean path, which is part of its network; "
                             "leave the flag out to resume it, or start a new run in another --out")
        cfg = cfg.replace(**changes)
        channels = saved["model"]["in_ch"]
        folder_labels = folder_labels or bool(cfg.class_names) and _is_folder(a.data)
    else:
        classes = _class_names(a.data) if a.conditional and not folder_labels else ()
        cfg = TrainConfig.for_device(dev).replace(seed=a.seed, class_names=classes, **changes)
        channels = a.channels
    if env_world()[0] == 0:          # fail fast, before any data is loaded (train() checks again, locked)
        check_writable(out, "--out")
        check_run_folder(out, a.resume, a.overwrite)
    labelled = {"return_labels": True, **({"labels": "folders"} if folder_labels else {})}
    loader = make_dataloader(a.data, cfg.image_size, a.batch_size, channels=channels, n=a.n_images,
                             seed=cfg.seed, device=dev, **(labelled if cfg.class_names or folder_labels else {}))
    if folder_labels:                # the classes are the folder's: new in the config, or the resumed run's
        cfg = _folder_classes(cfg, loader.dataset.class_names, a)
    if a.epochs is None:             # --max-steps alone means "this many steps", not "at most 10 epochs"
        a.epochs = -(-a.max_steps // len(loader)) if a.max_steps else 10
    result = train(loader, image_channels=channels, timesteps=a.timesteps, device=dev, epochs=a.epochs,
                   save_dir=out, config=cfg, resume=a.resume, max_steps=a.max_steps, overwrite=a.overwrite)
    status = 143 if result.stopped_by == "SIGTERM" else 130 if result.stopped_by else 0
    if env_world()[0] != 0:          # under torchrun only rank 0 prints
        return status
    if result.stopped_by:
        print(f"stopped by {result.stopped_by}; continue with: python -m diffgan_lib train --resume "
              f"{result.checkpoint} --data {a.data} --batch-size {a.batch_size} --epochs {a.epochs}"
              + (f" --max-steps {a.max_steps}" if a.max_steps else "") + f" --out {out}", file=sys.stderr)
    else:
        print(f"checkpoint: {result.checkpoint}  history: {Path(out) / 'history.json'}")
    return status


def _sample(a) -> int:
    import numpy as np
    from .engine.models import load_checkpoint
    from .sampling import clear_sample_outputs
    from .sampling import FAST_SAMPLER, sample, save_image_files, save_image_grid, to_unit
    from .data.phantoms import check_image_size
    _positive(n=a.n, steps=a.steps, batch_size=a.batch_size)
    if a.image_size is not None:
        check_image_size(a.image_size, name="--image-size")
    if a.eta is not None and not 0 <= a.eta <= 1:          # also refuses nan
        raise ValueError(f"--eta {a.eta}: must lie in [0, 1] (0 deterministic DDIM, 1 DDPM-like noise)")
    if a.sampler == "ddpm" and a.eta is not None:
        raise ValueError(f"--eta {a.eta}: eta is DDIM's; --sampler ddpm always adds its noise (leave --eta out)")
    out = None if a.list_labels else check_writable(a.out, "--out")          # before minutes of sampling
    G, _, scheduler = loaded = load_checkpoint(local_path(a.checkpoint, "--checkpoint"), device=a.device,
                                               which=a.which)
    names = loaded.config.class_names if loaded.config is not None else ()
    if a.list_labels:
        print("\n".join(f"{i} {n}" for i, n in enumerate(names)) if names else "unconditional model: no labels")
        return 0
    if (a.label is not None or a.guidance is not None) and not names:
        raise ValueError("--label / --guidance need a conditional model (train --conditional); this one is unconditional")
    guided = {} if a.label is None else {"labels": _label_index(a.label, names), "guidance_scale": a.guidance}
    size = a.image_size if a.image_size is not None else (loaded.image_size or 32)
    if loaded.kind == "fewstep":   # its own levels; sample() names any sampler option given
        x = sample(G, scheduler, n=a.n, image_size=size, sampler=a.sampler, steps=a.steps, eta=a.eta or 0.0,
                   seed=a.seed, batch_size=a.batch_size)
    else:
        sampler = a.sampler or FAST_SAMPLER["sampler"]
        if sampler == "ddpm" and a.steps is not None:
            raise ValueError(f"--steps {a.steps}: DDPM walks all T={scheduler.T} steps; use --sampler ddim for fewer")
        eta = FAST_SAMPLER["eta"] if a.eta is None else a.eta
        x = sample(G, scheduler, n=a.n, image_size=size, sampler=sampler,
                   steps=(a.steps or FAST_SAMPLER["steps"]) if sampler == "ddim" else None, eta=eta, seed=a.seed,
                   batch_size=a.batch_size, clip_x0=a.clip_x0, **guided)
    images = to_unit(x).float().cpu()
    replaced = clear_sample_outputs(out)          # never a mix of this run's images and an earlier one's
    if replaced:
        print(f"replaced the earlier samples in {out} ({replaced} images)")
    save_image_grid(images, out / "grid.png")
    save_image_files(images, out / "images")
    np.save(out / "samples.npy", images.numpy())
    print(f"wrote {a.n} samples of {size} px to {out}: grid.png, images/, samples.npy (float32 in [0, 1])")
    return 0


def _fewstep(a) -> int:
    from .data.loaders import make_dataloader
    from .engine.fewstep import FewStepConfig, fewstep_train, teacher_record
    _positive(levels=a.levels, max_steps=a.max_steps, batch_size=a.batch_size, n_images=a.n_images)
    cfg = FewStepConfig(levels=a.levels, adv_weight=a.adv_weight, seed=a.seed)
    teacher = teacher_record(local_path(a.init, "--init"))        # read once: its side here, its hash in the run
    side = (teacher["config"] or {}).get("image_size") or 32
    loader = make_dataloader(a.data, side, a.batch_size, n=a.n_images, seed=a.seed, device=a.device)
    try:
        path = fewstep_train(a.init, loader, cfg, a.max_steps, a.out, resume=a.resume, device=a.device,
                             overwrite=a.overwrite, teacher=teacher)
    except KeyboardInterrupt as stop:
        print(f"{stop}", file=sys.stderr)
        return 130
    print(f"few-step model: {path} ({a.levels} levels); sample it with: python -m diffgan_lib sample "
          f"--checkpoint {path} -n 64 --out {Path(path).parent / 'samples'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "sample": _sample, "fewstep": _fewstep}[args.command](args)
    except (ValueError, OSError, FloatingPointError) as err:     # OSError: FileNotFoundError, PermissionError...
        print(f"{parser.prog} {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # during loading or sampling (train() itself stops between steps and saves)
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130
