"""Exercises of notebook 06, sampling: ``ddim_timesteps``, ``to_unit``, ``ddim_step``."""
from __future__ import annotations

import torch

from ...core.scheduler import DiffusionScheduler
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
def _ddim_step(x0_pred, eps_pred, alpha_hat_t, alpha_hat_prev, eta, z):
    sigma = eta * ((1 - alpha_hat_prev) / (1 - alpha_hat_t)).sqrt() * (1 - alpha_hat_t / alpha_hat_prev).sqrt()
    direction = (1 - alpha_hat_prev - sigma ** 2).sqrt() * eps_pred   # what is left of the noise's variance
    return alpha_hat_prev.sqrt() * x0_pred + direction + sigma * z    # eq. 12: image, direction, fresh noise


_T, _T_PREV = 749, 499          # DDIM-4's second jump


def _ddim_state():
    """x_t, eps_pred and z at t = _T, and x0_pred from the library's predict_x0 (as the notebook's cell does)."""
    g = torch.Generator().manual_seed(1)
    x_t, eps, z = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    return x_t, eps, z, _SCHED.predict_x0(x_t, _T, eps)


def _ddim_inputs(eta=1.0):
    """The exercise's arguments: (x0_pred, eps_pred, alpha_hat_t, alpha_hat_prev, eta, z)."""
    _, eps, z, x0_pred = _ddim_state()
    return x0_pred, eps, _SCHED.alpha_hat[_T], _SCHED.alpha_hat[_T_PREV], eta, z


def _ddim_problem(out, x0, eps, a, a_prev, eta, z):
    """What is wrong with ``out`` at this eta, if one of the typical mistakes explains it; else None."""
    if torch.is_tensor(out) and out.shape == x0.shape and torch.isnan(out).any():
        return "the result has NaN values: a square root of a negative number (alpha_hat grows as t falls)"
    sigma = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()   # sigma_t at eta = 1
    image = a_prev.sqrt() * x0
    if close(out, x0):
        return "that is x0_pred itself; the step must move it to the earlier timestep t'"
    if close(out, image) or close(out, image + eta * sigma * z):
        return "the direction term is missing: the state at t' still holds noise, and eps_pred is that noise"
    if close(out, image + (1 - a).sqrt() * eps):
        return "the direction term uses alpha_hat at the *earlier* timestep t'"
    if eta > 0:
        if close(out, image + (1 - a_prev).sqrt() * eps):
            return "that is the deterministic step; with eta > 0, sigma_t is not 0: use it in the step"
        if close(out, image + (1 - a_prev - eta * sigma ** 2).sqrt() * eps):
            return "with eta > 0 the step must also add fresh noise: sigma_t times the given z"
        if close(out, image + (1 - a_prev).sqrt() * eps + eta * sigma * z):
            return ("the variances no longer add up to 1 - alpha_hat_prev: the fresh noise takes its share, so "
                    "the eps_pred term must keep only what is left")
        if close(out, image + (1 - a_prev - eta * sigma ** 4).sqrt() * eps + eta * sigma ** 2 * z):
            return "sigma_t is a standard deviation: z is scaled by sigma_t, the variances by its square"
    else:
        if close(out, image + (1 - a_prev - sigma ** 2).sqrt() * eps + sigma * z):
            return "at eta = 0 the step must be deterministic: sigma_t grows with eta and is 0 here"
    return None


def _test_ddim_step(fn):
    for eta in (0.0, 1.0):
        x_t = _ddim_state()[0]
        x0, eps, a, a_prev, eta, z = _ddim_inputs(eta)
        expected = _SCHED.ddim_step(eps, _T, _T_PREV, x_t, eta=eta, noise=z)   # the library's own step
        out = fn(x0, eps, a, a_prev, eta, z)
        if not close(out, expected):
            problem = (_ddim_problem(out, x0, eps, a, a_prev, eta, z)
                       or tensor_problem(out, expected, "x_prev", atol=1e-4) or "wrong values")
            return f"at eta = {eta:g}: {problem}"
    return None


ddim_step = Exercise(
    "ddim_step", _test_ddim_step,
    hint_text="Three stages: sigma_t from eq. 16 above (two square roots and eta); then the state at t' as the "
              "forward process would write it, x0_pred for the image and eps_pred for the noise, except that "
              "the noise's variance 1 - alpha_hat_prev is now shared with the fresh noise; then add the fresh "
              "noise, z scaled to standard deviation sigma_t.",
    reference=_ddim_step, probe=lambda fn: fn(*_ddim_inputs()),
    solution_note="\nThis is Song et al.'s eq. 12 with eq. 16's sigma_t: DiffusionScheduler.ddim_step, which the "
                  "samplers call at every step (here without clipping x0_pred).")
