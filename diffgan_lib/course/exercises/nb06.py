"""Exercises of notebook 06, sampling: ``ddpm_sample`` (the seed's reverse loop by hand) and
``ddim_step`` (one DDIM step with eta, from x_t and a clipped x0 prediction)."""
from __future__ import annotations

import torch

from ...core.scheduler import DiffusionScheduler
from ...core.unet import UNet
from . import Exercise
from . import close, tensor_problem

__all__ = ["ddpm_sample", "ddim_step"]

_SCHED = DiffusionScheduler(1000, device="cpu")


# ----------------------------------------------------------------------------- 1. ddpm_sample
def _ddpm_sample(G, scheduler, x, noises):
    for t in reversed(range(scheduler.T)):                     # t = T - 1, ..., 0
        a, b, a_hat = scheduler.alphas[t], scheduler.betas[t], scheduler.alpha_hat[t]
        eps = G(x, torch.full((len(x),), t, dtype=torch.long))
        x = (x - b / (1 - a_hat).sqrt() * eps) / a.sqrt()      # eq. 11: the mean of x_{t-1}
        if t > 0:                                              # no fresh noise on the last step
            x = x + b.sqrt() * noises[t]                       # sigma_t^2 = beta_t, the seed's choice
    return x


_SMALL_T = 20


def _ddpm_problem():
    """An untrained tiny UNet (base 8, 8 px), a short schedule (T = 20, betas up to 0.3 so every step
    counts), the start x_{T-1} and one noise per step."""
    torch.manual_seed(0)
    G = UNet(1, 8).eval()
    sched = DiffusionScheduler(_SMALL_T, beta_start=1e-3, beta_end=0.3, device="cpu")
    g = torch.Generator().manual_seed(2)
    return G, sched, torch.randn(2, 1, 8, 8, generator=g), torch.randn(_SMALL_T, 2, 1, 8, 8, generator=g)


def _library_loop(G, sched, x, noises, ts=None, noise_at_0=False, variance_scale=1.0):
    """The library's DDPM steps (``scheduler.step``, what ``sample(sampler="ddpm")`` calls), with the usual
    slips available: another order of t, noise on the last step too, sigma_t = beta_t."""
    for t in ts if ts is not None else reversed(range(sched.T)):
        tt = torch.full((len(x),), t, dtype=torch.long)
        x = sched.step(G(x, tt), tt, x, noise=noises[t] * variance_scale)
        if noise_at_0 and t == 0:
            x = x + sched.betas[0].sqrt() * noises[0]
    return x


def _test_ddpm(fn):
    G, sched, x, noises = _ddpm_problem()
    with torch.no_grad():
        out = fn(G, sched, x.clone(), noises)
        expected = _library_loop(G, sched, x, noises)
        if close(out, expected):
            return None
        if close(out, _library_loop(G, sched, x, noises, noise_at_0=True)):
            return "fresh noise was added at the last step (t = 0) too: the final image gets none"
        if close(out, _library_loop(G, sched, x, torch.zeros_like(noises))):
            return "no fresh noise was added: DDPM adds sigma_t z after every step but the last"
        scale = (sched.betas.sqrt()).view(-1, 1, 1, 1, 1)      # beta_t z in place of sqrt(beta_t) z
        if close(out, _library_loop(G, sched, x, noises * scale)):
            return "sigma_t is a standard deviation: the seed's variance is beta_t, so z is scaled by its square root"
        if close(out, _library_loop(G, sched, x, noises, ts=range(sched.T))):
            return "the reverse process runs from t = T - 1 down to 0, not upwards"
    if not torch.is_tensor(out) or out.shape != expected.shape:
        return tensor_problem(out, expected, "the final x")
    return "the final x has the right shape but wrong values: compare each step with eq. 11 above"


ddpm_sample = Exercise(
    "ddpm_sample", _test_ddpm,
    hint_text="One pass of a loop per timestep, from the noisiest down. In each: ask G for the noise it sees "
              "(it wants t as a tensor of one timestep per image), remove the right share of it and rescale "
              "(eq. 11 above: which schedule values appear there, and at which t?), then add the step's fresh "
              "noise, except on the very last step.",
    reference=_ddpm_sample, probe=lambda fn: fn(*_ddpm_problem()),
    solution_note="\nsample(..., sampler='ddpm') does the same through scheduler.step, drawing the noises from "
                  "its generator; with clip_x0=True the step goes through a clipped x0 instead (eq. 7).")


# ----------------------------------------------------------------------------- 2. ddim_step
def _ddim_step(x_t, eps_pred, alpha_hat_t, alpha_hat_prev, eta, z):
    x0_pred = ((x_t - (1 - alpha_hat_t).sqrt() * eps_pred) / alpha_hat_t.sqrt()).clamp(-1, 1)
    eps = (x_t - alpha_hat_t.sqrt() * x0_pred) / (1 - alpha_hat_t).sqrt()   # the noise x_t and the clipped x0 imply
    sigma = eta * ((1 - alpha_hat_prev) / (1 - alpha_hat_t) * (1 - alpha_hat_t / alpha_hat_prev)).sqrt()
    direction = (1 - alpha_hat_prev - sigma ** 2).sqrt() * eps            # what is left of the noise's variance
    return alpha_hat_prev.sqrt() * x0_pred + direction + sigma * z          # eq. 12: image, direction, fresh noise


_T, _T_PREV = 749, 499          # DDIM-4's second jump


def _ddim_inputs(eta=1.0):
    """The exercise's arguments (x_t, eps_pred, alpha_hat_t, alpha_hat_prev, eta, z): x_t made from an image
    in [-1, 1] by eq. 4, and a noise estimate with an error, so that some pixels of x0_pred leave [-1, 1]."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    eps, err, z = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    x_t, _ = _SCHED.add_noise(x0, _T, eps)
    return x_t, eps + 0.1 * err, _SCHED.alpha_hat[_T], _SCHED.alpha_hat[_T_PREV], eta, z


def _ddim_problem(out, x_t, eps_pred, a, a_prev, eta, z):
    """What is wrong with ``out`` at this eta, if one of the typical mistakes explains it; else None."""
    if torch.is_tensor(out) and out.shape == x_t.shape and torch.isnan(out).any():
        return "the result has NaN values: a square root of a negative number (alpha_hat grows as t falls)"
    raw = (x_t - (1 - a).sqrt() * eps_pred) / a.sqrt()
    x0 = raw.clamp(-1, 1)
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    sigma = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()     # sigma_t at eta = 1
    s = eta * sigma
    if close(out, x0) or close(out, raw):
        return "that is x0_pred itself; the step must move it to the earlier timestep t'"
    if close(out, a_prev.sqrt() * raw + (1 - a_prev - s ** 2).sqrt() * eps_pred + s * z):
        return "x0_pred must be clipped to [-1, 1] (clip_x0=True, section 1)"
    if close(out, a_prev.sqrt() * x0 + (1 - a_prev - s ** 2).sqrt() * eps_pred + s * z):
        return ("x0_pred is clipped, but the direction still uses the network's eps_pred: after clipping, x_t, "
                "x0_pred and the noise no longer satisfy eq. 4 together; which of them may change?")
    image = a_prev.sqrt() * x0
    if close(out, image) or close(out, image + s * z):
        return "the direction term is missing: the state at t' still holds noise, and eps is that noise"
    if close(out, image + (1 - a).sqrt() * eps):
        return "the direction term uses alpha_hat at the *earlier* timestep t'"
    if eta > 0:
        if close(out, image + (1 - a_prev).sqrt() * eps):
            return "that is the deterministic step; with eta > 0, sigma_t is not 0: use it in the step"
        if close(out, image + (1 - a_prev - s ** 2).sqrt() * eps):
            return "with eta > 0 the step must also add fresh noise: sigma_t times the given z"
        if close(out, image + (1 - a_prev).sqrt() * eps + s * z):
            return ("the variances no longer add up to 1 - alpha_hat_prev: the fresh noise takes its share, so "
                    "the eps term must keep only what is left")
        if close(out, image + (1 - a_prev - s ** 4).sqrt() * eps + s ** 2 * z):
            return "sigma_t is a standard deviation: z is scaled by sigma_t, the variances by its square"
    elif close(out, image + (1 - a_prev - sigma ** 2).sqrt() * eps + sigma * z):
        return "at eta = 0 the step must be deterministic: sigma_t grows with eta and is 0 here"
    return None


def _test_ddim_step(fn):
    for eta in (0.0, 1.0):
        x_t, eps, a, a_prev, eta, z = _ddim_inputs(eta)
        expected = _SCHED.ddim_step(eps, _T, _T_PREV, x_t, eta=eta, noise=z, clip_x0=True)   # the library's step
        out = fn(x_t, eps, a, a_prev, eta, z)
        if not close(out, expected):
            problem = (_ddim_problem(out, x_t, eps, a, a_prev, eta, z)
                       or tensor_problem(out, expected, "x_prev", atol=1e-4) or "wrong values")
            return f"at eta = {eta:g}: {problem}"
    return None


ddim_step = Exercise(
    "ddim_step", _test_ddim_step,
    hint_text="Four stages. The clean image that x_t and eps_pred imply (notebook 04 inverted eq. 4), clipped "
              "as sample() does. Then a question: after clipping, do x_t, that image and eps_pred still satisfy "
              "eq. 4 together? If not, which of the three should give way? Then sigma_t from eq. 16; then the "
              "state at t' as the forward process would write it, with the noise's variance 1 - alpha_hat_prev "
              "shared between the old noise and the fresh z.",
    reference=_ddim_step, probe=lambda fn: fn(*_ddim_inputs()),
    solution_note="\nThis is Song et al.'s eq. 12 with eq. 16's sigma_t: DiffusionScheduler.ddim_step with "
                  "clip_x0=True, which sample(sampler='ddim', clip_x0=True) calls at every step.")
