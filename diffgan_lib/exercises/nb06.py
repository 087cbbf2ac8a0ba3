"""Exercises of notebook 06, sampling: ``ddim_timesteps``, ``to_unit``, ``ddim_step``."""
from __future__ import annotations

import torch

from ..scheduler import DiffusionScheduler
from . import Exercise
from . import close, tensor_problem

__all__ = ["ddim_timesteps", "to_unit", "ddim_step"]

_SCHED = DiffusionScheduler(1000, device="cpu")


# ----------------------------------------------------------------------------- 1. ddim_timesteps
def _ddim_timesteps(T, num_steps):
    return [round(T - i * T / num_steps) - 1 for i in range(num_steps)]   # "trailing": start at T - 1


def _test_ddim(fn):
    for T, n in ((1000, 4), (1000, 10), (1000, 50), (100, 3)):
        out = fn(T, n)
        expected = DiffusionScheduler(T, device="cpu").timesteps_for(n)
        if out is None or list(out) != expected:
            if out is not None and list(out) == expected[::-1]:
                return "right timesteps, wrong order: the reverse process runs from high t down to low t"
            if out is not None and len(list(out)) != n:
                return f"for T = {T} and {n} steps you returned {len(list(out))} timesteps"
            return f"wrong timesteps for T = {T}, {n} steps (the first must be T - 1: pure noise)"
    return None


ddim_timesteps = Exercise(
    "ddim_timesteps", _test_ddim,
    hint_text="Space num_steps points evenly from T down (step T / num_steps), subtract 1 so the first is "
              "T - 1, and round to integers.",
    reference=_ddim_timesteps, probe=lambda fn: fn(1000, 4))


# ----------------------------------------------------------------------------- 2. to_unit
def _to_unit(x):
    return ((x + 1) / 2).clamp(0, 1)     # [-1, 1] -> [0, 1]; clamp what the sampler overshoots


def _unit_inputs():
    return torch.tensor([-1.5, -1.0, 0.0, 0.5, 1.0, 1.2])


def _test_unit(fn):
    x = _unit_inputs()
    out = fn(x)
    if close(out, _to_unit(x)):
        return None
    if torch.is_tensor(out) and close(out, (x + 1) / 2):
        return "right mapping, but samples overshoot [-1, 1]: clamp the result to [0, 1]"
    return tensor_problem(out, _to_unit(x), "the mapped images") or "wrong values"


to_unit = Exercise("to_unit", _test_unit,
                   hint_text="-1 must go to 0 and 1 to 1: a shift and a scale, then clamp.",
                   reference=_to_unit, probe=lambda fn: fn(_unit_inputs()))


# ----------------------------------------------------------------------------- 3. ddim_step
def _ddim_step(x_t, eps_pred, alpha_hat_t, alpha_hat_prev):
    x0_pred = (x_t - (1 - alpha_hat_t).sqrt() * eps_pred) / alpha_hat_t.sqrt()   # 1. the clean-image guess
    direction = (1 - alpha_hat_prev).sqrt() * eps_pred                            # 2. back towards x_t's noise
    return alpha_hat_prev.sqrt() * x0_pred + direction                           # 3. x at the earlier t


def _ddim_inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g),
            _SCHED.alpha_hat[749], _SCHED.alpha_hat[499])


def _test_ddim(fn):
    x_t, eps, a, a_prev = _ddim_inputs()
    out = fn(x_t, eps, a, a_prev)
    expected = _SCHED.ddim_step(eps, 749, 499, x_t)              # the library, eta = 0
    if close(out, expected):
        return None
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    if close(out, x0):
        return "that is the clean-image guess x0_pred; now move it to the earlier timestep"
    if close(out, a_prev.sqrt() * x0):
        return "the noise direction is missing: add sqrt(1 - alpha_hat_prev) * eps_pred"
    if close(out, a_prev.sqrt() * x0 + (1 - a).sqrt() * eps):
        return "the direction term uses alpha_hat at the *earlier* timestep"
    return tensor_problem(out, expected, "x_prev") or "wrong values"


ddim_step = Exercise(
    "ddim_step", _test_ddim,
    hint_text="Two stages: first guess x0 from x_t and the predicted noise; then write the earlier state the way "
              "the forward process would, with that guess as the image and eps_pred as the noise.",
    reference=_ddim_step, probe=lambda fn: fn(*_ddim_inputs()),
    solution_note="\nThis is Song et al.'s eq. 12 with eta = 0: DiffusionScheduler.ddim_step, without clipping.")
