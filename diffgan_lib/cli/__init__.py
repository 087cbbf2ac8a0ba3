"""Command line: ``python -m diffgan_lib train ...`` and ``python -m diffgan_lib sample ...``.

train  -- trains on phantoms (the course's generated head slices) or on your scans (a folder of
          PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz), writing checkpoints to --out;
          under torchrun, one process per GPU (or CPU core) with DDP;
sample -- loads a checkpoint and writes grid.png, images/sample_XXX.png and samples.npy, the
          images as float32 (n, C, S, S) in [0, 1];
fewstep -- fine-tunes a few-step generator (DDGAN-style, adversarial) from a trained diffusion model,
          through the same training loop and folder rules as train.
Exit status: 0 done; 2 bad arguments or input, a folder that cannot be used, or a diverging run
(one line on stderr, no traceback); 130 after Ctrl-C and 143 after SIGTERM, once interrupted.pth is
saved. Paths: ``~`` is expanded; an empty path and a URL are refused. One run per --out folder
(--resume continues it, --overwrite replaces it); sample replaces its own earlier outputs in --out.
"""
from __future__ import annotations

import sys

from .commands import fewstep_command, sample_command, train_command
from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad arguments or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"train": train_command, "sample": sample_command, "fewstep": fewstep_command}[args.command](args)
    except (ValueError, OSError, FloatingPointError) as err:     # OSError: FileNotFoundError, PermissionError...
        print(f"{parser.prog} {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # during loading or sampling (train() itself stops between steps and saves)
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130
