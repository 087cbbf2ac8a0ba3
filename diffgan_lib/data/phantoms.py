"""Procedural axial head-slice phantoms: the course's embedded dataset, generated on the fly.

Each phantom is built on a coordinate grid from a handful of random numbers drawn from a
``torch.Generator``: an egg-shaped head (scalp, skull with marrow, a thin CSF rim), a brain with a
grey-matter ribbon, white matter with gyral fingers, sulci (ridges of smooth noise), the
interhemispheric fissure, ")("-shaped lateral ventricles, deep grey matter and, optionally, a lesion
(a core with a halo of oedema). Smooth noise comes from upsampling a small random grid (bicubic).

Contrasts (``CONTRASTS``): "ct" (brain window: bright skull, grey brain, dark CSF, Gaussian noise),
"t1" (dark CSF, white matter brighter than grey, bright scalp fat) and "t2" (bright CSF, white
matter darker than grey); the MR ones get a smooth bias field and Rician noise.

Shapes and ranges: ``make_phantom`` returns (S, S) float32 in [-1, 1]; ``PhantomDataset[i]`` is
(C, S, S) float32 in [-1, 1], the same tensor for the same (seed, i). S must be divisible by 8.
Regenerate ``data/samples`` and ``data/phantoms_grid.png`` with ``python -m diffgan_lib.phantoms``.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["CONTRASTS", "PHANTOM_CLASSES", "phantom_class", "PhantomDataset", "make_phantom", "check_image_size",
           "save_samples", "save_grid"]

CONTRASTS = ("ct", "t1", "t2")
MAX_SIDE = 1024          # the largest image side anything in the library accepts, checked before allocating
PHANTOM_CLASSES = ("ct", "ct+lesion", "t1", "t1+lesion", "t2", "t2+lesion")   # index = 2 * contrast + lesion


def phantom_class(labels: dict):
    """The class index in PHANTOM_CLASSES of phantom labels {"contrast": k, "lesion": 0/1} (ints or tensors)."""
    return 2 * labels["contrast"] + labels["lesion"]

# Tissue intensities in [0, 1] before noise, per contrast (CT: a brain window, W 80 / L 40 HU).
_TISSUE = {
    #       scalp  bone  marrow  csf   gm    wm    deep   core  oedema
    "ct": (0.52, 1.00, 0.88, 0.10, 0.56, 0.44, 0.52, 0.24, 0.34),
    "t1": (0.85, 0.05, 0.60, 0.08, 0.42, 0.72, 0.50, 0.20, 0.32),
    "t2": (0.62, 0.04, 0.40, 1.00, 0.60, 0.36, 0.50, 0.88, 0.74),
}
_NOISE_SIGMA = {"ct": 0.03, "t1": 0.025, "t2": 0.025}


def check_image_size(image_size: int, minimum: int = 8, name: str = "image_size") -> int:
    """Return ``image_size`` if it is an int >= ``minimum`` divisible by 8, else raise ValueError.

    The one image-side rule of the library: the UNet halves the side three times (so a multiple of
    8), and training also needs ``minimum=32`` (the discriminator's four 4x4 convolutions).
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool):
        raise ValueError(f"{name} must be an int (e.g. 64), got {image_size!r}")
    if image_size < minimum:
        why = " (the discriminator needs 32 px)" if minimum >= 32 else ""
        raise ValueError(f"{name}={image_size} is too small{why}: use {minimum} or more, a multiple of 8 "
                         "(e.g. 32, 64 or 128)")
    if image_size > MAX_SIDE:
        raise ValueError(f"{name}={image_size} is above {MAX_SIDE}, the largest side this course trains or samples "
                         "(a 1024 px image already needs gigabytes per batch); use 32 to 256")
    if image_size % 8:
        lo, hi = image_size // 8 * 8, image_size // 8 * 8 + 8
        raise ValueError(f"{name}={image_size} is not a multiple of 8 (the UNet halves it three times); "
                         f"use {lo if lo >= minimum else hi} or {hi}")
    return image_size


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates X (columns) and Y (rows), each (S, S) float32 in (-1, 1); Y grows downwards."""
    lin = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    return np.broadcast_to(lin[None, :], (size, size)), np.broadcast_to(lin[:, None], (size, size))


@functools.lru_cache(maxsize=32)
def _upsampler(grid: int, size: int) -> np.ndarray:
    """The (S, grid) matrix of 1-D bicubic upsampling; bicubic is separable, so z -> M z M^T."""
    eye = torch.eye(grid)[None, None]
    m = F.interpolate(eye, size=(size, grid), mode="bicubic", align_corners=False)[0, 0]
    return m.numpy().astype(np.float32)


def _smooth(z: np.ndarray, size: int) -> np.ndarray:
    """Upsample random grids z (k, g, g) to (k, S, S) smooth fields of roughly unit variance."""
    m = _upsampler(z.shape[-1], size)
    return (m @ z @ m.T) * np.float32(1.6)


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (np.clip has a large per-call overhead on small arrays)."""
    return np.minimum(np.maximum(x, 0, out=x), 1, out=x)


def _step(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-mask: 0 for d <= -width/2, 1 for d >= width/2, linear in between (antialiased edge)."""
    x = d * (1.0 / width)
    x += 0.5
    return _clip01(x)


def make_phantom(image_size: int, contrast: str = "t1", lesion: bool = False,
                 generator: torch.Generator | None = None, return_lesion: bool = False):
    """One axial head slice, (S, S) float32 in [-1, 1], deterministic given the generator's state.

    contrast: one of ``CONTRASTS``; lesion: draw a lesion in the brain; generator: a seeded
    ``torch.Generator`` (None uses a fresh, unseeded one). All randomness comes from the generator;
    the pixel maths runs in numpy (float32), which has less per-call overhead on small images.
    return_lesion: also return the lesion's mask, (S, S) float32 in [0, 1] (core and oedema halo inside
    the brain; CSF spaces it crosses stay CSF in the image; all 0 without a lesion): ``(image, mask)``,
    the same image as without it.
    """
    S = check_image_size(image_size)
    if contrast not in _TISSUE:
        raise ValueError(f"contrast {contrast!r} is unknown; use one of {CONTRASTS}")
    g = generator if generator is not None else torch.Generator().manual_seed(torch.seed())
    scalp, bone, marrow, csf, gm, wm, deep, core, oedema = _TISSUE[contrast]
    p = torch.rand(20, generator=g).tolist()                  # every scalar shape parameter, in [0, 1)
    G = min(S, 24)
    z = torch.randn(5 * 25 + 2 * 121 + G * G, generator=g).numpy()
    low = _smooth(z[:125].reshape(5, 5, 5), S)               # outline, bias, lesion, deep GM, sulci bends
    mid = _smooth(z[125:367].reshape(2, 11, 11), S)          # sulcal depth, white-matter edge
    tex = _smooth(z[367:].reshape(1, G, G), S)[0]            # fine tissue texture
    X, Y = _grid(S)
    w = 3.6 / S                                               # edge width: about 1.3 pixels

    # 1. Head frame: a little rotation and shift; v > 0 is posterior (radiological view, nose up).
    ang = (p[0] - 0.5) * 0.35
    ca, sa = math.cos(ang), math.sin(ang)
    xs, ys = X - (p[1] - 0.5) * 0.08, Y - (p[2] - 0.5) * 0.06
    u, v = ca * xs + sa * ys, ca * ys - sa * xs
    a, b = 0.72 + 0.08 * p[3], 0.88 + 0.06 * p[4]             # head semi-axes (width < length)
    rho = np.sqrt((u / (a * (1 + 0.07 * v))) ** 2 + (v * (1 / b)) ** 2) * (1 + 0.015 * low[0])

    # 2. Layers by the normalised radius rho: scalp | skull (with marrow) | CSF rim | brain.
    t_scalp, t_skull, t_rim = 0.05 + 0.02 * p[5], 0.055 + 0.03 * p[6], 0.02 + 0.015 * p[7]
    r_skull, r_rim = 1 - t_scalp, 1 - t_scalp - t_skull
    r_brain = r_rim - t_rim
    head, in_skull = _step(1 - rho, w), _step(r_skull - rho, w)
    in_rim, in_brain = _step(r_rim - rho, w), _step(r_brain - rho, w)
    mid_skull = _step(0.22 * t_skull - np.abs(rho - (r_rim + 0.5 * t_skull)), w)
    skull_val = bone + ((marrow - bone) * (0.4 + 0.6 * p[8])) * mid_skull

    # 3. Brain coordinates (the brain's edge at about 1) and depth below the cortical surface.
    ub, vb = u * (1 / (a * r_brain)), v * (1 / (b * r_brain))
    ax, au, avb = np.abs(ub), np.abs(u), np.abs(vb)
    depth = r_brain - rho
    k = 16 + int(8 * p[19])                                   # number of sulci around the slice
    ridge = np.abs(np.sin(0.5 * k * np.arctan2(ub, -vb) + 2.2 * low[4]))  # 0 on wiggly radial lines
    taper = _clip01(1 - depth / np.maximum(0.10 + 0.08 * mid[0], 0.02))  # sulci: wide at the surface
    sulci = _step(0.3 * taper - ridge, 0.2) * np.minimum(4 * taper, 1) * in_brain
    fissure_zone = _step(avb - 0.42, 0.2)                     # interhemispheric fissure, front and back
    fissure = _step(0.012 - au, w) * fissure_zone
    fold = np.maximum(_clip01(1 - ridge * (1 / 0.6)), _clip01(1 - au * (1 / 0.07)) * fissure_zone)
    wm_edge = (0.05 + 0.025 * p[9]) + 0.09 * fold + 0.01 * mid[1]
    wm_mask = _step(depth - wm_edge, 1.5 * w)

    # 4. Lateral ventricles: frontal horns and bodies/atria as tilted ellipses on each side of the
    #    septum, diverging forwards and backwards ")("; their size varies (age, atrophy).
    vs, v0 = 0.75 + 0.6 * p[10], 0.06 * (p[11] - 0.5)
    vent = None
    for cx, cy, half_w, half_l, tilt in ((0.15, -0.25, 0.10, 0.22, -0.35), (0.17, 0.15, 0.08, 0.30, 0.4)):
        dx, dy = ax - (0.03 + (cx - 0.03) * vs), vb - (v0 + cy)
        along = (dx * math.sin(tilt) + dy * math.cos(tilt)) * (1 / (half_l * (0.85 + 0.15 * vs)))
        across = (dx * math.cos(tilt) - dy * math.sin(tilt)) * (1 / (half_w * vs))
        part = _step(1 - np.sqrt(along ** 2 + across ** 2), w / (half_w * vs * r_brain * a))
        vent = part if vent is None else np.maximum(vent, part)
    deep_mask = p[13] * _step(1 + 0.15 * low[3] - np.sqrt(((ax - 0.26 * vs ** 0.3) * 10) ** 2
                                                          + ((vb - 0.02) * (1 / 0.22)) ** 2), 0.32)

    # 5. Brain intensity: GM ribbon -> WM, deep GM, texture.
    brain = gm + (wm - gm) * wm_mask
    brain += (deep - brain) * deep_mask
    brain *= 1 + 0.035 * tex + 0.02 * mid[1]
    # 6. Lesion: an irregular core with an oedema halo in the parenchyma (CSF spaces stay CSF).
    lesion_mask = None
    if lesion:
        r, th = 0.25 + 0.4 * p[14], 2 * math.pi * p[15]
        size = 0.10 + 0.12 * p[16]
        q = np.sqrt((ub - r * math.cos(th)) ** 2 + (vb - r * math.sin(th)) ** 2) * (1 / size)
        q *= 1 + 0.25 * low[2]
        edge = 1.5 * w / (size * r_brain * a)                 # the edge width in units of q
        lesion_mask = _step(1.7 - q, 1.7 * edge)
        brain += (oedema - brain) * (lesion_mask * (0.5 + 0.5 * p[17]))
        brain += (core - brain) * _step(1 - q, edge)

    # 7. CSF last: sulci, the fissure and the ventricles.
    csf_in = np.maximum(np.maximum(sulci, fissure), vent)
    brain += (csf - brain) * csf_in

    # 8. Composite the layers from the outside in (each soft mask is nested in the previous one).
    img = (scalp * (head - in_skull) + skull_val * (in_skull - in_rim) + csf * (in_rim - in_brain)
           + brain * in_brain)

    # 9. Acquisition: MR gets a smooth bias field and Rician noise, CT additive Gaussian noise.
    sigma = _NOISE_SIGMA[contrast] * (0.7 + 0.6 * p[18])
    n = torch.randn(2, S, S, generator=g).numpy()
    if contrast == "ct":
        img += sigma * n[0]
    else:
        img *= 1 + 0.08 * low[1]
        img = np.sqrt((img + sigma * n[0]) ** 2 + (sigma * n[1]) ** 2)
    img = _clip01(img) * 2
    img -= 1
    if not return_lesion:
        return torch.from_numpy(img)
    mask = np.zeros_like(img) if lesion_mask is None else lesion_mask * in_brain
    return torch.from_numpy(img), torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


def _mix_seed(seed: int, index: int) -> int:
    """A 63-bit seed from (seed, index), so neighbouring indices and seeds give unrelated streams."""
    h = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % 2**64
    h ^= h >> 31
    return (h * 0xD6E8FEB86659FD93 % 2**64) >> 1


class PhantomDataset(Dataset):
    """``n`` head-slice phantoms made on the fly; ``ds[i]`` is (channels, S, S) float32 in [-1, 1].

    Item i depends only on (seed, i): its contrast is drawn uniformly from ``contrasts`` and it has
    a lesion with probability ``lesion_prob``. With ``return_labels=True`` an item is
    ``(image, {"contrast": k, "lesion": 0 or 1})`` where k indexes ``CONTRASTS`` ("ct", "t1", "t2").
    """

    def __init__(self, n: int = 1024, image_size: int = 64, channels: int = 1, seed: int = 0,
                 contrasts: tuple[str, ...] = CONTRASTS, lesion_prob: float = 0.5,
                 return_labels: bool = False):
        self.image_size = check_image_size(image_size)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (the number of phantoms), got {n!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        contrasts = (contrasts,) if isinstance(contrasts, str) else tuple(contrasts)
        bad = [c for c in contrasts if c not in CONTRASTS]
        if not contrasts or bad:
            raise ValueError(f"contrasts {contrasts!r} must be a non-empty subset of {CONTRASTS}")
        if not 0.0 <= lesion_prob <= 1.0:
            raise ValueError(f"lesion_prob must be in [0, 1], got {lesion_prob!r}")
        self.n, self.channels, self.seed = n, channels, int(seed)
        self.contrasts, self.lesion_prob, self.return_labels = contrasts, float(lesion_prob), return_labels

    def __len__(self) -> int:
        return self.n

    def labels(self, index: int) -> dict:
        """The labels of item ``index`` without rendering it: {"contrast": k, "lesion": 0/1}."""
        return self._draw(index)[1]

    def _draw(self, index: int) -> tuple[torch.Generator, dict]:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} is out of range for a PhantomDataset of {self.n} images")
        g = torch.Generator().manual_seed(_mix_seed(self.seed, index % self.n))
        r_contrast, r_lesion = torch.rand(2, generator=g).tolist()
        k = min(int(r_contrast * len(self.contrasts)), len(self.contrasts) - 1)
        lesion = int(r_lesion < self.lesion_prob)
        return g, {"contrast": CONTRASTS.index(self.contrasts[k]), "lesion": lesion}

    def lesion_mask(self, index: int) -> torch.Tensor:
        """Item ``index``'s lesion as an (S, S) bool mask (all False without a lesion), e.g. to outline it."""
        g, lab = self._draw(int(index))
        _, mask = make_phantom(self.image_size, CONTRASTS[lab["contrast"]], bool(lab["lesion"]), g,
                               return_lesion=True)
        return mask > 0.5

    def __getitem__(self, index: int):
        g, lab = self._draw(int(index))
        img = make_phantom(self.image_size, CONTRASTS[lab["contrast"]], bool(lab["lesion"]), g)
        img = img[None] if self.channels == 1 else img[None].repeat(self.channels, 1, 1)
        return (img, lab) if self.return_labels else img

    def __repr__(self) -> str:
        return (f"PhantomDataset(n={self.n}, image_size={self.image_size}, channels={self.channels}, "
                f"seed={self.seed}, contrasts={self.contrasts}, lesion_prob={self.lesion_prob})")


def save_samples(folder: str | Path, n: int = 36, image_size: int = 64, seed: int = 0) -> list[Path]:
    """Write ``n`` phantoms as 8-bit grayscale PNGs ``phantom_000.png`` ... into ``folder``."""
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ds, paths = PhantomDataset(n=n, image_size=image_size, seed=seed), []
    for i in range(n):
        arr = ((ds[i][0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        paths.append(folder / f"phantom_{i:03d}.png")
        Image.fromarray(arr, mode="L").save(paths[-1], optimize=True)
    return paths


def save_grid(path: str | Path, image_size: int = 64, seed: int = 0, cols: int = 6) -> Path:
    """Save a 4 x ``cols`` figure: rows CT, T1, T2 (right half with a lesion), then ``ds[0:cols]``."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    ds = PhantomDataset(n=cols, image_size=image_size, seed=seed, return_labels=True)
    fig, axes = plt.subplots(4, cols, figsize=(cols * 1.1, 4 * 1.2), dpi=80)
    for r in range(4):
        for j in range(cols):
            if r < 3:
                contrast, lesion = CONTRASTS[r], j >= cols // 2
                g = torch.Generator().manual_seed(_mix_seed(seed + 1, 100 * r + j))
                img, title = make_phantom(image_size, contrast, lesion, g), contrast
            else:
                img, lab = ds[j]
                img, contrast, lesion = img[0], CONTRASTS[lab["contrast"]], bool(lab["lesion"])
                title = f"ds[{j}] {contrast}"
            axes[r, j].imshow(img, cmap="gray", vmin=-1, vmax=1)
            axes[r, j].set_title(title + (" +lesion" if lesion else ""), fontsize=7)
            axes[r, j].axis("off")
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    Image.open(buf).convert("L").save(path, optimize=True)   # grayscale PNG: about half the bytes
    return Path(path)


if __name__ == "__main__":  # python -m diffgan_lib.phantoms [data_folder]
    import sys
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "data")
    print(len(save_samples(root / "samples")), "samples ->", root / "samples")
    print("grid ->", save_grid(root / "phantoms_grid.png"))
