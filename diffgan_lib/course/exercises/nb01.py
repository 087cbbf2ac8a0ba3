"""Exercises of notebook 01, the noise scheduler: ``add_noise``, ``iterate_forward``, ``noisy_batch``,
``betas_from_alpha_hat``, ``cosine_betas``; each is an :class:`~diffgan_lib.exercises.Exercise`.

The checking helpers ``close`` and ``tensor_problem`` live in the package (``diffgan_lib.exercises``).
"""
from __future__ import annotations

import math

import torch

from ...core.scheduler import DiffusionScheduler
from . import Exercise, close, tensor_problem

__all__ = ["add_noise", "iterate_forward", "noisy_batch", "betas_from_alpha_hat", "cosine_betas"]


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


def _eq4_problem(out, x0, t, eps, alpha_hat, alphas):
    """None if ``out`` is eq. 4 of (x0, t, eps); else what is wrong (the usual slips named)."""
    expected = _add_noise(x0, t, eps, alpha_hat)
    if close(out, expected):
        return None
    a = alpha_hat[t].view(-1, 1, 1, 1)
    if close(out, _add_noise(x0, t, eps, alphas)):
        return "you used alphas (one step's signal); x_t needs alpha_hat, the product over all steps up to t"
    if close(out, a * x0 + (1 - a) * eps):
        return "the weights need square roots: variances add up, standard deviations do not"
    if close(out, _add_noise(eps, t, x0, alpha_hat)):
        return "x0 and eps are swapped: the signal gets sqrt(alpha_hat), the noise sqrt(1 - alpha_hat)"
    return tensor_problem(out, expected, "x_t") or "wrong values"


def _test_add_noise(fn):
    x0, t, eps = _noise_inputs()
    return _eq4_problem(fn(x0, t, eps, _SCHED.alpha_hat), x0, t, eps, _SCHED.alpha_hat, _SCHED.alphas)


add_noise = Exercise(
    "add_noise", _test_add_noise,
    hint_text="alpha_hat[t] holds one number per image, shape (B,), and x0 is (B, C, H, W). Broadcasting "
              "lines shapes up from the right, so the (B,) vector needs three trailing dimensions of size 1 "
              "before it can scale each image. After that, eq. 4 reads the same as for one image.",
    reference=_add_noise, probe=lambda fn: fn(*_noise_inputs()[:3], _SCHED.alpha_hat))


# ----------------------------------------------------------------------------- 2. iterate_forward
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


# ----------------------------------------------------------------------------- 3. noisy_batch
def _noisy_batch(x0, alpha_hat, generator):
    t = torch.randint(0, len(alpha_hat), (len(x0),), generator=generator)   # its own t per image, 0 .. T-1
    eps = torch.randn(x0.shape, generator=generator)                        # its own noise per pixel
    a_hat = alpha_hat[t].view(-1, 1, 1, 1)
    return a_hat.sqrt() * x0 + (1 - a_hat).sqrt() * eps, t, eps


def _batch_x0(n=20_000):
    return torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _t_problem(t, n, T):
    """What is wrong with the timesteps of a batch of n images for a schedule of T steps (or None)."""
    if not torch.is_tensor(t) or t.dtype != torch.int64:
        return "t must be an int64 tensor (timesteps index alpha_hat)"
    if tuple(t.shape) != (n,):
        return f"t has shape {tuple(t.shape)}; a batch of {n} images needs shape ({n},): one t per image"
    if int(t.min()) < 0 or int(t.max()) > T - 1:
        return f"t reached {int(t.max())} with T = {T}: timesteps run 0 .. T-1 (section 4)"
    if int(t.min()) != 0 or int(t.max()) != T - 1:
        return (f"in {n} draws with T = {T}, t ran from {int(t.min())} to {int(t.max())}: every timestep "
                "0 .. T-1 must be possible (which end does your range leave out?)")
    if abs((t < T / 2).float().mean().item() - 0.5) > 0.02:
        return "t is not uniform over 0 .. T-1: every timestep must be equally likely"
    return None


def _test_noisy_batch(fn):
    x0 = _batch_x0()
    for sched in (_SCHED, DiffusionScheduler(50, schedule="cosine", device="cpu")):
        out = fn(x0, sched.alpha_hat, torch.Generator().manual_seed(0))
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            return "return three things: (x_t, t, eps)"
        x_t, t, eps = out
        problem = _t_problem(t, len(x0), sched.T)
        if problem:
            return problem
        if not torch.is_tensor(eps) or tuple(eps.shape) != tuple(x0.shape):
            return "eps must be a tensor shaped like x0: one noise value per pixel"
        if abs(eps.mean().item()) > 0.02 or abs(eps.std().item() - 1) > 0.02:
            return (f"eps has mean {eps.mean():.2f} and sd {eps.std():.2f}; the noise must be standard normal "
                    "(mean 0, sd 1)")
        problem = _eq4_problem(x_t, x0, t, eps, sched.alpha_hat, sched.alphas)
        if problem:
            return problem + " (x_t must be eq. 4 of the t and eps you return)"
    first, again, other = (fn(x0, _SCHED.alpha_hat, torch.Generator().manual_seed(seed)) for seed in (0, 0, 1))
    if not (torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])):
        return "the same seed gave another batch: draw t and eps from the generator you are given"
    if torch.equal(other[1], again[1]) or torch.equal(other[2], again[2]):
        return "another seed gave the same draws: draw t and eps from the generator you are given"
    return None


noisy_batch = Exercise(
    "noisy_batch", _test_noisy_batch,
    hint_text="Two draws and a formula. How many timesteps does alpha_hat hold, and does torch.randint "
              "include its upper bound? Both random functions take generator=...; the noise is shaped like "
              "x0. Your add_noise above does the rest.",
    reference=_noisy_batch, probe=lambda fn: fn(_batch_x0(8), _SCHED.alpha_hat, torch.Generator().manual_seed(0)),
    solution_note="\nThis is the first half of every training step: the library's diffusion_loss draws t and "
                  "eps the same way and asks the network for eps back.")


# ----------------------------------------------------------------------------- 4. betas_from_alpha_hat
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
    hint_text="Solve the recursion above for beta_t: which two entries of alpha_hat does it need? Do it for all "
              "t at once with two shifted views of the tensor. Step 0 has no neighbour in the tensor; the text "
              "above says what to use for it.",
    reference=_betas_from_alpha_hat,
    probe=lambda fn: fn(_SCHED.alpha_hat))


# ----------------------------------------------------------------------------- 5. cosine_betas
def _cosine_betas(T, s=0.008):
    u = torch.arange(T + 1, dtype=torch.float64) / T                # f at 0, 1/T, ..., 1: T + 1 points
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    alpha_hat = f / f[0]                                            # alpha_hat_t = f(t + 1) / f(0) is [1:]
    betas = 1 - alpha_hat[1:] / alpha_hat[:-1]                      # one step's share, as in exercise 4
    return betas.clamp(max=0.999).float()                           # the last step would be 1: cap it


def _betas_close(out, expected):
    return (torch.is_tensor(out) and out.shape == expected.shape
            and torch.allclose(out.double(), expected.double(), rtol=2e-3, atol=1e-6))


def _test_cosine_betas(fn):
    for T in (1000, 200, 10):
        expected = DiffusionScheduler(T, schedule="cosine", device="cpu").betas
        out = fn(T)
        if not torch.is_tensor(out):
            return f"return a tensor of T betas, not a {type(out).__name__}"
        if out.dim() != 1 or len(out) != T:
            return (f"for T = {T} you returned shape {tuple(out.shape)}: there are exactly T betas, "
                    "and they need f at T + 1 points")
        if _betas_close(out, torch.cumprod(1 - expected.double(), 0)):
            return "those are the alpha_hats: turn them into betas, as in exercise 4"
        if out.max().item() > 0.999 + 1e-6:
            return f"a beta of {out.max().item():.4f}: cap every beta at 0.999 (the text above says so)"
        if out[0].abs().item() < 1e-9:
            return ("beta_0 is 0: step 0 already adds a little noise (alpha_hat_0 = f(1) / f(0), not "
                    "f(0) / f(0))")
        if not _betas_close(out, expected):
            return f"wrong values for T = {T} (compare your alpha_hat with the formula at t = 0 and t = T - 1)"
    return None


cosine_betas = Exercise(
    "cosine_betas", _test_cosine_betas,
    hint_text="Evaluate f once on a tensor of all the points you need (how many for T alpha_hats?), turn it "
              "into alpha_hats with the formula above, then into betas the way exercise 4 did. Compute in "
              "float64, and look at the last beta before you return.",
    reference=_cosine_betas, probe=lambda fn: fn(10),
    solution_note="\nThe library's DiffusionScheduler(schedule='cosine') computes the same betas; its "
                  "alpha_hat is their cumulative product, so capping the last beta changes only alpha_hat[T-1].")
