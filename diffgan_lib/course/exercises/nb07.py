"""Exercises of notebook 07, evaluation: ``frechet_distance`` (FD from two feature sets),
``nearest_train_distance`` and ``copy_scores`` (the memorisation check's two numbers)."""
from __future__ import annotations

import math

import torch

from ...eval import frechet_distance as _library_fd
from . import Exercise

__all__ = ["frechet_distance", "nearest_train_distance", "copy_scores"]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x):
    return x.item() if torch.is_tensor(x) and x.numel() == 1 else x


# ----------------------------------------------------------------------------- 1. frechet_distance
def _frechet(feat_a, feat_b):
    a, b = feat_a.double(), feat_b.double()
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)                      # D x D, over the feature dimensions
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)        # S_a S_b has real eigenvalues >= 0
    return (mean_term + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum()).item()   # tr sqrt(M) = sum sqrt(eig M)


def _fd_inputs():
    """Two feature sets of different size, mean and correlation: (40, 5) and (64, 5)."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(40, 5, generator=g) @ torch.randn(5, 5, generator=g)
    b = torch.randn(64, 5, generator=g) @ torch.randn(5, 5, generator=g) + 0.5
    return a, b


def _fd_variants(a, b):
    """The usual slips, each with what the check says about it."""
    a, b = a.double(), b.double()
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum().item()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    root = lambda m: torch.linalg.eigvals(m).real.clamp(min=0).sqrt().sum().item()   # noqa: E731
    biased = lambda x: torch.cov(x.T, correction=0)                                   # noqa: E731
    ba, bb = biased(a), biased(b)
    return [
        (mean_term, "only the means went in: the covariance terms are missing"),
        (mean_term + (ca.trace() + cb.trace()).item() - root(ca @ cb),
         "the cross term is subtracted twice in the formula: 2 tr((S_a S_b)^(1/2))"),
        (mean_term + (ca.trace() + cb.trace()).item() - 2 * (ca * cb).clamp(min=0).sqrt().trace().item(),
         "a matrix square root is not the square root of each entry: (S_a S_b)^(1/2) is a matrix product first"),
        (mean_term + (ca.trace() + cb.trace()).item() - 2 * (ca.diagonal() * cb.diagonal()).sqrt().sum().item(),
         "that keeps only the variances; the correlations between features count too"),
        (mean_term + (ba.trace() + bb.trace()).item() - 2 * root(ba @ bb),
         "close: the covariance here is the unbiased one (divide by N - 1), as torch.cov and np.cov give it"),
    ]


def _test_fd(fn):
    a, b = _fd_inputs()
    for fa, fb in ((a, b), (a, a.clone())):
        out = _num(fn(fa, fb))
        if not _is_number(out):
            return "return one number (a Python float)"
        expected = _library_fd(fa, fb)
        if math.isclose(out, expected, rel_tol=1e-6, abs_tol=1e-6):
            continue
        if fb is not b:
            return "two identical feature sets must be at distance 0"
        for value, message in _fd_variants(fa, fb):
            if math.isclose(out, value, rel_tol=1e-6, abs_tol=1e-6):
                return message
        return "wrong value: check each of the three terms"
    return None


frechet_distance = Exercise(
    "frechet_distance", _test_fd,
    hint_text="Fit a Gaussian to each set: a mean vector and a D x D covariance (which axis of the (N, D) "
              "tensor holds the samples?). The last term needs the trace of the square root of a matrix "
              "product, and no matrix square root at all: how are the eigenvalues of a matrix's square root "
              "related to the matrix's own eigenvalues? The product is not symmetric, so ask torch.linalg for "
              "the general eigenvalues and keep their real parts.",
    reference=_frechet, probe=lambda fn: fn(*_fd_inputs()),
    solution_note="\nThe library's frechet_distance computes the same trace through the symmetric matrix "
                  "S_a^(1/2) S_b S_a^(1/2), which has the same eigenvalues, in float64.")


# ----------------------------------------------------------------------------- 2. nearest_train_distance
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
    hint_text="Think of each image as one long row of pixels. You need the distance from every sample to every "
              "training image (torch has a function for all pairs at once), then one number per sample, "
              "then a scale that does not grow with the image size.",
    reference=_nearest, probe=lambda fn: fn(*_nearest_inputs()),
    solution_note="\nmemorisation() does the same in chunks (and in features too) for thousands of images.")


# ----------------------------------------------------------------------------- 3. copy_scores
def _copy_scores(d_samples, d_heldout):
    ratio = (d_samples.median() / d_heldout.median()).item()     # ~1 generalises, ~0 copies
    threshold = torch.quantile(d_heldout, 0.05)                   # as close as only 5 % of unseen real images get
    close = (d_samples <= threshold).double().mean().item()       # ~0.05 fresh samples, 1 copies
    return ratio, close


def _copy_inputs():
    """Sample distances with one far outlier and one exactly at the threshold; held-out distances evenly spread."""
    d_h = torch.linspace(0.20, 0.58, 20, dtype=torch.float64)
    threshold = torch.quantile(d_h, 0.05)
    return torch.tensor([0.1, threshold.item(), 0.25, 0.3, 0.32, 0.4, 5.0], dtype=torch.float64), d_h


def _test_copy(fn):
    d_s, d_h = _copy_inputs()
    out = fn(d_s, d_h)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return "return two numbers: (nn_ratio, fraction_close)"
    ratio, frac = (_num(v) for v in out)
    if not (_is_number(ratio) and _is_number(frac)):
        return "return two Python floats"
    want_ratio, want_frac = _copy_scores(d_s, d_h)
    if not math.isclose(ratio, want_ratio, rel_tol=1e-6):
        if math.isclose(ratio, (d_s.mean() / d_h.mean()).item(), rel_tol=1e-6):
            return "nn_ratio: one far-away sample moved your ratio a lot; use a typical value that outliers cannot drag"
        if math.isclose(ratio, 1 / want_ratio, rel_tol=1e-6):
            return "nn_ratio is upside down: the samples' distance over the held-out images'"
        return "nn_ratio: wrong value"
    if not 0 <= frac <= 1:
        return "fraction_close is a share of the samples: a number in [0, 1]"
    if not math.isclose(frac, want_frac, abs_tol=1e-9):
        if math.isclose(frac, want_frac - 1 / len(d_s), abs_tol=1e-9):
            return "fraction_close: a sample exactly at the threshold counts as close (at or below it)"
        return ("fraction_close: wrong value; the threshold is how close the closest 5 % of the held-out images "
                "come, and the answer is the share of samples at least that close")
    return None


copy_scores = Exercise(
    "copy_scores", _test_copy,
    hint_text="Two numbers. The first compares a typical sample distance with a typical held-out distance, in a "
              "way that one far-away sample cannot drag. The second needs a threshold first: the distance that "
              "only the closest 5 % of the unseen real images reach (a percentile); then the share of samples "
              "that are at least that close.",
    reference=_copy_scores, probe=lambda fn: fn(*_copy_inputs()),
    solution_note="\nmemorisation() returns these as nn_ratio and fraction_close (with close_threshold).")
