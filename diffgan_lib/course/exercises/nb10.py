"""Exercises of notebook 10, usefulness and privacy: ``balanced_accuracy``, ``stratified_attack``, ``class_counts``."""
from __future__ import annotations

import numpy as np
import torch

from ...eval.membership import class_standardised
from ...eval.usefulness import auroc, balanced_accuracy as _library_balanced_accuracy, matched_counts
from . import Exercise

__all__ = ["balanced_accuracy", "stratified_attack", "class_counts"]


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
    hint_text="Look at one class at a time: of the images that truly belong to it, what share did the "
              "classifier get right? Balanced accuracy gives every class the same weight, however many images it has.",
    reference=_balanced_accuracy, probe=lambda fn: fn(*_ba_cases()[0]))


# ----------------------------------------------------------------------------- 2. stratified_attack
def _stratified_attack(loss, labels, is_member):
    loss, labels, is_member = np.asarray(loss, dtype=float), np.asarray(labels), np.asarray(is_member, dtype=bool)
    z = np.empty_like(loss)
    for k in np.unique(labels):
        m = labels == k
        z[m] = (loss[m] - loss[m].mean()) / loss[m].std()       # the loss on its class's own scale
    a, b = z[is_member][:, None], z[~is_member][None, :]       # every member-non-member pair
    return float((a < b).mean() + 0.5 * (a == b).mean())     # a lower loss says "member"; ties count half


def _attack_cases():
    """Losses whose level and spread depend on the class, members slightly lower within each class (case 1), and a
    class mix that differs between members (25 % class 0) and non-members (40 %), like train and test."""
    rng = np.random.default_rng(3)
    cases = []
    for n_in, n_out, shift in ((400, 300, 0.01), (300, 200, 0.0)):
        y = np.r_[(rng.random(n_in) < 0.25), (rng.random(n_out) < 0.4)].astype(int) ^ 1   # 1 = the common class
        member = np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]
        level, spread = np.where(y == 0, 0.15, 0.11), np.where(y == 0, 0.03, 0.01)
        cases.append((level + spread * rng.standard_normal(len(y)) - shift * member, y, member))
    return cases


def _test_stratified(fn):
    for i, (loss, y, member) in enumerate(_attack_cases()):
        got, problem = _number(fn(loss.copy(), y.copy(), member.copy()), "the result")
        if problem:
            return problem
        want = auroc(-class_standardised(loss, y), member)
        if abs(got - want) < 1e-9:
            continue
        if abs(got - (1 - want)) < 1e-9:
            return "the wrong way round: a *lower* loss is the sign of a member, so it should score higher"
        if abs(got - auroc(-loss, member)) < 1e-9:
            return ("that is the AUROC of the raw loss, which still sees the class: the non-members hold more of "
                    "the high-loss class")
        centred = loss - np.array([loss[y == k].mean() for k in (0, 1)])[y]
        if abs(got - auroc(-centred, member)) < 1e-9:
            return "the classes are centred but not on one scale: one class's losses spread three times wider"
        return f"wrong value on case {i + 1}"
    return None


stratified_attack = Exercise(
    "stratified_attack", _test_stratified,
    hint_text="Within one class, how far is an image's loss from that class's typical loss, measured in units "
              "of that class's own spread? Once every loss is on its class's scale, the class can no longer tell "
              "members from non-members. Then the AUROC as in section 3: every member against every "
              "non-member, a lower score counting for the member, a tie one half.",
    reference=_stratified_attack, probe=lambda fn: fn(*_attack_cases()[0]))


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
    hint_text="Start from each class's exact share of the n images (rarely a whole number). Rounding every share "
              "the same way loses or adds images; after rounding down, which classes have the best claim to the "
              "images still missing?",
    reference=_class_counts, probe=lambda fn: fn(*_count_cases()[2]))
