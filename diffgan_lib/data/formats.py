"""File-format readers behind ``data.load_images``: PNG/JPEG/TIFF/BMP, DICOM, NIfTI, MedMNIST .npz.

Every reader returns a list of ``Stack(name, pixels, kind)`` records: ``pixels`` is an array of
same-size images, (N, H, W) grayscale or (N, H, W, 3) RGB, in the file's own units and, for integer
files, its own dtype; ``kind`` says what those units mean, so that ``data.load_images`` can scale
them (``KINDS``):

- ``"uint8"``: 8-bit integers, 0..255 (PNG/JPEG/BMP/TIFF, MedMNIST .npz, 8-bit DICOM): a fixed scale;
- ``"uint16"``: 9- to 16-bit unsigned integers, 0..65535 (16-bit PNG/TIFF, X-ray DICOM, uint16 .npz);
- ``"hu"``: CT Hounsfield units (DICOM with Modality CT, after RescaleSlope/Intercept), float32;
- ``"float"``: no fixed scale, float32 (NIfTI, MR and other DICOM, float TIFF or .npz, signed ints).

``name`` says where it came from (``scan.nii.gz[axis2=40]``) for error messages.

A file the library cannot decode (corrupt, truncated, not really that format) raises
``UnreadableFileError``; ``load_images`` skips those inside a folder. A file that decodes but holds
the wrong thing (a 4-D array, missing keys) raises ``ValueError`` at once. pydicom and nibabel are
optional and imported only when such a file is met; without them you get the pip command to run.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["UnreadableFileError", "Stack", "KINDS", "SUFFIXES", "SPLITS", "file_kind", "find_files", "read_file",
           "read_labels"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + (".npz",)
SPLITS = ("train", "val", "test")
KINDS = ("uint8", "uint16", "hu", "float")


class Stack(NamedTuple):
    """Same-size images from one file: ``pixels`` (N, H, W) or (N, H, W, 3) in file units; ``kind`` in KINDS."""

    name: str
    pixels: np.ndarray
    kind: str


class UnreadableFileError(OSError):
    """A file that could not be decoded: corrupt, truncated, or not the format its name says."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _looks_like_dicom(path: Path) -> bool:
    """DICOM files often have no extension; they carry b"DICM" at byte 128."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def file_kind(path: Path) -> str | None:
    """"image", "dicom", "nifti", "npz" or None (unsupported) for one file."""
    suffix = _suffix(path)
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in DICOM_SUFFIXES or (suffix == "" and _looks_like_dicom(path)):
        return "dicom"
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return "npz" if suffix == ".npz" else None


def find_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """All files under ``folder`` (recursive, sorted, hidden ones left out): (supported, unsupported).

    .npz files are not collected from folders (pass the file itself): they hold whole datasets.
    """
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    kinds = [file_kind(p) for p in files]
    return ([p for p, k in zip(files, kinds) if k not in (None, "npz")],
            [p for p, k in zip(files, kinds) if k in (None, "npz")])


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"reading {what} needs the optional package {module}: run  pip install {module}"
                          f"  (or pip install 'diffgan_lib[medical]' for pydicom and nibabel)") from err


def _kind_of(arr: np.ndarray) -> str:
    """The kind of an array whose file says nothing more: by dtype, and for wide integers by value range."""
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return "uint8"
    if np.issubdtype(arr.dtype, np.integer) and arr.size and 0 <= arr.min() and arr.max() <= 65535:
        return "uint16"                                 # uint16, or Pillow's 32-bit "I" mode holding 16-bit data
    return "float"


def _native(arr: np.ndarray, kind: str) -> np.ndarray:
    """``arr`` in the narrowest dtype of its kind: uint8, uint16, or float32 (HU and float)."""
    dtype = {"uint8": np.uint8, "uint16": np.uint16}.get(kind, np.float32)
    return np.ascontiguousarray(arr, dtype=dtype)


def _stack(name: str, arr: np.ndarray) -> Stack:
    """One 2-D image (H, W[, 3]) of any dtype -> a Stack of one image in its native dtype."""
    kind = _kind_of(arr)
    return Stack(name, _native(arr, kind)[None], kind)


def _read_pil(path: Path) -> list[Stack]:
    """PNG / JPEG / TIFF / BMP with Pillow, dtype kept: 8-bit gray/RGB uint8, 16-bit gray uint16 (kind
    "uint16"), float TIFF float32; every frame of a multi-page TIFF."""
    from PIL import Image, ImageSequence
    out = []
    try:
        with Image.open(path) as im:
            for k, frame in enumerate(ImageSequence.Iterator(im)):
                mode = frame.mode
                if mode in ("1", "LA"):
                    frame = frame.convert("L")         # bilevel, gray + alpha: 8-bit gray
                elif mode not in ("L", "RGB", "I", "F") and not mode.startswith("I;16"):
                    frame = frame.convert("RGB")       # P, RGBA, CMYK, YCbCr, ...: colour, alpha dropped
                name = path.name if k == 0 else f"{path.name}[frame {k}]"
                out.append(_stack(name, np.asarray(frame)))
    except Exception as err:                            # PIL raises many types for bad files
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    return out


def _invert_monochrome1(ds, stored: np.ndarray) -> np.ndarray:
    """MONOCHROME1 (0 = white) -> MONOCHROME2, mirrored in the stored range, e.g. 0..4095 for 12 bits.

    The range comes from BitsStored and PixelRepresentation, not from the image, so the same stored
    value gives the same output in every file.
    """
    bits = int(getattr(ds, "BitsStored", 0) or stored.dtype.itemsize * 8)
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return (lo + hi - stored.astype(np.int64)).astype(stored.dtype)     # stays in [lo, hi]: same dtype


def _dicom_kind(ds, stored: np.ndarray, slope: float, intercept: float) -> str:
    """"hu" for CT; the stored integer kind when no rescale applies (X-ray, ultrasound); else "float"."""
    modality = str(getattr(ds, "Modality", "")).upper()
    if modality == "CT":
        return "hu"
    if modality == "MR" or (slope, intercept) != (1.0, 0.0):
        return "float"                                  # MR and rescaled PET/NM values have no fixed scale
    return _kind_of(stored)


def _read_dicom(path: Path) -> list[Stack]:
    """One DICOM file (one image or its frames). Kind "hu" for CT: stored * RescaleSlope +
    RescaleIntercept in float32; integer kinds keep the stored dtype. MONOCHROME1 is inverted.
    """
    pydicom = _require("pydicom", "DICOM files")
    try:
        ds = pydicom.dcmread(path)
        stored = np.asarray(ds.pixel_array)
    except Exception as err:
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":   # 0 = white in these files
        stored = _invert_monochrome1(ds, stored)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    kind = _dicom_kind(ds, stored, slope, intercept)
    arr = stored if kind in ("uint8", "uint16") else stored.astype(np.float32) * slope + intercept
    rgb = int(getattr(ds, "SamplesPerPixel", 1)) == 3
    arr = _native(arr, kind)
    return [Stack(path.name, arr if arr.ndim == (4 if rgb else 3) else arr[None], kind)]  # frames or one


def _read_nifti(path: Path, axis: int = 2, min_foreground: float = 0.01) -> list[Stack]:
    """A NIfTI volume cut into 2-D float32 slices (kind "float") along ``axis``; near-empty ones skipped.

    NIfTI says nothing about modality (an int16 volume may be CT in HU or an MR), so its values get
    kind "float": scaled per image unless you pass ``window=``.

    A slice is empty when fewer than ``min_foreground`` of its pixels are above the volume's minimum.
    Slices are rotated 90 degrees so that an axial slice of a RAS volume shows anterior at the top.
    """
    nib = _require("nibabel", "NIfTI volumes")
    try:
        vol = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as err:
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    vol = vol[..., None] if vol.ndim == 2 else vol
    if vol.ndim != 3:
        raise ValueError(f"{path.name} has shape {vol.shape} ({vol.ndim}-D, a time series?); "
                         "load_images takes 2-D or 3-D NIfTI volumes: save one volume per file")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis={axis!r} is not a volume axis; use 0, 1 or 2 (2 = axial for RAS volumes)")
    if not np.isfinite(vol).all():
        raise ValueError(f"{path.name} has {int((~np.isfinite(vol)).sum())} NaN/inf voxels; "
                         "replace them (e.g. np.nan_to_num) before loading")
    slices = np.rot90(np.moveaxis(vol, axis, 0), k=1, axes=(1, 2))
    keep = (slices > vol.min()).mean(axis=(1, 2)) >= min_foreground
    if not keep.any():
        raise ValueError(f"{path.name}: every slice along axis {axis} is empty (constant background)")
    return [Stack(f"{path.name}[axis{axis}={k}]", np.ascontiguousarray(slices[k])[None], "float")
            for k in np.flatnonzero(keep)]


def _npz_array(path: Path, split: str, what: str) -> np.ndarray:
    """The ``{split}_{what}`` array of a MedMNIST-layout .npz; ValueError naming the keys if absent."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a MedMNIST split; use one of {SPLITS}")
    key = f"{split}_{what}"
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            arr = data[key] if key in keys else None
    except Exception as err:
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    if arr is None:
        raise ValueError(f"{path.name} has no '{key}' array (its keys: {keys}); a MedMNIST-layout .npz "
                         "holds train_images, val_images and test_images (and *_labels): "
                         "pick split= from those present")
    return arr


def _read_npz(path: Path, split: str = "train") -> list[Stack]:
    """The ``{split}_images`` array of a MedMNIST-layout .npz: (N, H, W) or (N, H, W, 3), dtype kept
    (MedMNIST's uint8 gives kind "uint8")."""
    key = f"{split}_images"
    arr = _npz_array(path, split, "images")
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] in (1, 3))):
        raise ValueError(f"'{key}' in {path.name} has shape {arr.shape} ({arr.ndim}-D); expected a 3-D "
                         "array (N, H, W) of grayscale images, or (N, H, W, 3) for RGB; a 3-D volume "
                         "per item (MedMNIST 3D) must be sliced to 2-D first")
    arr = arr[..., 0] if arr.ndim == 4 and arr.shape[-1] == 1 else arr
    kind = _kind_of(arr)
    return [Stack(f"{path.name}[{key}]", _native(arr, kind), kind)]


def read_labels(path: Path, split: str = "train") -> np.ndarray:
    """The ``{split}_labels`` of a MedMNIST-layout .npz as int64 of shape (N,): one class per image.

    ValueError if the file has no such array or holds several labels per image (multi-label sets such
    as ChestMNIST, shape (N, 14)), which a single class index cannot represent.
    """
    arr = _npz_array(Path(path), split, "labels")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"'{split}_labels' in {Path(path).name} has shape {arr.shape} and dtype {arr.dtype}; "
                         "return_labels=True needs one integer class per image, shape (N,) or (N, 1) "
                         "(multi-label MedMNIST sets are not supported: load without labels)")
    return arr.astype(np.int64)


def read_file(path: Path, split: str = "train", axis: int = 2) -> list[Stack]:
    """Read one supported file into ``Stack`` records (see the module doc); ValueError for an unsupported type."""
    kind = file_kind(path)
    if kind == "image":
        return _read_pil(path)
    if kind == "dicom":
        return _read_dicom(path)
    if kind == "nifti":
        return _read_nifti(path, axis=axis)
    if kind == "npz":
        return _read_npz(path, split=split)
    raise ValueError(f"{path.name}: unsupported file type '{_suffix(path) or '(no extension)'}'; "
                     f"load_images reads {', '.join(SUFFIXES)} files, or a folder of them")
