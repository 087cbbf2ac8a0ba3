"""AUROC = P(score of a random positive > score of a random negative), ties counting one half, computed
by ranks (Mann-Whitney U) with no scikit-learn. One function for every AUROC in the course: the TSTR
classifiers' and the membership attack's (``eval``) and a discriminator's held-out AUROC (``engine.onecall``)."""
from __future__ import annotations

import numpy as np

__all__ = ["auroc"]


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` (N,) for binary ``labels`` (N,), positives = 1 / True.

    Rank form of the Mann-Whitney U statistic: with r_i the rank of score i among all N (1-based,
    tied scores sharing the mean of their ranks), U = sum of the positives' ranks - n1 (n1 + 1) / 2
    and AUROC = U / (n1 n0). 1: every positive scores above every negative; 0.5: no better than
    chance (or all scores equal); 0: reversed. ValueError unless both classes are present.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != pos.shape:
        raise ValueError(f"scores ({s.size}) and labels ({pos.size}) must have one entry per example")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf; check what produced them")
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUROC needs both classes, got {n1} positive(s) and {n0} negative(s); test on a set "
                         "that holds both")
    order = np.argsort(s, kind="mergesort")
    _, tie_group, counts = np.unique(s[order], return_inverse=True, return_counts=True)
    last = np.cumsum(counts)                                   # 1-based rank of each tie group's last member
    ranks = np.empty_like(s)
    ranks[order] = (last - (counts - 1) / 2)[tie_group]        # the mean rank of the group
    u = ranks[pos].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))
