"""Exercises of notebook 08, few-step sampling: ``posterior_mean``, ``pair_input``, ``fewstep_chain``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.fewstep import PairDiscriminator, posterior_sample
from ...core.scheduler import DiffusionScheduler
from . import Exercise, close, tensor_problem

__all__ = ["posterior_mean", "pair_input", "fewstep_chain"]

_SCHED = DiffusionScheduler(1000, device="cpu")


# ----------------------------------------------------------------------------- 1. posterior_mean
def _posterior_mean(alpha_hat_t, alpha_hat_next):
    a = alpha_hat_t / alpha_hat_next                          # signal kept from t_next to t
    c_x0 = alpha_hat_next.sqrt() * (1 - a) / (1 - alpha_hat_t)
    c_xt = a.sqrt() * (1 - alpha_hat_next) / (1 - alpha_hat_t)
    return c_x0, c_xt


def _coef_cases():
    return [(_SCHED.alpha_hat[t], _SCHED.alpha_hat[n]) for t, n in ((999, 749), (749, 499), (499, 249), (10, 9))]


def _test_mean(fn):
    g = torch.Generator().manual_seed(3)
    x_t, x0 = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(2))
    for (ah_t, ah_n), (t, n) in zip(_coef_cases(), ((999, 749), (749, 499), (499, 249), (10, 9))):
        out = fn(ah_t, ah_n)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            return "return two things: (c_x0, c_xt)"
        c_x0, c_xt = (torch.as_tensor(v, dtype=torch.float32) for v in out)
        if (c_x0 < 0).any() or (c_xt < 0).any():
            return f"a coefficient is negative at t = {t} -> {n}: both are >= 0"
        if not close(c_x0 * x0 + c_xt * x_t, posterior_sample(_SCHED, x_t, x0, t, n, torch.zeros_like(x_t))):
            swapped = close(c_xt * x0 + c_x0 * x_t, posterior_sample(_SCHED, x_t, x0, t, n, torch.zeros_like(x_t)))
            return (f"the two coefficients are swapped at t = {t} -> {n}" if swapped else
                    f"wrong mean at t = {t} -> {n}; check which of the two images each coefficient multiplies")
    return None


posterior_mean = Exercise(
    "posterior_mean", _test_mean,
    hint_text="Write a = alpha_hat_t / alpha_hat_next (the signal kept between the two levels). For one DDPM "
              "step a is alpha_t, and the two numbers are the coefficients of x0 and x_t in the mean of DDPM's "
              "eq. 7: replace alpha_t by a and alpha_hat_{t-1} by alpha_hat_next.",
    reference=_posterior_mean, probe=lambda fn: fn(*_coef_cases()[0]))


# ----------------------------------------------------------------------------- 2. pair_input
def _pair_input(x_next, x_t, k, n_levels):
    planes = F.one_hot(k, n_levels).float()                     # (B, K): one plane on per sample
    planes = planes[:, :, None, None].expand(-1, -1, *x_t.shape[-2:])
    return torch.cat([x_next, x_t, planes], dim=1)              # (B, 2C + K, S, S)


def _pair_cases():
    g = torch.Generator().manual_seed(4)
    return torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g), torch.tensor([0, 3, 1]), 4


def _test_pair(fn):
    x_next, x_t, k, K = _pair_cases()
    expected = PairDiscriminator(1, 8, K).pair(x_next, x_t, k)
    out = fn(x_next, x_t, k, K)
    if torch.is_tensor(out) and out.shape == expected.shape and not close(out, expected):
        if close(out[:, :2], expected[:, [1, 0]]):
            return "the two states are swapped: the next state comes first, then x_t"
        return "right shape, wrong values: the level planes must be 1 at the sample's level and 0 elsewhere"
    return tensor_problem(out, expected, "the stacked input")


pair_input = Exercise(
    "pair_input", _test_pair,
    hint_text="A discriminator reads only images, so each sample's level k must become K image-sized planes, "
              "all ones in plane k and zeros in the others. First find a way to turn an index into a K-long "
              "vector with a single 1; then make that vector as large as the images without copying values "
              "by hand. The order of the channels matters: the next state, then x_t, then the levels.",
    reference=_pair_input, probe=lambda fn: fn(*_pair_cases()))


# ----------------------------------------------------------------------------- 3. fewstep_chain
def _fewstep_chain(predict_x0, x, levels, noises):
    for k, t in enumerate(levels):
        x0_hat = predict_x0(x, k)                              # the generator's clean image at level k
        if k == len(levels) - 1:
            return x0_hat                                      # the last level outputs x̂0 itself
        x = posterior_sample(_SCHED, x, x0_hat, t, levels[k + 1], noises[k])   # jump to the next level


def _chain_cases():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 4, 4, generator=g)
    noises = [torch.randn(2, 1, 4, 4, generator=g) for _ in range(3)]
    weights = torch.tensor([0.3, 0.5, 0.7, 0.9])

    def predict_x0(x_t, k):                                    # a stand-in generator, different per level
        return (weights[k] * x_t).tanh()
    return predict_x0, x, [999, 749, 499, 249], noises


def _test_chain(fn):
    predict_x0, x, levels, noises = _chain_cases()
    expected = _fewstep_chain(predict_x0, x, levels, noises)
    out = fn(predict_x0, x, levels, noises)
    if torch.is_tensor(out) and out.shape == expected.shape and not close(out, expected):
        return ("right shape, wrong values: predict x̂0 at each level, jump with posterior_sample(scheduler, "
                "x, x0_hat, t, t_next, noise), and return x̂0 (not a noisy state) at the last level")
    return tensor_problem(out, expected, "the final images")


fewstep_chain = Exercise(
    "fewstep_chain", _test_chain,
    hint_text="Loop over the levels with enumerate. At every level but the last, the next state is a draw of "
              "the posterior between this level and the next; the last level has no next one.",
    reference=_fewstep_chain, probe=lambda fn: fn(*_chain_cases()))
