"""Exercises of notebook 10, usefulness and privacy: ``balanced_accuracy``, ``attack_auroc``, ``tpr_at_low_fpr``."""
from __future__ import annotations

import numpy as np

from ..privacy import tpr_at_fpr
from ..usefulness import auroc, balanced_accuracy as _library_balanced_accuracy
from . import Exercise

__all__ = ["balanced_accuracy", "attack_auroc", "tpr_at_low_fpr"]


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


# ----------------------------------------------------------------------------- 3. tpr_at_low_fpr
def _tpr_at_low_fpr(member_loss, nonmember_loss, fpr):
    threshold = np.quantile(nonmember_loss, fpr)          # flags a share fpr of the non-members
    return float((np.asarray(member_loss) < threshold).mean())


def _test_tpr(fn):
    rng = np.random.default_rng(2)
    m, n = rng.normal(0.8, 0.2, 400), rng.normal(1.0, 0.2, 1000)
    for fpr in (0.1, 0.01, 0.3):
        got, problem = _number(fn(m.copy(), n.copy(), fpr), "the result")
        if problem:
            return problem
        want = tpr_at_fpr(m, n, fpr)
        if abs(got - want) > 2 / len(m):      # other quantile conventions move the threshold a hair
            if abs(got - tpr_at_fpr(m, n, 1 - fpr)) <= 2 / len(m):
                return (f"at fpr = {fpr} your threshold flags {1 - fpr:.0%} of the non-members, not {fpr:.0%}: "
                        "the members are the *low* losses")
            return f"wrong value at fpr = {fpr}"
    return None


tpr_at_low_fpr = Exercise(
    "tpr_at_low_fpr", _test_tpr,
    hint_text="Choose the loss threshold below which only a share fpr of the non-members fall (a quantile), "
              "then report the share of members below it.",
    reference=_tpr_at_low_fpr, probe=lambda fn: fn(*_loss_cases()[0], 0.1))
