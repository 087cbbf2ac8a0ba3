"""Exercises of notebook 10, usefulness and privacy: ``balanced_accuracy``, ``attack_auroc``, ``class_counts``."""
from __future__ import annotations

import numpy as np
import torch

from ...eval.usefulness import auroc, balanced_accuracy as _library_balanced_accuracy, matched_counts
from . import Exercise

__all__ = ["balanced_accuracy", "attack_auroc", "class_counts"]


def _number(out, what):
    try:
        return float(out), None
    except (TypeError, ValueError):
        return None, f"{what} is a {type(out).__name__}; return one number"


# ----------------------------------------------------------------------------- 1. balanced_accuracy
def _balanced_accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [(y_pred[y_true == k] == k).mean() for k in np.unique(y_true)]   # per-class recall
    return float(np.mean(recalls))


def _ba_cases():
    rng = np.random.default_rng(0)
    y3 = rng.integers(0, 3, 200)
    noisy3 = np.where(rng.random(200) < 0.3, rng.integers(0, 3, 200), y3)
    skewed = np.r_[np.zeros(25, int), np.ones(75, int)]                 # 1 : 3, like PneumoniaMNIST
    return [(skewed, np.ones(100, int)), (skewed, np.r_[np.zeros(20, int), np.ones(5, int), np.ones(75, int)]),
            (y3, noisy3)]


def _test_ba(fn):
    for i, (y, p) in enumerate(_ba_cases()):
        got, problem = _number(fn(y.copy(), p.copy()), "the result")
        if problem:
            return problem
        want = _library_balanced_accuracy(y, p)
        if abs(got - want) > 1e-9:
            if abs(got - float((y == p).mean())) < 1e-9:
                return ("that is the plain accuracy: on a set with three times more pneumonia than normal, "
                        "'always pneumonia' would score 0.75")
            return f"wrong value on case {i + 1} ({len(np.unique(y))} classes)"
    return None


balanced_accuracy = Exercise(
    "balanced_accuracy", _test_ba,
    hint_text="For each class that occurs in y_true: among the images of that class, the share predicted as "
              "that class (its recall). Then the plain mean of those shares.",
    reference=_balanced_accuracy, probe=lambda fn: fn(*_ba_cases()[0]))


# ----------------------------------------------------------------------------- 2. attack_auroc
def _attack_auroc(member_loss, nonmember_loss):
    a = np.asarray(member_loss)[:, None]                   # (N, 1)
    b = np.asarray(nonmember_loss)[None, :]                # (1, M): every member-non-member pair
    return float((a < b).mean() + 0.5 * (a == b).mean())   # a lower loss says "member"; ties count half


def _loss_cases():
    rng = np.random.default_rng(1)
    return [(rng.normal(0.9, 0.2, 50), rng.normal(1.0, 0.2, 70)),
            (np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])),        # ties
            (rng.normal(0.5, 0.1, 30), rng.normal(1.0, 0.1, 40))]


def _test_auroc(fn):
    for i, (m, n) in enumerate(_loss_cases()):
        got, problem = _number(fn(m.copy(), n.copy()), "the result")
        if problem:
            return problem
        is_member = np.r_[np.ones(len(m), bool), np.zeros(len(n), bool)]
        want = auroc(-np.r_[m, n], is_member)
        if abs(got - want) > 1e-9:
            if abs(got - (1 - want)) < 1e-9:
                return "the wrong way round: a *lower* loss is the sign of a member, so it should score higher"
            if i == 1:
                return "wrong value when some losses are equal: a tie counts one half"
            return f"wrong value on case {i + 1}"
    return None


attack_auroc = Exercise(
    "attack_auroc", _test_auroc,
    hint_text="AUROC is the probability that a random member looks more like a member than a random "
              "non-member: compare every member loss with every non-member loss (broadcasting a column "
              "against a row), count 'lower' as 1 and 'equal' as 1/2, and take the mean.",
    reference=_attack_auroc, probe=lambda fn: fn(*_loss_cases()[0]))


# ----------------------------------------------------------------------------- 3. class_counts
def _class_counts(real_y, n):
    shares = np.bincount(np.asarray(real_y)) / len(real_y) * n   # each class's exact share of the n images
    counts = np.floor(shares).astype(int)
    for k in np.argsort(-(shares - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1                                             # leftovers to the largest remainders
    return [int(c) for c in counts]


def _count_cases():
    return [(np.r_[np.zeros(1214, int), np.ones(3494, int)], 64), (np.r_[np.zeros(1214, int), np.ones(3494, int)], 4708),
            (np.array([0, 1, 1, 2, 2, 2]), 5), (np.array([0, 0, 1, 1, 2, 2]), 4), (np.array([1, 0, 1, 1]), 7)]


def _test_counts(fn):
    for y, n in _count_cases():
        out = fn(y.copy(), n)
        try:
            got = [int(v) for v in out]
        except (TypeError, ValueError):
            return "return one whole number per class, as a list"
        want = matched_counts(torch.as_tensor(y), n)
        if len(got) != len(want):
            return f"{len(got)} counts for {len(want)} classes (classes 0 .. {len(want) - 1})"
        if sum(got) != n:
            return f"the counts add up to {sum(got)}, not n = {n}: rounding each share loses or adds images"
        if got != want:
            return f"wrong counts for n = {n}: give the leftover images to the largest fractional parts"
    return None


class_counts = Exercise(
    "class_counts", _test_counts,
    hint_text="Class k's exact share is n times its fraction of real_y, usually not a whole number. Round every "
              "share down, then hand the images still missing, one each, to the classes that lost most in the "
              "rounding.",
    reference=_class_counts, probe=lambda fn: fn(*_count_cases()[2]))
