"""Images out: [-1, 1] samples to [0, 1], a grid of them, PNG files, and what a sample folder holds.

Shapes: images (n, C, S, S) with C 1 (gray) or 3 (RGB), values in [0, 1] unless said otherwise.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_unit", "image_grid", "save_image_grid", "save_image_files", "clear_sample_outputs"]

SAMPLE_IMAGE = re.compile(r"sample_\d{3,}\.png")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Map samples from [-1, 1] to [0, 1] (clamped), for display and 8-bit files."""
    return ((x + 1) / 2).clamp(0, 1)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (n, C, S, S) images in [0, 1] into one uint8 array (H, W) or (H, W, 3), nrow per row."""
    n, c, s, _ = images.shape
    if c not in (1, 3):
        raise ValueError(f"can only draw 1-channel (gray) or 3-channel (RGB) images, got {c} channels")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (s + pad) + pad, nrow * (s + pad) + pad, c), dtype=np.uint8)
    arr = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, img in enumerate(arr):
        r, col = divmod(i, nrow)
        grid[pad + r * (s + pad): pad + r * (s + pad) + s, pad + col * (s + pad): pad + col * (s + pad) + s] = img
    return grid[..., 0] if c == 1 else grid


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None) -> Path:
    """Write images (n, C, S, S) in [0, 1] as one PNG grid (8-bit gray or RGB); returns the path."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, nrow)).save(path)
    return path


def save_image_files(images: torch.Tensor, folder, prefix: str = "sample") -> list[Path]:
    """Write each image (n, C, S, S) in [0, 1] as ``folder/{prefix}_{i:03d}.png`` (8-bit gray or RGB)."""
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        arr = image_grid(img[None], nrow=1, pad=0)
        paths.append(folder / f"{prefix}_{i:03d}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def clear_sample_outputs(folder) -> int:
    """Delete what ``sample`` wrote into ``folder`` before (grid.png, samples.npy, images/sample_NNN.png),
    nothing else; returns how many images went."""
    folder = Path(folder)
    images = [p for p in (folder / "images").glob("sample_*.png") if SAMPLE_IMAGE.fullmatch(p.name)]
    for p in [folder / "grid.png", folder / "samples.npy", *images]:
        p.unlink(missing_ok=True)
    return len(images)
