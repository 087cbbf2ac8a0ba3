"""Images out: [-1, 1] samples to [0, 1], a grid of them, PNG files, and what a sample folder holds.

Shapes: images (n, C, S, S) with C 1 (gray) or 3 (RGB), values in [0, 1] unless said otherwise.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_unit", "image_grid", "save_image_grid", "save_image_files", "write_sample_set"]

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


MANIFEST = "samples.json"      # what a sample folder's last set holds: written by write_sample_set


def _previous_set(folder: Path) -> list[Path]:
    """The files of the set ``write_sample_set`` wrote into ``folder`` before, as its manifest (or, for a
    folder written before manifests, samples.npy and its image count) proves; [] when nothing proves it."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            names = json.loads(manifest.read_text())["files"]
            return [folder / n for n in names if isinstance(n, str) and ".." not in Path(n).parts] + [manifest]
        except (OSError, ValueError, KeyError, TypeError):
            return []
    npy = folder / "samples.npy"
    if npy.is_file():
        try:
            n = len(np.load(npy, mmap_mode="r"))
        except (OSError, ValueError):
            return []
        return [folder / "grid.png", npy] + [folder / "images" / f"sample_{i:03d}.png" for i in range(n)]
    return []


def write_sample_set(images: torch.Tensor, folder) -> tuple[Path, int]:
    """Write images (n, C, S, S) in [0, 1] into ``folder`` as grid.png, images/sample_NNN.png and samples.npy
    (float32), with a manifest of the files. The set is written into a temporary folder first and moved in
    only when complete, so a full disk leaves an earlier set intact; of an earlier set only the files it
    can prove ``sample`` wrote are replaced. ValueError, before anything is written, when the folder holds
    files with these names that no manifest or samples.npy accounts for (someone else's). Returns
    (folder, number of earlier images replaced)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = _previous_set(folder)
    ours = {p.resolve() for p in old}
    n = len(images)
    names = ["grid.png", "samples.npy", MANIFEST] + [f"images/sample_{i:03d}.png" for i in range(n)]
    foreign = [nm for nm in names if (folder / nm).exists() and (folder / nm).resolve() not in ours]
    if foreign:
        raise ValueError(f"--out {folder} holds files that sample did not write ({', '.join(foreign[:3])}"
                         f"{' ...' if len(foreign) > 3 else ''}); choose another --out, or move them away")
    tmp = folder / f".samples.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_image_grid(images, tmp / "grid.png")
        save_image_files(images, tmp / "images")
        np.save(tmp / "samples.npy", images.float().cpu().numpy())
        (tmp / MANIFEST).write_text(json.dumps({"n": n, "files": names[:2] + names[3:]}))
        for p in old:                          # the earlier set goes only once the new one is complete
            p.unlink(missing_ok=True)
        (folder / "images").mkdir(exist_ok=True)
        for nm in names:
            os.replace(tmp / nm, folder / nm)
    except OSError as err:
        if err.errno == 28:
            raise OSError(28, f"no space left on the device while writing samples into {folder}; the earlier "
                              "samples there are intact: free some space and run again") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, sum(1 for p in old if p.parent.name == "images")
