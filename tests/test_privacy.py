"""Membership inference: the per-image loss uses one fixed noise for all images, the attack finds the
members of an over-fitted model (positive control) and nothing between two unseen sets; nearest
training images in pixels and features."""
import numpy as np
import pytest
import torch

from diffgan_lib.eval import train_feature_net
from diffgan_lib.eval.privacy import attack_timesteps
from diffgan_lib.eval import closest_training_images, denoising_losses, membership_inference, overfit_control
from diffgan_lib import DiffusionScheduler
from diffgan_lib import UNet


def test_attack_timesteps_are_small_fractions_of_T():
    assert attack_timesteps(1000) == [20, 50, 100, 200]
    assert attack_timesteps(50) == [1, 2, 5, 10] and attack_timesteps(3) == [1]


def test_the_loss_depends_on_the_image_alone():
    G, sched = UNet(1, 8), DiffusionScheduler(20)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    x[3] = x[0]                                                       # the same image twice
    loss = denoising_losses(G, sched, x, timesteps=[1, 5], n_noise=3, seed=7)
    assert loss.shape == (5,) and loss.dtype == np.float64 and loss[3] == pytest.approx(loss[0], rel=1e-6)
    assert np.allclose(loss, denoising_losses(G, sched, x, timesteps=[1, 5], n_noise=3, seed=7, batch_size=2))
    assert not np.allclose(loss, denoising_losses(G, sched, x, timesteps=[1, 5], n_noise=3, seed=8))
    G.train()
    denoising_losses(G, sched, x[:1], timesteps=[1])
    assert G.training                                                 # its mode is given back
    cond = UNet(1, 8, num_classes=2)
    assert denoising_losses(cond, sched, x, timesteps=[1], labels=[0, 1, 0, 1, 1]).shape == (5,)
    with pytest.raises(ValueError, match=r"must be ints in \[0, 20\)"):
        denoising_losses(G, sched, x, timesteps=[20])
    with pytest.raises(ValueError, match="labels has 2 entries for 5 images"):
        denoising_losses(cond, sched, x, labels=[0, 1])


def test_positive_control_the_attack_finds_the_members_of_an_overfitted_model():
    control = overfit_control(seed=0)                 # 32 phantoms at 16 px, 700 steps: about 25 s on one thread
    result = membership_inference(control.G, control.scheduler, control.members, control.nonmembers)
    assert result["auroc"] >= 0.9, result["auroc"]
    assert result["member_loss"].shape == (32,) and result["nonmember_loss"].shape == (64,)
    assert np.median(result["member_loss"]) < np.median(result["nonmember_loss"])
    # negative control: two sets the model never saw are not told apart (null sd of the AUROC ~0.07)
    unseen = membership_inference(control.G, control.scheduler, control.nonmembers[:32], control.nonmembers[32:])
    assert 0.25 < unseen["auroc"] < 0.75, unseen["auroc"]


def test_closest_training_images_in_pixels_and_features():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(20, 1, 32, 32, generator=g) * 2 - 1
    samples = torch.stack([train[7], train[3].roll(1, dims=-1), torch.rand(1, 32, 32, generator=g) * 2 - 1])
    net = train_feature_net(train, steps=2, batch_size=8, progress=False)
    out = closest_training_images(samples, train, net=net)
    assert out["pixel_index"][0] == 7 and out["pixel_distance"][0] == 0 and out["feature_distance"][0] == 0
    assert out["feature_index"][0] == 7 and out["pixel_index"].dtype == np.int64
    assert out["pixel_distance"][2] > 0.3 and out["feature_net"] == net.name
    with pytest.raises(ValueError, match="one image shape"):
        closest_training_images(samples[:, :, :16, :16], train, net=net)


def test_tpr_at_fpr_flags_the_members_below_the_non_member_quantile():
    from diffgan_lib.eval.privacy import tpr_at_fpr
    nonmember = np.arange(100, dtype=float)             # losses 0..99: the 10 % quantile is 9.9
    member = np.array([0.5, 5.0, 9.8, 10.0, 50.0])
    assert tpr_at_fpr(member, nonmember, 0.1) == pytest.approx(3 / 5)
    assert tpr_at_fpr(member, nonmember, 0.01) == pytest.approx(1 / 5)   # threshold 0.99
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr(member, nonmember, 1.0)


# ----------------------------------------------------------------------------- eval.membership
def _class_mix(n_in=3000, n_out=2000, share_in=0.25, share_out=0.4, member_shift=0.0, seed=0):
    """Losses that depend on the class (class 0 higher and wider), class mixes that differ between the sets."""
    rng = np.random.default_rng(seed)
    y_in, y_out = (rng.random(n_in) >= share_in).astype(int), (rng.random(n_out) >= share_out).astype(int)
    loss = lambda y: np.where(y == 0, 0.15, 0.11) + np.where(y == 0, 0.03, 0.01) * rng.standard_normal(len(y))
    return loss(y_in) - member_shift, loss(y_out), y_in, y_out


def test_class_standardised_puts_every_class_on_mean_0_sd_1():
    from diffgan_lib.eval import class_standardised
    loss_in, loss_out, y_in, y_out = _class_mix()
    z = class_standardised(np.r_[loss_in, loss_out], np.r_[y_in, y_out])
    y = np.r_[y_in, y_out]
    for k in (0, 1):
        assert abs(z[y == k].mean()) < 1e-9 and abs(z[y == k].std() - 1) < 1e-9
    with pytest.raises(ValueError, match="one entry per image"):
        class_standardised([1.0, 2.0], [0])


def test_a_class_mix_fools_the_raw_loss_but_not_the_class_standardised_one():
    from diffgan_lib.eval import attack_stats
    r = attack_stats(*_class_mix())                          # no membership signal at all
    assert r["auroc"] > 0.56                                 # the raw loss "finds" the class mix
    assert abs(r["auroc_standardised"] - 0.5) < 0.03
    assert all(abs(r[f"auroc_class_{k}"] - 0.5) < 0.04 for k in (0, 1))
    leak = attack_stats(*_class_mix(member_shift=0.01, share_out=0.25))
    assert leak["auroc_standardised"] > 0.6 and leak["auroc_class_1"] > 0.7


def test_tpr_at_flags_exactly_k_non_members_and_refuses_what_the_sample_cannot_resolve():
    from diffgan_lib.eval import smallest_fpr, tpr_at
    nonmember = np.arange(1, 101) / 100.0                   # 0.01 ... 1.00
    member = np.array([0.005, 0.015, 0.05, 0.5])
    assert tpr_at(member, nonmember, 0.01) == 0.25           # threshold 0.01: one non-member flagged
    assert tpr_at(member, nonmember, 0.1) == 0.75            # threshold 0.10: ten flagged
    assert smallest_fpr(64) == 1 / 64
    with pytest.raises(ValueError, match="resolve false-positive rates down to 1/64"):
        tpr_at(member, nonmember[:64], 0.01)


def test_membership_report_gives_intervals_and_leaves_out_unresolvable_fprs():
    from diffgan_lib.eval import membership_report
    loss_in, loss_out, y_in, y_out = _class_mix(n_in=300, n_out=64, share_out=0.25, member_shift=0.01)
    r = membership_report(loss_in, loss_out, y_in, y_out, fprs=(0.01, 0.1), n_boot=200)
    assert r["unresolved_fprs"] == [0.01] and "tpr_at_0.01" not in r and r["smallest_fpr"] == 1 / 64
    for key in ("auroc", "auroc_standardised", "tpr_at_0.1"):
        lo, hi = r[key]["ci95"]
        assert lo <= r[key]["value"] <= hi and hi - lo > 0.02
    wide = r["auroc_standardised"]["ci95"]
    big = membership_report(*_class_mix(n_in=3000, n_out=2000, share_out=0.25, member_shift=0.01), n_boot=200)
    narrow = big["auroc_standardised"]["ci95"]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2   # more images, a tighter interval
