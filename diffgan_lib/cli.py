"""Command line: ``python -m diffgan_lib train ...`` and ``python -m diffgan_lib sample ...``.

train  -- trains on phantoms (the course's generated head slices) or on your scans (a folder of
          PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz), writing checkpoints to --out;
sample -- loads a checkpoint and writes grid.png, images/sample_XXX.png and samples.npy, the
          images as float32 (n, C, S, S) in [0, 1].
Bad arguments end with one line on stderr and exit status 2 (no traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


EXAMPLES = """examples:
  python -m diffgan_lib train --data phantoms --epochs 5 --out runs/quick
  python -m diffgan_lib train --data scans/ --image-size 64 --epochs 50 --out runs/scans
  python -m diffgan_lib train --resume runs/quick/final_model.pth --epochs 10
  python -m diffgan_lib sample --checkpoint runs/quick/final_model.pth -n 16 --out runs/quick/samples"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m diffgan_lib", description="Train and sample the diffgan Diffusion + GAN "
                "model for synthetic medical images. Images are scaled to [-1, 1] for training.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,sample}")
    t = sub.add_parser("train", help="train a model and write checkpoints",
                       description="Train G (UNet) and D (PatchGAN) and write epoch_XXXX.pth, "
                       "final_model.pth and history.json into --out. Ctrl-C saves interrupted.pth.")
    t.add_argument("--data", default="phantoms", help="'phantoms' (generated head slices, the default) or "
                   "a path: a folder of PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz")
    t.add_argument("--image-size", type=int, help="side S of the training images, a multiple of 8, >= 32 "
                   "(default: 32 on CPU, 128 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--base", type=int, help="UNet / discriminator width, a multiple of 8 (default: 32 on "
                   "CPU, 64 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grayscale, 3 RGB (default 1)")
    t.add_argument("--epochs", type=int, default=10, help="total epochs, counted from the start of the run "
                   "also when resuming (default 10)")
    t.add_argument("--max-steps", type=int, help="stop after this many optimisation steps in total")
    t.add_argument("--batch-size", type=int, default=16, help="images per step (default 16)")
    t.add_argument("--n-images", type=int, help="number of phantoms (default 1024), or keep only the first "
                   "N of your images")
    t.add_argument("--out", help="folder for checkpoints (default ./checkpoints, or the --resume file's folder)")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (its configuration is reused)")
    t.add_argument("--adv-weight", type=float, help="weight w of the adversarial term in diff + w * adv "
                   "(0 = pure diffusion, no discriminator; default from TrainConfig)")
    t.add_argument("--timesteps", type=int, help="diffusion steps T (default 1000; the checkpoint's when resuming)")
    t.add_argument("--checkpoint-every", type=int, help="epochs between epoch_XXXX.pth files (default 10)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    t.add_argument("--seed", type=int, default=0, help="seeds the weights, noise and shuffling (default 0)")
    s = sub.add_parser("sample", help="generate images from a checkpoint",
                       description="Generate images with a trained generator (the EMA weights by default) "
                       "and write grid.png, images/sample_XXX.png and samples.npy (float32 in [0, 1]) into --out.")
    s.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pth written by train")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"),
                   help="ddim: --steps steps (fast, default); ddpm: all T steps, the original sampler")
    s.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50; ignored by ddpm)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic (default), 1 DDPM-like")
    s.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=True,
                   help="clamp each step's predicted clean image to [-1, 1] (default on; --no-clip-x0 "
                   "is the original unclipped update)")
    s.add_argument("--image-size", type=int, help="side of the samples (default: the training size)")
    s.add_argument("--batch-size", type=int, help="images per network call (default: all n at once)")
    s.add_argument("--which", default="ema", choices=("ema", "raw"), help="generator weights: ema (default) or raw")
    s.add_argument("--out", default="samples", help="output folder (default ./samples)")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    return p


def _train(a) -> None:
    from .checkpoints import load_training_state
    from .config import TrainConfig
    from .data import make_dataloader
    from .device import pick_device
    from .training import train
    dev = pick_device(a.device)
    changes = {k: v for k, v in dict(image_size=a.image_size, base=a.base, adv_weight=a.adv_weight,
                                      checkpoint_every=a.checkpoint_every).items() if v is not None}
    timesteps = a.timesteps
    if a.resume:
        state = load_training_state(a.resume)
        cfg = TrainConfig.from_dict(state["config"]).replace(**changes)
        timesteps = timesteps or state["scheduler"]["timesteps"]
    else:
        cfg = TrainConfig.for_device(dev).replace(seed=a.seed, **changes)
    loader = make_dataloader(a.data, cfg.image_size, a.batch_size, channels=a.channels, n=a.n_images,
                             seed=cfg.seed, device=dev)
    out = a.out or (str(Path(a.resume).parent) if a.resume else "checkpoints")
    result = train(loader, image_channels=a.channels, timesteps=timesteps or 1000, device=dev,
                   epochs=a.epochs, save_dir=out, config=cfg, resume=a.resume, max_steps=a.max_steps)
    print(f"checkpoint: {result.checkpoint}  history: {Path(out) / 'history.json'}")


def _sample(a) -> None:
    import numpy as np
    from .checkpoints import load_checkpoint
    from .sampling import sample, save_image_files, save_image_grid, to_unit
    G, _, scheduler = loaded = load_checkpoint(a.checkpoint, device=a.device, which=a.which)
    size = a.image_size or loaded.image_size or 32
    x = sample(G, scheduler, n=a.n, image_size=size, sampler=a.sampler,
               steps=a.steps if a.sampler == "ddim" else None, eta=a.eta, seed=a.seed, batch_size=a.batch_size,
               clip_x0=a.clip_x0)
    images = to_unit(x).float().cpu()
    out = Path(a.out)
    save_image_grid(images, out / "grid.png")
    save_image_files(images, out / "images")
    np.save(out / "samples.npy", images.numpy())
    print(f"wrote {a.n} samples of {size} px to {out}: grid.png, images/, samples.npy (float32 in [0, 1])")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        (_train if args.command == "train" else _sample)(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog} {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # during loading or sampling (train() itself saves and returns)
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
