"""Real scans in: ``load_images`` reads a folder or file of medical images into (N, C, S, S) in [-1, 1].

``load_images(path, image_size)`` -> (N, C, S, S) float32 in [-1, 1] from a folder (recursive) of
PNG / JPEG / TIFF / BMP (8- or 16-bit, gray or RGB, any size) and DICOM files, a single such file,
a NIfTI .nii/.nii.gz volume (sliced), or a MedMNIST-layout .npz (``split``). ``make_dataloader``
also takes two names: "phantoms" (generated) and "pneumoniamnist" (real chest X-rays shipped in
data/, with labels ``PNEUMONIAMNIST_CLASSES``). A folder in torchvision's ImageFolder layout,
root/class_name/*.png, gives class labels with ``labels="folders"`` (class k = the k-th sub-folder
name in sorted order). ``training_record(dataset)`` says which images a dataset holds, in plain
values a checkpoint can keep (its ``members``). Each image goes through:

1. read (``formats.py``): pixels in the file's units and dtype, with their kind (``formats.KINDS``):
   "uint8", "uint16", "hu" (CT DICOM after RescaleSlope/Intercept) or "float"; NIfTI is cut along ``axis``;
2. check: finite pixels, at least 8 x 8 px;
3. channels: RGB -> gray by luminance 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as Pillow's "L");
   gray -> RGB by repeating the channel;
4. size: the long side is resized to ``image_size`` (bilinear, antialiased), keeping the aspect ratio;
5. intensity to [-1, 1], values outside clipped. ``normalize="auto"`` (default) keeps a scale that
   means something and stretches only where there is none (``AUTO_NORMALIZE``):
   - "dtype": the type's range, the same for every image: uint8 0..255 -> x / 127.5 - 1;
   - "bits": 0 .. 2**b - 1 where b is the bit depth of the whole dataset (the bits its brightest
     pixel needs, e.g. 12 for a 12-bit detector stored in 16-bit files), the same for every image;
   - CT in HU: the fixed window ``CT_WINDOW`` (-1000 HU air -> -1, +1000 HU bone -> +1);
   - "minmax", per image: its min -> -1, its max -> +1 (a constant image becomes all -1);
   - "percentile", per image: clip to its (0.5, 99.5) percentiles first, so hot pixels or metal do
     not squash the rest.
   auto = dtype for uint8, bits for uint16, CT_WINDOW for HU, minmax for float (MR, NIfTI, float
   TIFF). ``window=(center, width)`` overrides all: center -/+ width/2 -> -1/+1 for every image;
6. padding: the short side is padded on both sides with the image's darkest value after step 5
   (its background: -1 under minmax, e.g. -0.98 for an 8-bit X-ray whose darkest pixel is 2), to
   S x S: shapes are never stretched.

Errors: a file that cannot be decoded (corrupt, truncated) is skipped with ONE warning naming every
skipped file, and if no file could be read it is a ValueError. Anything else that is wrong (no such
path, no supported files, NaN/inf, < 8 px, a 4-D array, missing .npz keys) is an error naming the
file: nothing is half-loaded. ``image_size`` must be a multiple of 8 (the UNet halves it 3 times).
"""
from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .files import local_path
from .formats import SUFFIXES, Stack, UnreadableFileError, find_files, read_file
from .phantoms import check_image_size

__all__ = ["load_images", "split_course_outputs", "NORMALIZATIONS", "AUTO_NORMALIZE", "CT_WINDOW"]

NORMALIZATIONS = ("auto", "dtype", "bits", "minmax", "percentile")
CT_WINDOW = (0.0, 2000.0)              # (center, width) in HU: -1000 (air) -> -1, +1000 (dense bone) -> +1
AUTO_NORMALIZE = {"uint8": "dtype", "uint16": "bits", "hu": "ct_window", "float": "minmax"}
SAMPLE_IMAGE = re.compile(r"sample_\d{3,}\.png")    # what sample writes: images/sample_NNN.png
TRAINING_GRID = re.compile(r"step_\d{6}\.png")      # what train writes: samples/step_NNNNNN.png
_TYPE_MAX = {"uint8": 255, "uint16": 65535}
# Longest side / shortest side beyond which an image is refused. Scans come near 1:1 (CT, MR,
# MedMNIST), chest films 1:1.25, panoramic dental films about 1:2.5 and stitched full-spine or
# long-leg films about 1:3 to 1:4; at 8:1 the image keeps an eighth of the square (4 px of 32) after
# resizing, so such a file is a mistake (a line profile, a wrong NIfTI axis), never anatomy to learn.
MAX_ASPECT = 8
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_stack(name: str, x: np.ndarray) -> np.ndarray:
    """Validate one (N, H, W) or (N, H, W, 3|4) stack; returns it with any alpha channel dropped."""
    if x.ndim == 4 and x.shape[-1] == 4:
        x = x[..., :3]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        raise ValueError(f"{name}: shape {x.shape[1:]} is not a 2-D grayscale or RGB image")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} NaN/inf pixels; replace them "
                         "(e.g. np.nan_to_num) before loading")
    if min(x.shape[1:3]) < 8:
        raise ValueError(f"{name} is {x.shape[1]}x{x.shape[2]} px, smaller than 8 px on a side; "
                         "images must be at least 8 x 8 px")
    if max(x.shape[1:3]) > MAX_ASPECT * min(x.shape[1:3]):
        raise ValueError(f"{name} is {x.shape[1]}x{x.shape[2]} px, more than {MAX_ASPECT} times longer than wide, so "
                         "almost nothing of it would survive resizing to a square; crop it to the region of "
                         "interest or leave it out (a wrong NIfTI axis= can also cause this)")
    return x


def _bit_depths(items: list[Stack]) -> dict[str, int]:
    """The dataset's bit depth per integer kind: bits needed by its brightest pixel (at least 1)."""
    peaks: dict[str, int] = {}
    for item in items:
        if item.kind in _TYPE_MAX and item.pixels.size:
            peaks[item.kind] = max(peaks.get(item.kind, 0), int(item.pixels.max()))
    return {kind: max(1, peak.bit_length()) for kind, peak in peaks.items()}


def _scale_for(item: Stack, normalize: str, window: tuple[float, float] | None,
               bits: dict[str, int]) -> tuple[float, float] | str:
    """How one stack is scaled: a fixed (lo, hi) in file units mapped to (-1, +1), or "minmax" /
    "percentile" (per image). ValueError when the choice needs integer pixels and these are not."""
    if window is not None:
        return window[0] - window[1] / 2, window[0] + window[1] / 2
    method = AUTO_NORMALIZE[item.kind] if normalize == "auto" else normalize
    if method == "ct_window":
        return CT_WINDOW[0] - CT_WINDOW[1] / 2, CT_WINDOW[0] + CT_WINDOW[1] / 2
    if method in ("dtype", "bits"):
        if item.kind not in _TYPE_MAX:
            what = "CT Hounsfield units" if item.kind == "hu" else "floating-point or signed values"
            raise ValueError(f"normalize={normalize!r} needs unsigned integer pixels with a type range, but "
                             f"{item.name} holds {what}; use normalize='auto', 'minmax' or 'percentile', "
                             "or a fixed window=(center, width) in the file's units")
        return 0.0, float(_TYPE_MAX[item.kind] if method == "dtype" else 2 ** bits[item.kind] - 1)
    return method


def _normalize(x: torch.Tensor, scale: tuple[float, float] | str,
               percentiles: tuple[float, float]) -> torch.Tensor:
    """(N, C, H, W) in file units -> float32 in [-1, 1] (step 5 above), clipped.

    scale: (lo, hi) maps lo -> -1 and hi -> +1 for every image; "minmax" / "percentile" per image.
    """
    flat = x.flatten(1)
    if not isinstance(scale, str):
        lo = torch.full((len(x), 1), float(scale[0]))
        hi = torch.full((len(x), 1), float(scale[1]))
    elif scale == "percentile":
        lo, hi = torch.quantile(flat, torch.tensor(percentiles) / 100, dim=1, keepdim=True)
    else:
        lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = torch.where(hi > lo, hi - lo, torch.full((), float("inf")))          # constant -> all -1
    return ((flat - lo) / span * 2 - 1).clamp_(-1, 1).view_as(x)  # x / x == 1 exactly: max -> +1


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, h', w') with the long side = S and the aspect ratio kept."""
    h, w = x.shape[-2:]
    nh, nw = (size, max(1, round(w * size / h))) if h >= w else (max(1, round(h * size / w)), size)
    if (nh, nw) == (h, w):
        return x
    return F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h', w') in [-1, 1] -> (N, C, S, S), centred, padded with each image's minimum after
    scaling (its background: -1 under minmax, its own darkest value under a fixed scale)."""
    nh, nw = x.shape[-2:]
    if (nh, nw) == (size, size):
        return x
    out = x.amin(dim=(1, 2, 3), keepdim=True).expand(-1, x.shape[1], size, size).clone()
    top, left = (size - nh) // 2, (size - nw) // 2
    out[..., top:top + nh, left:left + nw] = x
    return out


def _prepare(item: Stack, image_size: int, channels: int, scale: tuple[float, float] | str,
             percentiles: tuple[float, float]) -> torch.Tensor:
    """One stack of (N, H, W[, 3]) pixels in file units -> (N, channels, S, S) float32 in [-1, 1].

    Resizing comes before the intensity scaling so that under minmax every image still spans [-1, 1].
    """
    x = _check_stack(item.name, item.pixels).astype(np.float32)
    if x.ndim == 4:                                       # RGB (N, H, W, 3)
        x = x @ _LUMA if channels == 1 else x.transpose(0, 3, 1, 2)
    if x.ndim == 3:
        x = x[:, None]
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    x = _normalize(_resize(x, image_size), scale, percentiles)
    return _pad(x.expand(-1, channels, -1, -1), image_size).contiguous()


def _read_all(path: Path, split: str, axis: int) -> list[tuple[str, Stack]]:
    """Every (file, stack) under ``path``, the file relative to ``path`` (its name when ``path`` is a file);
    unreadable files in a folder are skipped with one warning."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (looked in {path.resolve().parent}); give a "
                                "folder of images or one file")
    if path.is_file():
        try:
            return [(path.name, item) for item in read_file(path, split=split, axis=axis)]
        except UnreadableFileError as err:
            raise ValueError(f"could not read {path.name} (corrupt or truncated?): {err.reason}") from err
    files, others = find_files(path)
    files, ours = split_course_outputs(files)
    if ours and not files:
        raise ValueError(f"folder {path} holds only images that diffgan_lib wrote ({len(ours)}, e.g. "
                         f"{ours[0].relative_to(path)}: samples or training grids), which are never read as "
                         "training data; to train on them, copy them into a folder of their own")
    if ours:
        warnings.warn(f"skipped {len(ours)} image(s) in {path} that diffgan_lib wrote itself (a sample folder's "
                      "grid.png and images/, a training folder's samples/step_*.png), e.g. "
                      f"{ours[0].relative_to(path)}; to train on them, copy them into a folder of their own",
                      stacklevel=3)
    if not files:
        found = Counter(p.suffix.lower() or "(no extension)" for p in others)
        what = ("it is empty" if not others else
                f"it has no supported image files (found: {', '.join(f'{n} x {s}' for s, n in found.items())})")
        raise ValueError(f"folder {path}: {what}; load_images reads {', '.join(SUFFIXES[:-1])} "
                         "(a .npz must be passed as a file)")
    items, skipped = [], []
    for f in files:
        try:
            items += [(f.relative_to(path).as_posix(), item) for item in read_file(f, split=split, axis=axis)]
        except UnreadableFileError as err:
            skipped.append(f"{f.relative_to(path)} ({err.reason})")
    if not items:
        raise ValueError(f"none of the {len(files)} files in {path} could be read (corrupt or truncated?): "
                         + "; ".join(skipped))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s) in {path}: " + "; ".join(skipped),
                      stacklevel=3)
    return items


def _image_names(file: str, item: Stack) -> list[str]:
    """One name per image of ``item`` read from ``file``: the file, plus the slice (``[axis2=40]``) and,
    for a file holding several images, the index (``[3]``)."""
    name = file + item.name[len(Path(file).name):] if item.name.startswith(Path(file).name) else file
    return [name] if len(item.pixels) == 1 else [f"{name}[{k}]" for k in range(len(item.pixels))]


def load_images(path: str | Path, image_size: int, channels: int = 1, normalize: str = "auto",
                percentiles: tuple[float, float] = (0.5, 99.5), window: tuple[float, float] | None = None,
                split: str = "train", axis: int = 2, return_names: bool = False, warn_resize: bool = True):
    """Load every image under ``path`` as (N, channels, S, S) float32 in [-1, 1]; see the module doc.

    normalize: "auto" (default: the file's fixed scale where it has one, else per-image min-max),
    "dtype" (type range: uint8 0..255, uint16 0..65535), "bits" (the dataset's bit depth), "minmax"
    or "percentile" (per image; clip to ``percentiles`` first); window: (center, width) in file
    units for every image, replacing ``normalize``; split: the .npz split ("train", "val", "test");
    axis: the NIfTI slicing axis. Images whose size is not S x S are resized, with one warning per call
    (``warn_resize=False``: none, for the course's own data, whose size is known).
    ``return_names=True`` returns ``(images, names)``: names[i] is image i's file relative to ``path``
    (folders are read in sorted order), e.g. "normal/p001.png", "scan.nii.gz[axis2=40]", "x.npz[train_images][7]".
    """
    image_size = check_image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is unknown; use one of {NORMALIZATIONS} ('auto' keeps a "
                         "file's fixed scale where it has one; see data/README.md, Intensities)")
    lo, hi = percentiles
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles {percentiles!r} must satisfy 0 <= low < high <= 100, e.g. (0.5, 99.5)")
    if window is not None and (len(window) != 2 or not window[1] > 0):
        raise ValueError(f"window {window!r} must be (center, width) with width > 0, e.g. (40, 80) for CT brain")
    files, items = zip(*_read_all(local_path(path, "data path"), split, axis))
    bits = _bit_depths(items)
    out, resized, native = [], 0, Counter()
    for item in items:
        out.append(_prepare(item, image_size, channels, _scale_for(item, normalize, window, bits), percentiles))
        shape = item.pixels.shape
        if shape[1:3] != (image_size, image_size):
            resized += shape[0]
            native[f"{shape[1]}x{shape[2]}"] += shape[0]
    images = torch.cat(out)
    if resized and warn_resize:
        sizes = ", ".join(f"{s} ({n})" for s, n in native.most_common(3)) + (", ..." if len(native) > 3 else "")
        warnings.warn(f"resized {resized} of {len(images)} images from their native size [{sizes}] to "
                      f"{image_size}x{image_size} (aspect ratio kept, short side padded with the background)",
                      stacklevel=2)
    if return_names:
        return images, [name for file, item in zip(files, items) for name in _image_names(file, item)]
    return images

# ------------------------------------------------------------- files the course wrote itself
def _course_output(p: Path) -> bool:
    """Whether ``p`` is an image written by diffgan_lib: a sample folder's grid.png or images/sample_NNN.png
    (beside samples.npy), or a training folder's samples/step_NNNNNN.png (beside history.json)."""
    if p.name == "grid.png":
        return (p.parent / "samples.npy").is_file()
    if p.parent.name == "images" and SAMPLE_IMAGE.fullmatch(p.name):
        return (p.parent.parent / "samples.npy").is_file()
    if p.parent.name == "samples" and TRAINING_GRID.fullmatch(p.name):
        return (p.parent.parent / "history.json").is_file()
    return False


def split_course_outputs(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(files to read, files diffgan_lib wrote itself: samples and training grids, never training data)."""
    outputs = [p for p in files if _course_output(p)]
    skip = set(outputs)
    return [p for p in files if p not in skip], outputs
