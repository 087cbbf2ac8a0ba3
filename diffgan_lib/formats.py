"""File-format readers behind ``data.load_images``: PNG/JPEG/TIFF/BMP, DICOM, NIfTI, MedMNIST .npz.

Every reader returns a list of ``(name, stack)`` pairs: ``stack`` is a float32 array of same-size
images, (N, H, W) grayscale or (N, H, W, 3) RGB, in the file's own units (0..255 for 8-bit,
0..65535 for 16-bit, Hounsfield units for CT DICOM after RescaleSlope/Intercept), and ``name``
says where it came from (``scan.nii.gz[axis2=40]``) for error messages.

A file the library cannot decode (corrupt, truncated, not really that format) raises
``UnreadableFileError``; ``load_images`` skips those inside a folder. A file that decodes but holds
the wrong thing (a 4-D array, missing keys) raises ``ValueError`` at once. pydicom and nibabel are
optional and imported only when such a file is met; without them you get the pip command to run.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

__all__ = ["UnreadableFileError", "SUFFIXES", "SPLITS", "file_kind", "find_files", "read_file"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES + (".npz",)
SPLITS = ("train", "val", "test")


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


def _stack(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32)[None]


def _read_pil(path: Path) -> list[tuple[str, np.ndarray]]:
    """PNG / JPEG / TIFF / BMP with Pillow; 16-bit gray stays 16-bit; every frame of a multi-page TIFF."""
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
                out.append((name, _stack(np.asarray(frame))))
    except Exception as err:                            # PIL raises many types for bad files
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    return out


def _read_dicom(path: Path) -> list[tuple[str, np.ndarray]]:
    """One DICOM file: pixel values * RescaleSlope + RescaleIntercept; MONOCHROME1 is inverted."""
    pydicom = _require("pydicom", "DICOM files")
    try:
        ds = pydicom.dcmread(path)
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as err:
        raise UnreadableFileError(path, f"{type(err).__name__}: {err}") from err
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":   # 0 = white in these files
        arr = arr.max() + arr.min() - arr
    rgb = int(getattr(ds, "SamplesPerPixel", 1)) == 3
    return [(path.name, arr if arr.ndim == (4 if rgb else 3) else arr[None])]  # frames or one image


def _read_nifti(path: Path, axis: int = 2, min_foreground: float = 0.01) -> list[tuple[str, np.ndarray]]:
    """A NIfTI volume cut into 2-D slices along ``axis``; near-empty slices are skipped.

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
    return [(f"{path.name}[axis{axis}={k}]", _stack(slices[k])) for k in np.flatnonzero(keep)]


def _read_npz(path: Path, split: str = "train") -> list[tuple[str, np.ndarray]]:
    """The ``{split}_images`` array of a MedMNIST-layout .npz: (N, H, W) uint8 or (N, H, W, 3)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a MedMNIST split; use one of {SPLITS}")
    key = f"{split}_images"
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
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] in (1, 3))):
        raise ValueError(f"'{key}' in {path.name} has shape {arr.shape} ({arr.ndim}-D); expected a 3-D "
                         "array (N, H, W) of grayscale images, or (N, H, W, 3) for RGB; a 3-D volume "
                         "per item (MedMNIST 3D) must be sliced to 2-D first")
    arr = arr[..., 0] if arr.ndim == 4 and arr.shape[-1] == 1 else arr
    return [(f"{path.name}[{key}]", np.asarray(arr, dtype=np.float32))]


def read_file(path: Path, split: str = "train", axis: int = 2) -> list[tuple[str, np.ndarray]]:
    """Read one supported file into ``(name, stack)`` pairs; ValueError for an unsupported type."""
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
