"""Tests of the offline quality measures: closed forms, copies vs fresh samples, and rankings."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffgan_lib.eval.features import as_images, augment, nt_xent_loss
from diffgan_lib.eval import extract_features, train_feature_net
from diffgan_lib.eval import diversity, frechet_distance, kid, memorisation, real_vs_real_baseline, sliced_wasserstein
from diffgan_lib import evaluate
from diffgan_lib.eval.metrics import laplacian_pyramid


def disks(n, seed, size=32):
    """n images (n, 1, size, size) in [-1, 1]: two sharp-edged disks of random grey on black."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, 2, generator=g) * size * 0.6 + size * 0.2
    radius = torch.rand(n, 2, generator=g) * 5 + 3
    grey = torch.rand(n, 2, generator=g) * 0.6 + 0.4
    dist2 = (yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2
    inside = (dist2 < radius[..., None, None] ** 2).float()
    img = (inside * grey[..., None, None]).amax(dim=1)          # (n, size, size) in [0, 1]
    return (2 * img - 1)[:, None]


def blur(x):
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)


def add_noise(x, std, seed=123):
    return (x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


@pytest.fixture(scope="module")
def tiny_net():
    return train_feature_net(disks(256, seed=0), steps=12, batch_size=32, width=8, dim=32,
                             seed=0, device="cpu", progress=False)


# --- Fréchet distance -------------------------------------------------------------------------

def test_frechet_of_identical_sets_is_zero():
    f = np.random.default_rng(0).standard_normal((500, 16))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_shifted_gaussians_is_squared_mean_difference_and_symmetric():
    rng = np.random.default_rng(1)
    mu = np.array([1.0, -0.5, 0.0, 0.5, 0.0, 0.0, 0.25, 0.0])
    a, b = rng.standard_normal((20000, 8)), rng.standard_normal((20000, 8)) + mu
    fd = frechet_distance(a, b)
    assert fd == pytest.approx((mu ** 2).sum(), abs=0.05)
    assert frechet_distance(b, a) == pytest.approx(fd, rel=1e-9)


def test_frechet_of_scaled_gaussians_follows_the_trace_term():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((20000, 6)), 2 * rng.standard_normal((20000, 6))
    # N(0, I) vs N(0, 4 I): tr(I) + tr(4I) - 2 tr(2I) = D (1 - 2)^2 = D
    assert frechet_distance(torch.from_numpy(a), b) == pytest.approx(6.0, rel=0.03)


def test_frechet_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((10, 4)), np.zeros((10, 5)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(np.zeros((10, 4, 1)), np.zeros((10, 4)))


# --- KID --------------------------------------------------------------------------------------

def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((1000, 16)), rng.standard_normal((1000, 16))
    same, same_std = kid(a, b, subsets=20, subset_size=500)
    shifted, shifted_std = kid(a, b + 0.5, subsets=20, subset_size=500)
    assert abs(same) < 0.01 and abs(same) < 3 * same_std   # a biased MMD² would give ~0.03
    assert shifted > 0.3 and shifted > 10 * shifted_std
    assert kid(a, b, subsets=5, seed=7) == kid(a, b, subsets=5, seed=7)


# --- sliced Wasserstein -----------------------------------------------------------------------

def test_laplacian_pyramid_sums_back_to_the_image():
    x = disks(4, seed=1)
    band, low = laplacian_pyramid(x, levels=2)
    up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
    assert low.shape == (4, 1, 16, 16) and torch.allclose(band + up, x, atol=1e-6)


def test_swd_is_zero_for_one_set_and_grows_with_noise_and_blur():
    a, b = disks(300, seed=1), disks(300, seed=2)
    kw = dict(n_patches=4096, n_projections=64)
    assert sliced_wasserstein(a, a, **kw) == 0.0
    real = sliced_wasserstein(a, b, **kw)
    small = sliced_wasserstein(a, add_noise(b, 0.05), **kw)
    assert real < small < sliced_wasserstein(a, add_noise(b, 0.2), **kw)
    assert sliced_wasserstein(a, blur(b), **kw) > 2 * real


def test_swd_needs_room_for_a_patch():
    x = disks(2, seed=0, size=16)
    with pytest.raises(ValueError, match="pyramid levels"):
        sliced_wasserstein(x, x, levels=3)


# --- diversity and memorisation ---------------------------------------------------------------

def test_diversity_is_zero_for_copies_and_positive_for_distinct_images():
    x = disks(50, seed=3)
    assert diversity(x[:1].repeat(20, 1, 1, 1)) == 0.0
    assert diversity(x) > 0.1
    f = np.random.default_rng(0).standard_normal((400, 32))
    assert diversity(f) == pytest.approx(math.sqrt(2), rel=0.05)   # E|x - y|^2 = 2 D for N(0, I)


def test_memorisation_flags_copies_and_passes_fresh_samples():
    train, heldout, fresh = disks(400, seed=10), disks(200, seed=11), disks(200, seed=12)
    pick = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:200]
    copies = memorisation(train[pick], train, heldout, k_closest=5)
    assert copies["nn_ratio"] < 0.01 and copies["fraction_close"] == 1.0
    assert all(pick[i].item() == j for i, j in zip(copies["closest_sample"], copies["closest_train"]))
    ok = memorisation(fresh, train, heldout)
    assert 0.8 < ok["nn_ratio"] < 1.25 and ok["fraction_close"] < 0.2
    assert copies["closest_distance"] == sorted(copies["closest_distance"])


def test_memorisation_rejects_a_heldout_set_taken_from_train():
    train = disks(50, seed=4)
    with pytest.raises(ValueError, match="never saw"):
        memorisation(disks(10, seed=5), train, train[:20])


def test_images_far_outside_minus_one_one_are_refused():
    with pytest.raises(ValueError, match=r"127\.5"):
        as_images(torch.full((2, 1, 32, 32), 200.0))
    with pytest.raises(ValueError, match="channel axis"):
        as_images(torch.zeros(2, 32, 32))
    assert as_images(np.full((1, 1, 8, 8), 1.1)).dtype == torch.float32   # a small overshoot is fine


# --- the feature net --------------------------------------------------------------------------

def test_augment_and_contrastive_loss_behave():
    x = disks(8, seed=6)
    v = augment(x, torch.Generator().manual_seed(0))
    assert v.shape == x.shape and v.min() >= -1 and v.max() <= 1 and not torch.equal(v, x)
    z = torch.randn(16, 8)
    assert nt_xent_loss(z, z) < nt_xent_loss(z, torch.randn(16, 8))   # matching views cost less
    uninformative = nt_xent_loss(torch.ones(16, 8), torch.ones(16, 8)).item()
    assert uninformative == pytest.approx(math.log(31), rel=1e-5)   # ln(2B - 1)


def test_feature_net_is_deterministic_with_a_seed_and_standardised(tiny_net):
    x = disks(64, seed=7)
    again = train_feature_net(disks(256, seed=0), steps=12, batch_size=32, width=8, dim=32,
                              seed=0, device="cpu", progress=False)
    other = train_feature_net(disks(256, seed=0), steps=12, batch_size=32, width=8, dim=32,
                              seed=1, device="cpu", progress=False)
    f = extract_features(tiny_net, x)
    assert f.shape == (64, 32) and f.dtype == np.float64
    np.testing.assert_allclose(extract_features(again, x), f, atol=1e-5)
    assert np.abs(extract_features(other, x) - f).max() > 1e-2
    train_feats = extract_features(tiny_net, disks(256, seed=0))
    np.testing.assert_allclose(train_feats.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(train_feats.std(0), 1, atol=1e-3)
    assert "SimCLR-CNN" in tiny_net.name and "32 px" in tiny_net.name and len(tiny_net.history) == 12


def test_feature_net_refuses_another_image_size(tiny_net):
    with pytest.raises(ValueError, match="resize"):
        extract_features(tiny_net, disks(4, seed=0, size=64))


def test_fd_in_learned_features_ranks_real_below_noisy_and_blurred(tiny_net):
    a, b = (extract_features(tiny_net, disks(300, seed=s)) for s in (20, 21))
    b_images = disks(300, seed=21)
    real = frechet_distance(a, b)
    assert real < frechet_distance(a, extract_features(tiny_net, blur(b_images)))
    assert real < frechet_distance(a, extract_features(tiny_net, add_noise(b_images, 0.2)))
    pure_noise = add_noise(torch.zeros_like(b_images), 1.0)
    assert real < frechet_distance(a, extract_features(tiny_net, pure_noise))
    assert diversity(b_images, net=tiny_net) == pytest.approx(diversity(b))   # images -> features


# --- evaluate and the real-vs-real floor ------------------------------------------------------

def test_evaluate_and_baseline_rank_copies_fresh_and_noise(tiny_net):
    train, heldout = disks(256, seed=0), disks(200, seed=30)
    kw = dict(net=tiny_net, kid_subsets=5)
    floor = real_vs_real_baseline(train, heldout, **kw)
    noisy = evaluate(add_noise(heldout[:100], 0.3), train, heldout[100:], **kw)
    copied = evaluate(train[:100], train, heldout[100:], **kw)
    assert floor["n_samples"] == 100 and floor["feature_net"] == tiny_net.name
    assert floor["fd"] < noisy["fd"] and floor["swd"] < noisy["swd"] and floor["kid"] < noisy["kid"]
    assert 0.7 < floor["nn_ratio"] < 1.4 and copied["nn_ratio"] == 0.0
    assert copied["feature_fraction_close"] == 1.0
    assert floor["diversity_pixel"] == pytest.approx(floor["diversity_pixel_real"], rel=0.2)
    with pytest.raises(ValueError, match="one image shape"):
        evaluate(disks(10, seed=1, size=64), train, heldout, **kw)


def test_a_feature_net_round_trips_through_its_file(tmp_path):
    from diffgan_lib.eval import FeatureNet, load_feature_net
    from diffgan_lib.eval.features import save_feature_net
    torch.manual_seed(0)
    net = FeatureNet(width=8, dim=32, image_size=16).eval()
    net.feat_mean += 0.5
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    path = save_feature_net(net, tmp_path / "f.pt", half=False)
    back = load_feature_net(path)
    assert torch.equal(back(x), net(x)) and back.name == net.name
    assert (load_feature_net(save_feature_net(net, tmp_path / "h.pt"))(x) - net(x)).abs().max() < 0.05
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="save_feature_net"):
        load_feature_net(tmp_path / "other.pt")
