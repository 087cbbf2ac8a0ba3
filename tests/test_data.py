"""Tests for load_images / ImageDataset / make_dataloader: every format written into tmp_path, read
back at a square size in [-1, 1] with the scaling its kind calls for (8-bit: x / 127.5 - 1, 16-bit:
the dataset's bit depth, CT: a fixed HU window, float: per image), the shipped PneumoniaMNIST, and
every kind of bad input refused with a message naming it."""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffgan_lib.data.images import CT_WINDOW
from diffgan_lib.data.loaders import PNEUMONIAMNIST_CLASSES, PNEUMONIAMNIST_PATH
from diffgan_lib.data import ImageDataset
from diffgan_lib import load_images, make_dataloader

REPO = Path(__file__).resolve().parents[1]
PNEUMONIA_SIZES = {"train": 4708, "val": 524, "test": 624}


def _gradient(h, w, top=255, dtype=np.uint8):
    """An (h, w) ramp from 0 (left column) to ``top`` (right column)."""
    return np.tile(np.linspace(0, top, w), (h, 1)).round().astype(dtype)


def _load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_images(*args, **kwargs)


def _check(x, n, channels, size, full_range=False):
    """Shape, dtype, values in [-1, 1]; with full_range (per-image scaling), every image reaches -1 and +1."""
    assert x.shape == (n, channels, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    if full_range:
        assert (x.amin(dim=(1, 2, 3)) == -1).all() and (x.amax(dim=(1, 2, 3)) == 1).all()


def _u8(x):
    """8-bit pixel values -> the [-1, 1] that load_images gives them by default."""
    return torch.as_tensor(np.asarray(x, np.float64) / 127.5 - 1, dtype=torch.float32)


def write_dicom(path, stored, slope=1.0, intercept=-1024.0, photometric="MONOCHROME2", modality="CT",
                bits_stored=16):
    """A minimal valid DICOM file (Explicit VR Little Endian, 16-bit unsigned pixels), CT by default."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"       # CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = modality, *stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


# --- formats and their default scaling -----------------------------------------------------------

def test_png_8bit_keeps_its_levels_aspect_preserved_and_padded_with_background(tmp_path):
    Image.fromarray(_gradient(40, 20, top=200) + 30).save(tmp_path / "tall.png")     # 40 rows x 20 columns, 30..230
    x = _load_quiet(tmp_path / "tall.png", 32)
    _check(x, 1, 1, 32)
    inner = x[0, 0, :, 8:24]                                               # the ramp fills 16 columns
    assert abs(inner[:, 0].mean() - _u8(30)) < 0.05 and abs(inner[:, -1].mean() - _u8(230)) < 0.05
    assert inner.min() > -0.8                                              # 30 stays dark grey, not black
    assert torch.allclose(inner[0], inner[-1])                              # rows identical: no vertical change
    background = inner.min()                                               # 8 px of padding each side
    assert (x[0, 0, :, :8] == background).all() and (x[0, 0, :, 24:] == background).all()
    stretched = _load_quiet(tmp_path / "tall.png", 32, normalize="minmax")  # per image, as before
    _check(stretched, 1, 1, 32, full_range=True)
    assert (stretched[0, 0, :, :8] == -1).all() and (stretched[0, 0, :, 24:] == -1).all()
    assert torch.allclose(stretched[0, 0, :, 8], torch.tensor(-1.0), atol=1e-5)
    assert torch.allclose(stretched[0, 0, :, 23], torch.tensor(1.0), atol=1e-5)


def test_png_8bit_exact_mapping_at_native_size(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    img[0, 0], img[0, 1] = 0, 255
    Image.fromarray(img).save(tmp_path / "a.png")
    for normalize in ("auto", "dtype"):
        x = load_images(tmp_path / "a.png", 16, normalize=normalize)[0, 0]
        assert torch.allclose(x, _u8(img), atol=1e-6) and x[0, 0] == -1 and x[0, 1] == 1
    dim = (img // 4).astype(np.uint8)                                     # a darker image stays darker
    Image.fromarray(dim).save(tmp_path / "b.png")
    both = load_images(tmp_path, 16)
    assert torch.allclose(both[1, 0], _u8(dim), atol=1e-6) and both[1].max() < -0.49


def test_png_16bit_keeps_its_range(tmp_path):
    Image.fromarray(_gradient(64, 64, 65535, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    x = load_images(tmp_path / "deep.png", 64)                               # native size: no resize
    _check(x, 1, 1, 64, full_range=True)
    assert torch.allclose(x[0, 0, 0], torch.linspace(-1, 1, 64), atol=1e-4)  # 16-bit steps, not 8-bit


def test_16bit_uses_the_datasets_bit_depth_not_each_image(tmp_path):
    """12-bit detector data in 16-bit files: 0..4095 spans [-1, 1]; a dimmer image stays dimmer."""
    Image.fromarray(_gradient(32, 32, 4095, np.uint16)).save(tmp_path / "a_full.png")
    Image.fromarray(_gradient(32, 32, 2047, np.uint16)).save(tmp_path / "b_dim.tif")
    x = load_images(tmp_path, 32)
    assert x[0, 0, 0, 0] == -1 and x[0, 0, 0, -1] == 1                              # 12 bits: 4095 -> +1
    assert torch.allclose(x[0, 0, 0], torch.linspace(-1, 1, 32), atol=1e-3)         # (ramp rounded to ints)
    assert torch.allclose(x[1, 0, 0], torch.linspace(0, 2047, 32) / 4095 * 2 - 1, atol=1e-3)
    dtype = load_images(tmp_path, 32, normalize="dtype")                          # 0..65535: squashed
    assert abs(dtype[0].max() - (4095 / 65535 * 2 - 1)) < 1e-4
    per_image = load_images(tmp_path, 32, normalize="minmax")
    _check(per_image, 2, 1, 32, full_range=True)


def test_tiff_16bit_and_rgb_and_jpeg_in_nested_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(_gradient(48, 48, 4000, np.uint16)).save(tmp_path / "scan.tif")
    rgb = np.stack([_gradient(48, 64), np.zeros((48, 64), np.uint8), 255 - _gradient(48, 64)], -1)
    Image.fromarray(rgb).save(tmp_path / "a" / "colour.tiff")
    Image.fromarray(rgb).save(tmp_path / "a" / "b" / "photo.jpg", quality=95)
    x = _load_quiet(tmp_path, 32)                              # sorted: a/b/photo.jpg, a/colour.tiff, scan.tif
    _check(x, 3, 1, 32)
    assert abs(x[2].max() - (4000 / 4095 * 2 - 1)) < 0.02                    # 12-bit TIFF: 0..4095 scale
    luma = 0.299 * rgb[..., 0] + 0.114 * rgb[..., 2]                          # 8-bit RGB: luma / 127.5 - 1
    assert abs(x[1, 0, 4:28].mean() - _u8(luma).mean()) < 0.01                 # 48 x 64 -> 24 x 32, 4 rows padding
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
    x = _load_quiet(tmp_path / "rg.png", 32)[0, 0]                          # auto: 8-bit scale, same as above
    assert abs(x[16, 4].item() - (0.299 * 255 / 127.5 - 1)) < 1e-3
    assert abs(x[16, 28].item() - (0.587 * 255 / 127.5 - 1)) < 1e-3
    x3 = _load_quiet(tmp_path / "rg.png", 32, channels=3)[0]               # each channel on the 8-bit scale
    assert (x3[0, 8:24, :16] == 1).all() and (x3[1, 8:24, :16] == -1).all() and (x3[2] == -1).all()


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
    means = _u8(arrays["val_images"]).mean(dim=(1, 2))                      # 8-bit scale survives the resize
    assert torch.allclose(x.mean(dim=(1, 2, 3)), means, atol=0.01)
    assert _load_quiet(tmp_path / "mini.npz", 32).shape[0] == 10


def test_npz_uint8_exact_mapping_and_float_per_image(tmp_path):
    img = np.random.default_rng(2).integers(0, 256, (2, 16, 16), dtype=np.uint8)
    img[0, 0, 0], img[0, 0, 1] = 0, 255
    np.savez(tmp_path / "u8.npz", train_images=img)
    x = load_images(tmp_path / "u8.npz", 16)
    assert torch.allclose(x[:, 0], _u8(img), atol=1e-6) and x[0, 0, 0, 0] == -1 and x[0, 0, 0, 1] == 1
    np.savez(tmp_path / "f.npz", train_images=img.astype(np.float32) / 1000)   # float: no fixed scale
    _check(load_images(tmp_path / "f.npz", 16), 2, 1, 16, full_range=True)


def test_dicom_ct_uses_a_fixed_hu_window(tmp_path):
    stored = np.full((32, 32), 1024 + 20, np.uint16)                       # 20 HU after the intercept
    stored[:, 16:] = 1024 + 1000                                           # bone, 1000 HU
    stored[:4] = 0                                                         # air, -1024 HU
    write_dicom(tmp_path / "ct.dcm", stored)
    write_dicom(tmp_path / "no_extension", stored)                        # DICOM files often have none
    x = load_images(tmp_path / "ct.dcm", 32)                              # auto: CT_WINDOW, -1000..1000 HU
    assert CT_WINDOW == (0.0, 2000.0)
    assert torch.allclose(x[0, 0, 4:, :16], torch.tensor(20 / 1000)) and (x[0, 0, 4:, 16:] == 1).all()
    assert (x[0, 0, :4] == -1).all()
    x = load_images(tmp_path / "ct.dcm", 32, window=(40, 80))             # brain window [0, 80] HU
    _check(x, 1, 1, 32)
    assert torch.allclose(x[0, 0, 4:, :16], torch.tensor(-0.5)) and (x[0, 0, 4:, 16:] == 1).all()
    assert load_images(tmp_path, 32).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"normalize='dtype' needs unsigned integer.*ct.dcm holds CT Hounsfield"):
        load_images(tmp_path / "ct.dcm", 32, normalize="dtype")


def test_dicom_ct_padding_is_air(tmp_path):
    stored = np.full((32, 16), 1024 + 40, np.uint16)                       # 32 rows x 16 cols: soft tissue
    stored[:, :2] = stored[:, -2:] = 0                                     # in air (-1024 HU)
    write_dicom(tmp_path / "narrow.dcm", stored)
    x = _load_quiet(tmp_path / "narrow.dcm", 32)[0, 0]
    assert torch.allclose(x[:, 10:22], torch.tensor(0.04))                 # 40 HU -> 0.04 in every image
    assert (x[:, :8] == -1).all() and (x[:, 24:] == -1).all()              # padded with air, like its edges


def test_dicom_xray_12bit_and_monochrome1(tmp_path):
    ramp = _gradient(16, 16, 4095, np.uint16)
    write_dicom(tmp_path / "dx.dcm", ramp, slope=1.0, intercept=0.0, modality="DX", bits_stored=12)
    x = load_images(tmp_path / "dx.dcm", 16)[0, 0]                        # 12 bits: 0..4095 -> -1..1
    assert torch.allclose(x[0], torch.linspace(-1, 1, 16), atol=1e-4)
    write_dicom(tmp_path / "inv.dcm", ramp, slope=1.0, intercept=0.0, modality="DX", bits_stored=12,
                photometric="MONOCHROME1")                                 # 0 = white: inverted in 0..4095
    x = load_images(tmp_path / "inv.dcm", 16)[0, 0]
    assert torch.allclose(x[0], torch.linspace(1, -1, 16), atol=1e-4)
    write_dicom(tmp_path / "mr.dcm", ramp // 8, slope=1.0, intercept=0.0, modality="MR")
    _check(load_images(tmp_path / "mr.dcm", 16), 1, 1, 16, full_range=True)    # MR: no fixed scale


def test_nifti_float_slices_scaled_per_image_skip_empty(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((24, 40, 10), np.float32)
    vol[4:20, 5:35, 3:] = np.random.default_rng(0).random((16, 30, 7)) + 1  # slices 0..2 are empty
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    x = _load_quiet(tmp_path / "vol.nii.gz", 32)
    _check(x, 7, 1, 32, full_range=True)                                   # float: min-max per image
    assert (x[:, :, :, :2] == -1).all() and (x[:, :, :, -2:] == -1).all()  # 40 x 24 slice: padded sides
    assert _load_quiet(tmp_path / "vol.nii.gz", 32, axis=0).shape[0] == 16
    with pytest.raises(ValueError, match=r"normalize='bits' needs unsigned integer.*floating-point"):
        _load_quiet(tmp_path / "vol.nii.gz", 32, normalize="bits")
    x = _load_quiet(tmp_path / "vol.nii.gz", 32, window=(1, 2))           # fixed window: 0..2 -> -1..1
    assert (x.amin(dim=(1, 2, 3)) == -1).all() and 0.8 < x.max() <= 1      # background 0 -> -1, values 1..2 -> 0..1


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
    plain = load_images(tmp_path / "hot.png", 32, normalize="minmax")[0, 0]
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
    first = np.asarray(Image.open(REPO / "data" / "samples" / "phantom_000.png"))
    assert torch.allclose(x[0, 0], _u8(first), atol=1e-6)                # 8-bit PNG, native size: v / 127.5 - 1


# --- PneumoniaMNIST, shipped in data/ -----------------------------------------------------------

@pytest.mark.filterwarnings("ignore:resized")
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_pneumoniamnist_splits_shapes_values_labels(split):
    ds = ImageDataset("pneumoniamnist", 32, split=split, return_labels=True)
    n = PNEUMONIA_SIZES[split]
    _check(ds.images, n, 1, 32)
    with np.load(PNEUMONIAMNIST_PATH) as data:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"][:, 0]
    assert abs(ds.images.mean() - _u8(images).mean()) < 2e-3               # the 8-bit scale, not per image
    assert abs(ds.images.std() - _u8(images).std()) < 0.02
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    assert set(ds.labels.tolist()) == {0, 1}                                # both classes present
    image, label = ds[0]
    assert image.shape == (1, 32, 32) and label.dtype == torch.int64 and label.shape == ()


@pytest.mark.filterwarnings("ignore:resized")
def test_pneumoniamnist_dataloader_labels_and_options():
    assert PNEUMONIAMNIST_CLASSES == ("normal", "pneumonia")
    dl = make_dataloader("PneumoniaMNIST", 32, batch_size=16, split="test", return_labels=True, seed=0,
                         device="cpu")
    x, y = next(iter(dl))
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert y.shape == (16,) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
    assert len(dl) == 624 // 16
    plain = next(iter(make_dataloader("pneumoniamnist", 32, 8, split="val", n=20, seed=0)))
    assert isinstance(plain, torch.Tensor) and plain.shape == (8, 1, 32, 32)
    small = ImageDataset("pneumoniamnist", 32, n=10, split="val", return_labels=True, channels=3)
    assert small.images.shape == (10, 3, 32, 32) and small.labels.shape == (10,)
    stretched = ImageDataset("pneumoniamnist", 32, split="test", normalize="minmax")    # the old rule, on request
    _check(stretched.images, 624, 1, 32, full_range=True)


@pytest.mark.filterwarnings("ignore:resized")
def test_pneumoniamnist_shards_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    dl = make_dataloader("pneumoniamnist", 32, batch_size=8, split="val", return_labels=True, seed=0)
    assert len(dl.sampler) == 262 and len(dl) == 262 // 8
    x, y = next(iter(dl))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8,)


def test_labels_only_where_the_source_has_them(tmp_path):
    _png(tmp_path / "a.png")
    with pytest.raises(ValueError, match="return_labels=True needs labels.*drop return_labels"):
        ImageDataset(tmp_path, 16, return_labels=True)
    np.savez(tmp_path / "multi.npz", train_images=np.zeros((2, 16, 16), np.uint8),
             train_labels=np.zeros((2, 14), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(2, 14\).*one integer class per image"):
        ImageDataset(tmp_path / "multi.npz", 16, return_labels=True)
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="no 'train_labels' array"):
        ImageDataset(tmp_path / "nolabels.npz", 16, return_labels=True)
    assert len(ImageDataset(tmp_path / "nolabels.npz", 16)) == 2


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


def test_an_extremely_elongated_image_is_refused(tmp_path):
    Image.fromarray(np.zeros((10, 10000), np.uint8)).save(tmp_path / "line.png")    # 10 rows x 10000 columns
    with pytest.raises(ValueError, match=r"line.png is 10x10000 px, more than 8 times longer than wide.*crop it"):
        load_images(tmp_path / "line.png", 32)
    Image.fromarray(np.zeros((64, 8 * 64), np.uint8)).save(tmp_path / "ok.png")     # 8:1 still loads
    assert load_images(tmp_path / "ok.png", 32).shape == (1, 1, 32, 32)


def test_the_course_outputs_in_a_data_folder_are_skipped_with_a_warning(tmp_path):
    for i in range(3):
        _png(tmp_path / f"scan_{i}.png", (24, 24))
    samples, run = tmp_path / "samples_run", tmp_path / "ckpts"
    (samples / "images").mkdir(parents=True)
    (run / "samples").mkdir(parents=True)
    np.save(samples / "samples.npy", np.zeros((2, 1, 16, 16), np.float32))
    for path in (samples / "grid.png", samples / "images" / "sample_000.png", samples / "images" / "sample_001.png",
                 run / "samples" / "step_000100.png"):
        _png(path)
    (run / "history.json").write_text("{}")
    (run / "final_model.pth").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 4 image\(s\) .* that diffgan_lib wrote itself"):
        assert load_images(tmp_path, 16).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="holds only images that diffgan_lib wrote .*copy them into a folder"):
        load_images(samples, 16)
    (samples / "samples.npy").unlink()                     # without samples.npy they are ordinary images
    assert load_images(samples, 16).shape == (3, 1, 16, 16)


# --- class labels from sub-folders (torchvision's ImageFolder layout) ----------------------------

def _class_tree(root, layout):
    """root/class/file for each (class, files) in ``layout``; pixel value = 10 x the file's rank in it."""
    for cls, files in layout.items():
        for k, name in enumerate(files):
            (root / cls / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16), 10 * k, np.uint8)).save(root / cls / name)


def test_folder_labels_follow_the_sorted_sub_folders(tmp_path):
    _class_tree(tmp_path, {"pneumonia": ["a.png", "b.jpg", "deep/c.png"], "normal": ["x.png", "y.bmp"]})
    ds = ImageDataset(tmp_path, 16, labels="folders", return_labels=True)
    assert ds.class_names == ("normal", "pneumonia")                     # sorted, as torchvision
    assert ds.names == ["normal/x.png", "normal/y.bmp", "pneumonia/a.png", "pneumonia/b.jpg", "pneumonia/deep/c.png"]
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 0, 1, 1, 1]
    image, label = ds[2]
    assert image.shape == (1, 16, 16) and label.dtype == torch.int64 and int(label) == 1
    x, y = next(iter(make_dataloader(tmp_path, 16, 5, labels="folders", return_labels=True, shuffle=False)))
    assert x.shape == (5, 1, 16, 16) and y.tolist() == [0, 0, 1, 1, 1]
    plain = ImageDataset(tmp_path, 16)                                    # no labels: every image, recursively
    assert len(plain) == 5 and plain.labels is None and plain.class_names is None
    assert isinstance(make_dataloader(tmp_path, 16, 5, labels="folders").dataset[0], torch.Tensor)


def test_folder_label_errors_name_the_problem_and_the_fix(tmp_path):
    _class_tree(tmp_path / "one", {"only": ["a.png"]})
    with pytest.raises(ValueError, match=r"at least 2 class folders .* found only 'only'; put each class"):
        ImageDataset(tmp_path / "one", 16, labels="folders")
    _class_tree(tmp_path / "mixed", {"a": ["1.png"], "b": ["2.png"]})
    _png(tmp_path / "mixed" / "loose.png")
    with pytest.raises(ValueError, match=r"mixes 1 image\(s\) lying directly in it \(e.g. loose.png\).*move them"):
        ImageDataset(tmp_path / "mixed", 16, labels="folders")
    _class_tree(tmp_path / "empty", {"a": ["1.png"], "b": ["2.png"]})
    (tmp_path / "empty" / "c").mkdir()
    (tmp_path / "empty" / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder\(s\) 'c' in .* hold no readable images"):
        ImageDataset(tmp_path / "empty", 16, labels="folders")
    (tmp_path / "empty" / "c" / "notes.txt").unlink()
    (tmp_path / "empty" / "c").rmdir()
    (tmp_path / "empty" / "c").symlink_to(tmp_path / "empty" / "a", target_is_directory=True)
    with pytest.raises(ValueError, match=r"'c' in .* are symbolic links to folders, which the loader does not follow"):
        ImageDataset(tmp_path / "empty", 16, labels="folders")
    with pytest.raises(ValueError, match="is not a folder; pass a folder laid out as root/class_name"):
        ImageDataset(tmp_path / "one" / "only" / "a.png", 16, labels="folders")
    with pytest.raises(ValueError, match="is not a folder"):
        ImageDataset("pneumoniamnist", 16, labels="folders")
    with pytest.raises(ValueError, match="phantoms carry their own labels: drop labels="):
        make_dataloader("phantoms", 32, 4, labels="folders")
    with pytest.raises(ValueError, match="labels='classes': use None .* or 'folders'"):
        ImageDataset(tmp_path / "empty", 16, labels="classes")
    _class_tree(tmp_path / "two", {"a": ["1.png", "2.png"], "b": ["3.png"]})
    with pytest.raises(ValueError, match="n=2 keeps the first 2 images in sorted order, and none of class.*b; raise n"):
        ImageDataset(tmp_path / "two", 16, labels="folders", n=2)
    with pytest.raises(ValueError, match="labels='folders'"):
        ImageDataset(tmp_path / "mixed", 16, return_labels=True)         # the fix for a folder without labels=


def test_training_record_says_which_images_a_dataset_holds(tmp_path):
    from torch.utils.data import Subset, TensorDataset
    from diffgan_lib.data import training_record
    _class_tree(tmp_path / "scans", {"b": ["1.png"], "a": ["2.png", "3.png"]})
    folder = ImageDataset(tmp_path / "scans", 16, labels="folders")
    assert training_record(folder) == {"source": str((tmp_path / "scans").resolve()), "count": 3, "range": [0, 3],
                                       "files": ["a/2.png", "a/3.png", "b/1.png"]}
    np.savez(tmp_path / "set.npz", val_images=np.zeros((5, 16, 16), np.uint8), val_labels=np.zeros((5, 1), np.uint8))
    npz = ImageDataset(tmp_path / "set.npz", 16, split="val", n=4)
    assert training_record(npz) == {"source": str(tmp_path / "set.npz"), "split": "val", "count": 4, "range": [0, 4]}
    assert training_record(Subset(Subset(npz, [3, 2, 1]), [0, 2]))["indices"] == [3, 1]
    assert training_record(Subset(npz, [1, 2]))["range"] == [1, 3]
    assert training_record(TensorDataset(torch.zeros(2, 1, 8, 8))) is None and training_record(None) is None
