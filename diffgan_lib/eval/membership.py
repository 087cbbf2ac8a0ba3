"""A membership attack whose numbers mean what they say: matched non-members, a class-blind score,
bootstrap intervals and false-positive rates the sample can resolve.

The loss attack (``privacy.membership_inference``) scores each image by the model's denoising loss and
compares members with non-members. If the two sets differ in anything besides membership, the attack
measures that difference instead. Three rules, each a function here:

1. Non-members drawn like the members: for a model trained on a split, another split made the same
   way (PneumoniaMNIST's val, not its test split, whose class mix differs), with the same class counts
   or a class-blind score.
2. A class-blind score: the denoising loss depends on the class of the image (an X-ray with pneumonia is
   easier to denoise than a normal one), so each loss is standardised within its class
   (:func:`class_standardised`); the AUROC per class (:func:`attack_stats`) says the same without any
   standardisation.
3. An uncertainty for every number: a bootstrap that resamples members and non-members within each
   class (:func:`bootstrap_ci`), and a true-positive rate only at a false-positive rate the non-members
   can resolve: with M non-members the smallest non-zero FPR is 1/M (:func:`smallest_fpr`), and an FPR of
   1 % needs at least 100 of them (a few hundred for a usable interval).

Losses: (N,) floats, lower = more member-like. Labels: (N,) class indices.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.auroc import auroc

__all__ = ["class_standardised", "smallest_fpr", "tpr_at", "attack_stats", "bootstrap_ci", "membership_report"]


def _vector(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"{name} must hold at least one finite number")
    return v


def class_standardised(loss, labels) -> np.ndarray:
    """Each loss minus its class's mean loss, divided by its class's standard deviation (over the N given).

    loss (N,), labels (N,) -> (N,) float64. A class whose losses are all equal is only centred.
    """
    loss, labels = _vector(loss, "loss"), np.asarray(labels).reshape(-1)
    if labels.shape != loss.shape:
        raise ValueError(f"labels ({labels.size}) and loss ({loss.size}) need one entry per image")
    z = np.empty_like(loss)
    for k in np.unique(labels):
        m = labels == k
        sd = loss[m].std()
        z[m] = (loss[m] - loss[m].mean()) / (sd if sd > 0 else 1.0)
    return z


def smallest_fpr(n_nonmembers: int) -> float:
    """The smallest non-zero false-positive rate that ``n_nonmembers`` can show: one false alarm, 1 / n."""
    if int(n_nonmembers) < 1:
        raise ValueError(f"n_nonmembers={n_nonmembers!r}: at least one non-member is needed")
    return 1.0 / int(n_nonmembers)


def tpr_at(member_loss, nonmember_loss, fpr: float) -> float:
    """The share of members flagged by the threshold that flags floor(fpr M) of the M non-members.

    An image is flagged when its loss is at or below the k-th lowest non-member loss, k = floor(fpr M),
    so exactly k non-members are flagged (without ties). ValueError when k = 0: M non-members cannot
    resolve an FPR below 1 / M (64 of them cannot show 1 %).
    """
    loss_in, loss_out = _vector(member_loss, "member_loss"), np.sort(_vector(nonmember_loss, "nonmember_loss"))
    if not 0 < fpr < 1:
        raise ValueError(f"fpr={fpr!r} must lie in (0, 1), e.g. 0.01 or 0.1")
    k = math.floor(fpr * len(loss_out) + 1e-9)
    if k < 1:
        raise ValueError(f"{len(loss_out)} non-members resolve false-positive rates down to 1/{len(loss_out)} = "
                         f"{smallest_fpr(len(loss_out)):.2%}, not fpr={fpr:g}: use a larger fpr or more non-members")
    return float((loss_in <= loss_out[k - 1]).mean())


def attack_stats(member_loss, nonmember_loss, member_labels=None, nonmember_labels=None, fprs=(0.1,)) -> dict:
    """The attack's numbers, flat: "auroc" of the raw loss; with labels also "auroc_standardised" (the
    class-standardised loss over members and non-members together) and "auroc_class_K" for each class K;
    "tpr_at_F" for each F in ``fprs`` (on the standardised loss when labels are given)."""
    loss_in, loss_out = _vector(member_loss, "member_loss"), _vector(nonmember_loss, "nonmember_loss")
    is_member = np.r_[np.ones(len(loss_in), bool), np.zeros(len(loss_out), bool)]
    both = np.r_[loss_in, loss_out]
    out = {"auroc": auroc(-both, is_member)}
    if (member_labels is None) != (nonmember_labels is None):
        raise ValueError("give labels for both members and non-members, or for neither")
    if member_labels is not None:
        labels = np.r_[np.asarray(member_labels).reshape(-1), np.asarray(nonmember_labels).reshape(-1)]
        both = class_standardised(both, labels)
        out["auroc_standardised"] = auroc(-both, is_member)
        for k in np.unique(labels):
            m = labels == k
            if is_member[m].all() or not is_member[m].any():
                raise ValueError(f"class {k} has no {'non-' if is_member[m].all() else ''}members: it cannot be compared")
            out[f"auroc_class_{k}"] = auroc(-both[m], is_member[m])
    for f in fprs:
        out[f"tpr_at_{f:g}"] = tpr_at(both[is_member], both[~is_member], f)
    return out


def bootstrap_ci(member_loss, nonmember_loss, member_labels=None, nonmember_labels=None, fprs=(0.1,),
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals of every number of :func:`attack_stats`: {key: [low, high]}.

    Each of ``n_boot`` replicates redraws, with replacement, the members and the non-members of each class
    separately (so the class counts stay fixed) and recomputes the numbers.
    """
    loss_in, loss_out = _vector(member_loss, "member_loss"), _vector(nonmember_loss, "nonmember_loss")
    lab_in = np.zeros(len(loss_in), int) if member_labels is None else np.asarray(member_labels).reshape(-1)
    lab_out = np.zeros(len(loss_out), int) if nonmember_labels is None else np.asarray(nonmember_labels).reshape(-1)
    rng = np.random.default_rng(seed)
    cells_in = [np.flatnonzero(lab_in == k) for k in np.unique(lab_in)]
    cells_out = [np.flatnonzero(lab_out == k) for k in np.unique(lab_out)]
    draws = []
    for _ in range(n_boot):
        i = np.concatenate([rng.choice(c, len(c)) for c in cells_in])
        o = np.concatenate([rng.choice(c, len(c)) for c in cells_out])
        labels = (None, None) if member_labels is None else (lab_in[i], lab_out[o])
        draws.append(attack_stats(loss_in[i], loss_out[o], *labels, fprs=fprs))
    tail = 100 * (1 - level) / 2
    return {k: [float(v) for v in np.percentile([d[k] for d in draws], [tail, 100 - tail])] for k in draws[0]}


def membership_report(member_loss, nonmember_loss, member_labels=None, nonmember_labels=None, fprs=(0.01, 0.1),
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`attack_stats` with 95 % bootstrap intervals: {key: {"value", "ci95"}}, plus "n_members",
    "n_nonmembers", "smallest_fpr" and "unresolved_fprs" (the ``fprs`` the non-members cannot resolve,
    left out)."""
    n_out = len(_vector(nonmember_loss, "nonmember_loss"))
    ok = tuple(f for f in fprs if math.floor(f * n_out + 1e-9) >= 1)
    value = attack_stats(member_loss, nonmember_loss, member_labels, nonmember_labels, ok)
    ci = bootstrap_ci(member_loss, nonmember_loss, member_labels, nonmember_labels, ok, n_boot=n_boot, seed=seed)
    return {**{k: {"value": v, "ci95": ci[k]} for k, v in value.items()},
            "n_members": len(_vector(member_loss, "member_loss")), "n_nonmembers": n_out,
            "smallest_fpr": smallest_fpr(n_out), "unresolved_fprs": [f for f in fprs if f not in ok]}
