"""Exercises of notebook 01, the noise scheduler: ``add_noise``, ``betas_from_alpha_hat``,
``snr_crossing``, ``to_model_range``, ``iterate_forward``; each is an :class:`~diffgan_lib.exercises.Exercise`.

The checking helpers ``close`` and ``tensor_problem`` live in the package (``diffgan_lib.exercises``).
"""
from __future__ import annotations

import torch

from ...core.scheduler import DiffusionScheduler
from . import Exercise, close, tensor_problem

__all__ = ["add_noise", "betas_from_alpha_hat", "snr_crossing", "to_model_range", "iterate_forward"]


_SCHED = DiffusionScheduler(1000, device="cpu")


def _noise_inputs():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g)
    return x0, torch.tensor([0, 10, 500, 999]), eps


# ----------------------------------------------------------------------------- 1. add_noise
def _add_noise(x0, t, eps, alpha_hat):
    a_hat = alpha_hat[t].view(-1, 1, 1, 1)          # one alpha_hat per image, broadcast over C, H, W
    return torch.sqrt(a_hat) * x0 + torch.sqrt(1 - a_hat) * eps


def _test_add_noise(fn):
    x0, t, eps = _noise_inputs()
    out = fn(x0, t, eps, _SCHED.alpha_hat)
    expected = _add_noise(x0, t, eps, _SCHED.alpha_hat)
    if close(out, expected):
        return None
    a = _SCHED.alpha_hat[t].view(-1, 1, 1, 1)
    one_step = _add_noise(x0, t, eps, _SCHED.alphas)
    no_sqrt = a * x0 + (1 - a) * eps
    if close(out, one_step):
        return "you used alphas (one step's signal); x_t needs alpha_hat, the product over all steps up to t"
    if close(out, no_sqrt):
        return "the weights need square roots: variances add up, standard deviations do not"
    if close(out, _add_noise(eps, t, x0, _SCHED.alpha_hat)):
        return "x0 and eps are swapped: the signal gets sqrt(alpha_hat), the noise sqrt(1 - alpha_hat)"
    return tensor_problem(out, expected, "x_t") or "wrong values"


add_noise = Exercise(
    "add_noise", _test_add_noise,
    hint_text="alpha_hat[t] holds one number per image, shape (B,), and x0 is (B, C, H, W). Broadcasting "
              "lines shapes up from the right, so the (B,) vector needs three trailing dimensions of size 1 "
              "before it can scale each image. After that, eq. 4 reads the same as for one image.",
    reference=_add_noise, probe=lambda fn: fn(*_noise_inputs()[:3], _SCHED.alpha_hat))


# ----------------------------------------------------------------------------- 2. betas_from_alpha_hat
def _betas_from_alpha_hat(alpha_hat):
    prev = torch.cat([torch.ones(1), alpha_hat[:-1]])   # alpha_hat before step 0 is 1 (no noise yet)
    return 1 - alpha_hat / prev                         # alpha_t = alpha_hat_t / alpha_hat_{t-1}


def _test_betas_from_alpha_hat(fn):
    for kind in ("linear", "cosine"):
        s = DiffusionScheduler(1000, schedule=kind, device="cpu")
        out = fn(s.alpha_hat)
        if close(out, 1 - s.alpha_hat):
            return ("1 - alpha_hat is all the noise up to t; one step's beta_t compares alpha_hat_t "
                    "with alpha_hat_(t-1)")
        if torch.is_tensor(out) and tuple(out.shape) == (999,):
            return "you lost a step: there are T betas; before step 0, alpha_hat is 1"
        problem = tensor_problem(out, s.betas, f"the betas of the {kind} schedule", atol=1e-4)
        if problem:
            return problem
    return None


betas_from_alpha_hat = Exercise(
    "betas_from_alpha_hat", _test_betas_from_alpha_hat,
    hint_text="Divide the recursion by alpha_hat_(t-1): one step's 1 - beta_t is the ratio of two neighbouring "
              "alpha_hats. Step 0 has no neighbour in the tensor; the text above says what to use for it.",
    reference=_betas_from_alpha_hat,
    probe=lambda fn: fn(_SCHED.alpha_hat))


# ----------------------------------------------------------------------------- 3. snr_crossing
def _snr_crossing(alpha_hat):
    snr = alpha_hat / (1 - alpha_hat)
    return int(torch.nonzero(snr < 1)[0])           # the first t where noise outweighs signal


def _test_snr_crossing(fn):
    for kind, T in (("linear", 1000), ("cosine", 1000), ("linear", 200)):
        ah = DiffusionScheduler(T, schedule=kind, device="cpu").alpha_hat
        out = fn(ah)
        if torch.is_tensor(out) and out.numel() == 1:
            out = int(out)
        if not isinstance(out, int):
            return f"return one int (a timestep), not a {type(out).__name__}"
        if out != _snr_crossing(ah):
            near = abs(out - _snr_crossing(ah)) <= 1
            return (f"wrong timestep for the {kind} schedule with T = {T}"
                    + ("; you are off by one: the first t with SNR < 1" if near else ""))
    return None


snr_crossing = Exercise(
    "snr_crossing", _test_snr_crossing,
    hint_text="Compute the SNR of every t at once (one tensor), compare it with 1 to get a boolean mask, and "
              "find the index of the mask's first True. The check wants a plain Python int.",
    reference=_snr_crossing, probe=lambda fn: fn(_SCHED.alpha_hat))


# ----------------------------------------------------------------------------- 4. to_model_range
def _to_model_range(pixels):
    return pixels.float() / 127.5 - 1               # 0 -> -1, 255 -> +1 (ERRATA 9)


def _test_to_model_range(fn):
    pixels = torch.tensor([[0, 64, 128], [191, 254, 255]], dtype=torch.uint8)
    out = fn(pixels)
    if not torch.is_tensor(out) or not out.is_floating_point():
        return "return a floating-point tensor (uint8 arithmetic wraps around)"
    if close(out, pixels.float() / 255):
        return "that is [0, 1]; the noise has mean 0 and unit variance, so stretch the images to [-1, 1]"
    return tensor_problem(out, _to_model_range(pixels), "the scaled image")


to_model_range = Exercise(
    "to_model_range", _test_to_model_range,
    hint_text="Two things: integer arithmetic on uint8 wraps around, so leave the integers first; then find "
              "the straight line through the points (0, -1) and (255, +1).",
    reference=_to_model_range, probe=lambda fn: fn(torch.zeros(2, 2, dtype=torch.uint8)))


# ----------------------------------------------------------------------------- 5. iterate_forward
def _iterate_forward(x0, betas, eps):
    x = x0.clone()
    for s in range(len(eps)):                                # steps 0 .. t, one small noise each
        x = torch.sqrt(1 - betas[s]) * x + torch.sqrt(betas[s]) * eps[s]
    return x


def _iterate_inputs(n=4, t=300):
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 1, 2, 2, generator=g) * 2 - 1, _SCHED.betas, torch.randn(t + 1, n, 1, 2, 2, generator=g)


def _test_iterate(fn):
    x0, betas, eps = _iterate_inputs()
    out = fn(x0, betas, eps)
    expected = _iterate_forward(x0, betas, eps)
    if close(out, expected):
        return None
    if close(out, x0):
        return "x did not change: each step must shrink x by sqrt(1 - beta) and add sqrt(beta) noise"
    if close(out, _iterate_forward(x0, betas, eps[:-1])) or close(out, _iterate_forward(x0, betas, eps[1:])):
        return "one step short: x_t has had the noise of steps 0, 1, ..., t, that is all len(eps) draws"
    if close(out, _iterate_forward(x0, 1 - betas, eps)):
        return "the weights are swapped: the image keeps sqrt(1 - beta), the new noise gets sqrt(beta)"
    return tensor_problem(out, expected, "x_t") or "check each step's two weights"


iterate_forward = Exercise(
    "iterate_forward", _test_iterate,
    hint_text="Keep a running x that starts as a copy of x0. There is one step per noise draw in eps; step s "
              "uses betas[s] and eps[s] in the one-step formula of the text above.",
    reference=_iterate_forward, probe=lambda fn: fn(*_iterate_inputs(t=3)),
    solution_note="\nIts statistics match the one-shot formula (the cell below checks it): that is why training "
                  "can jump straight to x_t.")
