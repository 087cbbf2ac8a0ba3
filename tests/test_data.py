"""Tests for load_images / ImageDataset / make_dataloader: every format written into tmp_path, read
back at a square size in [-1, 1], and every kind of bad input refused with a message naming it."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffgan_lib.data import ImageDataset, load_images, make_dataloader

REPO = Path(__file__).resolve().parents[1]
PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist_28.npz"


def _gradient(h, w, top=255, dtype=np.uint8):
    """An (h, w) ramp from 0 (left column) to ``top`` (right column)."""
    return np.tile(np.linspace(0, top, w), (h, 1)).round().astype(dtype)


def _load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_images(*args, **kwargs)


def _check(x, n, channels, size, full_range=True):
    """Shape, dtype, values in [-1, 1]; with full_range, every image reaches both -1 and +1."""
    assert x.shape == (n, channels, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    if full_range:
        assert (x.amin(dim=(1, 2, 3)) == -1).all() and (x.amax(dim=(1, 2, 3)) == 1).all()


def write_dicom(path, stored, slope=1.0, intercept=-1024.0, photometric="MONOCHROME2"):
    """A minimal valid CT DICOM file (Explicit VR Little Endian, 16-bit unsigned pixels)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"       # CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", *stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# --- formats ------------------------------------------------------------------------------------

def test_png_8bit_aspect_preserved_and_padded_with_background(tmp_path):
    Image.fromarray(_gradient(40, 20, top=200) + 30).save(tmp_path / "tall.png")     # 40 rows x 20 columns
    x = _load_quiet(tmp_path / "tall.png", 32)
    _check(x, 1, 1, 32)
    assert (x[0, 0, :, :8] == -1).all() and (x[0, 0, :, 24:] == -1).all()   # 8 px of padding each side
    inner = x[0, 0, :, 8:24]
    assert torch.allclose(inner[:, 0], torch.tensor(-1.0), atol=1e-5)        # the ramp fills 16 columns
    assert torch.allclose(inner[:, -1], torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(inner[0], inner[-1])                              # rows identical: no vertical change


def test_png_16bit_keeps_its_range(tmp_path):
    Image.fromarray(_gradient(64, 64, 65535, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    x = load_images(tmp_path / "deep.png", 64)                               # native size: no resize
    _check(x, 1, 1, 64)
    assert torch.allclose(x[0, 0, 0], torch.linspace(-1, 1, 64), atol=1e-4)  # 16-bit steps, not 8-bit


def test_tiff_16bit_and_rgb_and_jpeg_in_nested_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(_gradient(48, 48, 4000, np.uint16)).save(tmp_path / "scan.tif")
    rgb = np.stack([_gradient(48, 64), np.zeros((48, 64), np.uint8), 255 - _gradient(48, 64)], -1)
    Image.fromarray(rgb).save(tmp_path / "a" / "colour.tiff")
    Image.fromarray(rgb).save(tmp_path / "a" / "b" / "photo.jpg", quality=95)
    x = _load_quiet(tmp_path, 32)
    _check(x, 3, 1, 32)
    x3 = _load_quiet(tmp_path, 32, channels=3)
    _check(x3, 3, 3, 32)
    assert torch.equal(x3[2, 0], x3[2, 1])                                  # gray file repeated to RGB


def test_rgb_to_gray_uses_luminance(tmp_path):
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16, 0], rgb[:, 16:, 1] = 255, 255                               # red | green
    Image.fromarray(rgb).save(tmp_path / "rg.png")
    x = _load_quiet(tmp_path / "rg.png", 32, normalize="minmax")[0, 0]
    assert (x[8:24, :16] == -1).all() and (x[8:24, 16:] == 1).all()       # luma red 76 < green 150
    x = _load_quiet(tmp_path / "rg.png", 32, window=(127.5, 255))[0, 0]
    assert abs(x[16, 4].item() - (0.299 * 255 / 127.5 - 1)) < 1e-3


def test_npz_medmnist_layout_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in
              (("train", 10), ("val", 3), ("test", 4))}
    arrays.update({f"{s}_labels": np.zeros((n, 1), np.uint8) for s, n in (("train", 10), ("val", 3), ("test", 4))})
    np.savez(tmp_path / "mini.npz", **arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = load_images(tmp_path / "mini.npz", 32, split="val")
    _check(x, 3, 1, 32)
    resize = [w for w in caught if "resized" in str(w.message)]
    assert len(resize) == 1 and "28x28" in str(resize[0].message)          # said once, not per image
    assert _load_quiet(tmp_path / "mini.npz", 32).shape[0] == 10


def test_dicom_rescale_and_window(tmp_path):
    stored = np.full((32, 32), 1024 + 20, np.uint16)                       # 20 HU after the intercept
    stored[:, 16:] = 1024 + 1000                                           # bone, 1000 HU
    write_dicom(tmp_path / "ct.dcm", stored)
    write_dicom(tmp_path / "no_extension", stored)                        # DICOM files often have none
    x = load_images(tmp_path / "ct.dcm", 32, window=(40, 80))             # brain window [0, 80] HU
    _check(x, 1, 1, 32, full_range=False)
    assert torch.allclose(x[0, 0, :, :16], torch.tensor(-0.5)) and (x[0, 0, :, 16:] == 1).all()
    assert load_images(tmp_path, 32).shape == (2, 1, 32, 32)


def test_nifti_slices_skip_empty(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((24, 40, 10), np.float32)
    vol[4:20, 5:35, 3:] = np.random.default_rng(0).random((16, 30, 7)) + 1  # slices 0..2 are empty
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    x = _load_quiet(tmp_path / "vol.nii.gz", 32)
    _check(x, 7, 1, 32)
    assert (x[:, :, :, :2] == -1).all() and (x[:, :, :, -2:] == -1).all()  # 40 x 24 slice: padded sides
    assert _load_quiet(tmp_path / "vol.nii.gz", 32, axis=0).shape[0] == 16


@pytest.mark.parametrize("module,filename,hint", [("pydicom", "ct.dcm", "pip install pydicom"),
                                                  ("nibabel", "vol.nii", "pip install nibabel")])
def test_missing_optional_package_gives_install_hint(tmp_path, monkeypatch, module, filename, hint):
    (tmp_path / filename).write_bytes(b"\0" * 256)
    monkeypatch.setitem(sys.modules, module, None)                         # as if not installed
    with pytest.raises(ImportError, match=hint):
        load_images(tmp_path / filename, 32)


def test_percentile_normalisation_ignores_hot_pixels(tmp_path):
    img = _gradient(32, 32, 1000, np.uint16)
    img[0, 0] = 65535                                                      # one hot pixel
    Image.fromarray(img).save(tmp_path / "hot.png")
    plain = load_images(tmp_path / "hot.png", 32)[0, 0]
    robust = load_images(tmp_path / "hot.png", 32, normalize="percentile")[0, 0]
    assert plain[16].max() < -0.9                                          # squashed by the hot pixel
    assert robust[16, 0] == -1 and robust[16, -1] == 1


# --- bad input ----------------------------------------------------------------------------------

def _png(path, shape=(16, 16)):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)).save(path)


def test_truncated_file_skipped_with_one_warning(tmp_path):
    _png(tmp_path / "good1.png")
    _png(tmp_path / "good2.png")
    _png(tmp_path / "cut.png", (64, 64))
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable file\(s\).*cut\.png.*junk\.jpg") as rec:
        x = load_images(tmp_path, 16)
    assert len([w for w in rec if "skipped" in str(w.message)]) == 1
    assert x.shape == (2, 1, 16, 16)
    (tmp_path / "good1.png").unlink()
    (tmp_path / "good2.png").unlink()
    with pytest.raises(ValueError, match=r"none of the 2 files.*cut\.png"):
        load_images(tmp_path, 16)
    with pytest.raises(ValueError, match=r"could not read cut\.png"):
        load_images(tmp_path / "cut.png", 16)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="it is empty"):
        load_images(tmp_path, 32)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"no supported image files \(found: 1 x \.txt\)"):
        load_images(tmp_path, 32)
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'"):
        load_images(tmp_path / "notes.txt", 32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images(tmp_path / "nowhere", 32)


def test_content_errors_name_the_problem(tmp_path):
    np.savez(tmp_path / "vol.npz", train_images=np.zeros((2, 8, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(2, 8, 28, 28\) \(4-D\); expected a 3-D"):
        load_images(tmp_path / "vol.npz", 32)
    np.savez(tmp_path / "odd.npz", images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"no 'train_images' array \(its keys: \['images'\]\)"):
        load_images(tmp_path / "odd.npz", 32)
    bad = np.ones((2, 16, 16), np.float32)
    bad[1, 3, 3] = np.nan
    np.savez(tmp_path / "nan.npz", train_images=bad)
    with pytest.raises(ValueError, match="nan.npz.* 1 NaN/inf pixels"):
        load_images(tmp_path / "nan.npz", 32)
    Image.fromarray(np.full((16, 16), np.inf, np.float32)).save(tmp_path / "inf.tif")
    with pytest.raises(ValueError, match="inf.tif has 256 NaN/inf pixels"):
        load_images(tmp_path / "inf.tif", 32)
    _png(tmp_path / "tiny.png", (5, 20))
    with pytest.raises(ValueError, match=r"tiny.png is 5x20 px, smaller than 8 px"):
        load_images(tmp_path / "tiny.png", 32)


@pytest.mark.parametrize("kwargs,match", [({"image_size": 100}, "use 96 or 104"), ({"image_size": 4}, "too small"),
                                          ({"channels": 2}, "channels must be 1"),
                                          ({"normalize": "zscore"}, "normalize='zscore' is unknown"),
                                          ({"split": "dev"}, "not a MedMNIST split"),
                                          ({"window": (40, 0)}, "width > 0")])
def test_bad_arguments(tmp_path, kwargs, match):
    np.savez(tmp_path / "ok.npz", train_images=np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ValueError, match=match):
        load_images(tmp_path / "ok.npz", **{"image_size": 16, **kwargs})


# --- datasets and loaders -----------------------------------------------------------------------

def test_repo_samples_load():
    x = load_images(REPO / "data" / "samples", 64)
    assert 24 <= len(x) <= 64
    _check(x, len(x), 1, 64)


def test_pneumoniamnist_at_32px():
    if not PNEUMONIA.exists():
        pytest.skip(f"{PNEUMONIA} not present (only on development/CI machines)")
    x = _load_quiet(PNEUMONIA, 32, split="test")
    _check(x, 624, 1, 32)
    assert 0.2 < (x.mean() * 0.5 + 0.5) < 0.8                              # a real X-ray, not blank


def test_make_dataloader_phantoms_seeded():
    dl = make_dataloader("phantoms", 32, batch_size=8, n=40, seed=1, device="cpu")
    batches = list(dl)
    assert len(batches) == 5 and isinstance(batches[0], torch.Tensor)
    assert batches[0].shape == (8, 1, 32, 32) and batches[0].dtype == torch.float32
    assert all(b.min() >= -1 and b.max() <= 1 for b in batches)
    assert dl.num_workers == 0 and not dl.pin_memory
    again = next(iter(make_dataloader("phantoms", 32, batch_size=8, n=40, seed=1, device="cpu")))
    other = next(iter(make_dataloader("phantoms", 32, batch_size=8, n=40, seed=2, device="cpu")))
    assert torch.equal(batches[0], again) and not torch.equal(batches[0], other)
    images, labels = next(iter(make_dataloader("phantoms", 32, 4, n=8, seed=0, return_labels=True)))
    assert images.shape == (4, 1, 32, 32) and labels["lesion"].shape == (4,)


@pytest.mark.filterwarnings("ignore:resized")
def test_make_dataloader_folder_and_errors(tmp_path):
    for i in range(6):
        _png(tmp_path / f"img_{i}.png", (24, 24))
    dl = make_dataloader(tmp_path, 16, batch_size=4, channels=3, seed=0, device="cpu")
    batch = next(iter(dl))
    assert batch.shape == (4, 3, 16, 16) and len(dl) == 1
    assert len(ImageDataset(tmp_path, 16, n=3, normalize="percentile")) == 3
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        make_dataloader(tmp_path, 16, batch_size=8)
    assert len(make_dataloader(tmp_path, 16, batch_size=8, drop_last=False)) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_dataloader(tmp_path / "phantom", 16, batch_size=8)
