"""Exercises of notebook 04, the losses: ``d_loss``, ``d_loss_at_chance``, ``x0_from_eps``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..scheduler import DiffusionScheduler
from . import Exercise
from . import close, tensor_problem

__all__ = ["d_loss", "d_loss_at_chance", "x0_from_eps"]


# ----------------------------------------------------------------------------- 1. d_loss
def _d_loss(s_real, s_fake):
    return F.softplus(-s_real).mean() + F.softplus(s_fake).mean()   # averaged over patches and images


def _scores():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 1, 5, 5, generator=g) + 1, torch.randn(4, 1, 5, 5, generator=g) - 1


def _test_d_loss(fn):
    s_real, s_fake = _scores()
    out = fn(s_real, s_fake)
    if close(out, F.softplus(s_real).mean() + F.softplus(-s_fake).mean()):
        return "the signs are swapped: the loss on a real image must be small when its score is high"
    if close(out, F.softplus(-s_real.mean()) + F.softplus(s_fake.mean())):
        return "average the loss of every patch, not the scores before the softplus"
    return tensor_problem(out, _d_loss(s_real, s_fake), "D_loss")


d_loss = Exercise(
    "d_loss", _test_d_loss,
    hint_text="Real images should get high scores: penalise them with softplus(-s). Fakes should get low "
              "scores: softplus(+s). Average each over all patches, then add the two.",
    reference=_d_loss, probe=lambda fn: fn(*_scores()))


# ----------------------------------------------------------------------------- 2. d_loss_at_chance
def _test_d_loss_at_chance(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return f"give a number, not a {type(value).__name__}"
    if abs(value - math.log(2)) < 1e-3:
        return "that is one of the two terms; D_loss adds the real and the fake term"
    if abs(value - 2 * math.log(2)) > 1e-3:
        return "not the value of softplus(-0) + softplus(0); evaluate it (4 digits are enough)"
    return None


d_loss_at_chance = Exercise(
    "d_loss_at_chance", _test_d_loss_at_chance,
    hint_text="At chance D outputs s = 0 for every image. softplus(0) = ln(1 + e^0).",
    reference=2 * math.log(2),
    solution_note="\n= softplus(-0) + softplus(0) = 2 ln 2: the real and the fake term are both ln 2 = 0.6931.")


# ----------------------------------------------------------------------------- 3. x0_from_eps
_SCHED = DiffusionScheduler(1000, device="cpu")


def _x0_from_eps(x_t, t, eps, alpha_hat):
    a_hat = alpha_hat[t].view(-1, 1, 1, 1)
    return (x_t - torch.sqrt(1 - a_hat) * eps) / torch.sqrt(a_hat)   # eq. 4 solved for x0


def _inputs():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([5, 300, 900])
    return _SCHED.add_noise(x0, t, eps)[0], t, eps


def _test_x0_from_eps(fn):
    x_t, t, eps = _inputs()
    out = fn(x_t, t, eps, _SCHED.alpha_hat)
    a = _SCHED.alpha_hat[t].view(-1, 1, 1, 1)
    if close(out, (x_t - (1 - a) * eps) / a):
        return "undo x_t = sqrt(a) x0 + sqrt(1 - a) eps: the weights are square roots"
    if close(out, x_t - torch.sqrt(1 - a) * eps):
        return "after removing the noise term, divide by sqrt(alpha_hat) to undo the signal's scaling"
    return tensor_problem(out, _SCHED.predict_x0(x_t, t, eps), "x0", atol=1e-4)


x0_from_eps = Exercise(
    "x0_from_eps", _test_x0_from_eps,
    hint_text="Solve x_t = sqrt(a) x0 + sqrt(1 - a) eps for x0, with a = alpha_hat[t] shaped (B, 1, 1, 1).",
    reference=_x0_from_eps, probe=lambda fn: fn(*_inputs(), _SCHED.alpha_hat))
