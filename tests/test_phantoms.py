"""Tests for the procedural head phantoms (diffgan_lib.phantoms): shapes, ranges, determinism,
labels and the anatomy each contrast must show."""
import numpy as np
import pytest
import torch

from diffgan_lib import load_images
from diffgan_lib.data import CONTRASTS, check_image_size, make_phantom
from diffgan_lib import PhantomDataset
from diffgan_lib.data.phantoms import save_samples


def _coords(size):
    lin = (torch.arange(size) + 0.5) * (2 / size) - 1
    return lin[None, :].expand(size, size), lin[:, None].expand(size, size)


@pytest.mark.parametrize("size", [8, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_item_shape_dtype_range(size, channels):
    ds = PhantomDataset(n=6, image_size=size, channels=channels, seed=3)
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (channels, size, size) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
        assert x.max() - x.min() > (1.0 if size >= 32 else 0.5), "a phantom should use most of the range"
        if channels == 3:
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_deterministic_per_index_and_seed():
    a, b = PhantomDataset(n=20, seed=7), PhantomDataset(n=20, seed=7)
    later = b[5]
    _ = [b[i] for i in range(20)]                        # reading other items first changes nothing
    assert torch.equal(a[5], later) and torch.equal(a[5], b[5])
    assert torch.equal(a[-1], a[19])
    assert not torch.equal(a[5], a[6])
    assert not torch.equal(a[5], PhantomDataset(n=20, seed=8)[5])


def test_labels_balanced_and_consistent():
    ds = PhantomDataset(n=200, image_size=8, seed=0, return_labels=True)
    labels = [ds.labels(i) for i in range(200)]
    lesion = np.mean([lab["lesion"] for lab in labels])
    assert 0.4 <= lesion <= 0.6, lesion
    counts = np.bincount([lab["contrast"] for lab in labels], minlength=3)
    assert counts.min() >= 40, counts                    # all three contrasts, roughly a third each
    img, lab = ds[11]
    assert img.shape == (1, 8, 8) and lab == labels[11]
    assert set(lab) == {"contrast", "lesion"}


def test_contrast_subset_and_lesion_prob():
    ds = PhantomDataset(n=40, image_size=8, contrasts=("t2",), lesion_prob=0.0)
    assert {ds.labels(i)["contrast"] for i in range(40)} == {CONTRASTS.index("t2")}
    assert {ds.labels(i)["lesion"] for i in range(40)} == {0}
    assert {PhantomDataset(n=40, image_size=8, lesion_prob=1.0).labels(i)["lesion"] for i in range(40)} == {1}


@pytest.mark.parametrize("contrast,sign", [("ct", -1), ("t1", -1), ("t2", +1)])
def test_lesion_is_local_and_has_the_contrast_sign(contrast, sign):
    """Same generator state with and without lesion: only a blob changes, darker (CT, T1) or brighter (T2)."""
    for seed in range(8):
        without = make_phantom(64, contrast, False, torch.Generator().manual_seed(seed))
        with_ = make_phantom(64, contrast, True, torch.Generator().manual_seed(seed))
        diff = with_ - without
        changed = (diff.abs() > 0.05).float().mean()
        assert 0.002 < changed < 0.2, changed
        assert sign * diff.sum() > 5, (seed, diff.sum())


@pytest.mark.parametrize("contrast,sign", [("ct", -1), ("t1", -1), ("t2", +1)])
def test_ventricles_dark_in_ct_t1_bright_in_t2(contrast, sign):
    X, Y = _coords(64)
    centre, ring = (X.abs() < 0.25) & (Y.abs() < 0.3), ((X ** 2 + Y ** 2) > 0.09) & ((X ** 2 + Y ** 2) < 0.2)
    for seed in range(6):
        x = make_phantom(64, contrast, False, torch.Generator().manual_seed(seed))
        assert sign * (x[centre].mean() - x[ring].mean()) > 0.08


def test_ct_skull_is_the_brightest_ring():
    X, Y = _coords(64)
    radius = (X ** 2 + Y ** 2).sqrt()
    for seed in range(6):
        x = make_phantom(64, "ct", False, torch.Generator().manual_seed(seed))
        bright = x >= x.flatten().quantile(0.97)
        assert radius[bright].min() > 0.55               # all at the skull, none inside the brain
        assert x[radius > 0.98].mean() < -0.8            # air in the corners


@pytest.mark.parametrize("size,match", [(100, "use 96 or 104"), (60, "use 56 or 64"), (4, "too small"),
                                        (0, "too small"), (64.0, "must be an int")])
def test_bad_image_size_is_refused(size, match):
    with pytest.raises(ValueError, match=match):
        check_image_size(size)
    with pytest.raises(ValueError, match=match):
        PhantomDataset(image_size=size)


@pytest.mark.parametrize("kwargs,match", [({"contrasts": ("pet",)}, "subset of"), ({"contrasts": ()}, "subset of"),
                                          ({"channels": 2}, "channels must be 1"), ({"n": 0}, "positive int"),
                                          ({"lesion_prob": 1.5}, r"in \[0, 1\]")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhantomDataset(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        PhantomDataset(n=4, image_size=8)[4]
    with pytest.raises(ValueError, match="unknown"):
        make_phantom(32, "mri")


def test_save_samples_round_trips_through_load_images(tmp_path):
    paths = save_samples(tmp_path / "samples", n=5, image_size=32, seed=2)
    assert [p.name for p in paths] == [f"phantom_{i:03d}.png" for i in range(5)]
    x = load_images(tmp_path / "samples", 32, window=(127.5, 255))   # 0..255 -> -1..1 exactly
    ds = PhantomDataset(n=5, image_size=32, seed=2)
    expected = torch.stack([ds[i] for i in range(5)])
    assert x.shape == expected.shape and (x - expected).abs().max() <= 1 / 127.5 + 1e-6


def test_lesion_mask_marks_where_the_lesion_changed_the_image():
    ds = PhantomDataset(n=40, image_size=64, seed=0, return_labels=True)
    with_lesion = [i for i in range(40) if ds.labels(i)["lesion"]][:3]
    without = [i for i in range(40) if not ds.labels(i)["lesion"]][:2]
    for i in without:
        assert not ds.lesion_mask(i).any()
    for i in with_lesion:
        mask = ds.lesion_mask(i)
        assert mask.shape == (64, 64) and mask.dtype == torch.bool and 10 < int(mask.sum()) < 64 * 64 // 4
        g = torch.Generator().manual_seed(123)
        contrast = CONTRASTS[ds.labels(i)["contrast"]]
        img, soft = make_phantom(64, contrast, True, g, return_lesion=True)
        same = make_phantom(64, contrast, True, torch.Generator().manual_seed(123))
        healthy = make_phantom(64, contrast, False, torch.Generator().manual_seed(123))
        assert torch.equal(img, same)                  # asking for the mask does not change the image
        diff = (img - healthy).abs()
        assert diff[soft > 0.5].mean() > 5 * diff[soft == 0].mean()   # the lesion is inside the mask
    assert torch.equal(ds[with_lesion[0]][0], PhantomDataset(n=40, image_size=64, seed=0)[with_lesion[0]])
