"""Exercises of notebook 07, evaluation: ``frechet_1d``, ``nearest_train_distance``, ``nn_ratio``,
``fraction_close``."""
from __future__ import annotations

import math

import torch

from . import Exercise

__all__ = ["frechet_1d", "nearest_train_distance", "nn_ratio", "fraction_close"]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x):
    return x.item() if torch.is_tensor(x) and x.numel() == 1 else x


# ----------------------------------------------------------------------------- 1. frechet_1d
def _frechet_1d(mu1, sigma1, mu2, sigma2):
    return (mu1 - mu2) ** 2 + (sigma1 - sigma2) ** 2    # FD of two 1-D Gaussians


def _test_fd(fn):
    cases = [(0.0, 1.0, 0.0, 1.0), (1.0, 1.0, 0.0, 1.0), (0.0, 2.0, 0.0, 1.0), (0.5, 0.3, -1.0, 1.5)]
    for c in cases:
        out = _num(fn(*c))
        if not _is_number(out):
            return "return one number"
        if abs(out - _frechet_1d(*c)) > 1e-6:
            if abs(out - ((c[0] - c[2]) ** 2 + (c[1] ** 2 - c[3] ** 2) ** 2)) < 1e-6:
                return "compare standard deviations, not variances (the trace term is (s1 - s2)^2 in 1-D)"
            return f"wrong value for mu1, sigma1, mu2, sigma2 = {c}"
    return None


frechet_1d = Exercise(
    "frechet_1d", _test_fd,
    hint_text="FD = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)); in one dimension S = sigma^2.",
    reference=_frechet_1d, probe=lambda fn: fn(0.0, 1.0, 0.0, 1.0))


# ----------------------------------------------------------------------------- 2. nn_ratio
def _nn_ratio(d_samples, d_heldout):
    return (d_samples.median() / d_heldout.median()).item()   # ~1 generalises, ~0 copies


def _nn_inputs():
    return torch.tensor([0.2, 0.3, 0.4, 0.9, 1.0]), torch.tensor([0.5, 0.6, 0.8, 1.0])


def _test_ratio(fn):
    d_s, d_h = _nn_inputs()
    out = _num(fn(d_s, d_h))
    if not _is_number(out):
        return "return one number (use .item())"
    if abs(out - _nn_ratio(d_s, d_h)) < 1e-6:
        return None
    if abs(out - (d_s.mean() / d_h.mean()).item()) < 1e-6:
        return "use medians, not means: one far-away outlier should not change the verdict"
    if abs(out - 1 / _nn_ratio(d_s, d_h)) < 1e-6:
        return "the ratio is upside down: samples over held-out"
    return "wrong value"


nn_ratio = Exercise("nn_ratio", _test_ratio,
                    hint_text="The median sample-to-training distance divided by the median held-out-to-"
                              "training distance (torch.median).",
                    reference=_nn_ratio, probe=lambda fn: fn(*_nn_inputs()))


# ----------------------------------------------------------------------------- 3. fraction_close
def _fraction_close(d_samples, d_heldout):
    threshold = torch.quantile(d_heldout, 0.05)              # as close as only 5 % of real images get
    return (d_samples <= threshold).float().mean().item()


def _test_close(fn):
    d_s, d_h = _nn_inputs()
    d_h = torch.linspace(0.25, 1.0, 20)
    out = _num(fn(d_s, d_h))
    if not _is_number(out):
        return "return one number (a fraction in [0, 1])"
    if abs(out - _fraction_close(d_s, d_h)) < 1e-6:
        return None
    if not 0 <= out <= 1:
        return "a fraction lies in [0, 1]: divide the count by the number of samples"
    return "wrong value: the threshold is the 5th percentile (torch.quantile(d_heldout, 0.05))"


fraction_close = Exercise(
    "fraction_close", _test_close,
    hint_text="threshold = torch.quantile(d_heldout, 0.05); then the share of d_samples at or below it.",
    reference=_fraction_close, probe=lambda fn: fn(*_nn_inputs()))


# ----------------------------------------------------------------------------- 4. nearest_train_distance
def _nearest(samples, train):
    s, tr = samples.flatten(1).double(), train.flatten(1).double()   # (n, D) and (m, D)
    d = torch.cdist(s, tr)                                           # all n x m Euclidean distances
    return d.min(dim=1).values / s.shape[1] ** 0.5                  # nearest one, as an RMS pixel distance


def _nearest_inputs():
    g = torch.Generator().manual_seed(3)
    train = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
    samples = torch.cat([train[2:3] + 0.01, torch.rand(2, 1, 4, 4, generator=g) * 2 - 1])
    return samples, train


def _test_nearest(fn):
    samples, train = _nearest_inputs()
    out = fn(samples, train)
    expected = _nearest(samples, train)
    if not torch.is_tensor(out) or out.shape != expected.shape:
        return "return one distance per sample: a 1-D tensor of length n"
    if torch.allclose(out.double(), expected * 16 ** 0.5, atol=1e-6):
        return "that is the Euclidean distance; divide by sqrt(number of pixels) for an RMS distance"
    if torch.allclose(out.double(), torch.cdist(samples.flatten(1).double(), train.flatten(1).double()).max(1).values / 4):
        return "the farthest training image is not the point: take the nearest"
    if not torch.allclose(out.double(), expected, atol=1e-6):
        return "wrong values"
    return None


nearest_train_distance = Exercise(
    "nearest_train_distance", _test_nearest,
    hint_text="Flatten both sets to rows of pixels, compute every sample-to-training distance at once (torch.cdist), "
              "keep the smallest per sample, and make it per-pixel.",
    reference=_nearest, probe=lambda fn: fn(*_nearest_inputs()),
    solution_note="\nmemorisation() does the same in chunks (and in features too) for thousands of images.")
