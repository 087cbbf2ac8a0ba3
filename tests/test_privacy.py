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
