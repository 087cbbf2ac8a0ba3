"""Exercises of notebook 04, the losses: ``d_loss``, ``d_loss_at_chance``, ``corrected_fake``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...core.scheduler import DiffusionScheduler
from . import Exercise
from . import close, tensor_problem

__all__ = ["d_loss", "d_loss_at_chance", "corrected_fake"]


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
    hint_text="Take D's two terms from the list in section 2 (which sign goes with the real scores?). Each is "
              "averaged over every patch score of every image; D_loss combines the two averages.",
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
    hint_text="Put s = 0 into both of D's terms from section 2 and evaluate them (the plot above shows one "
              "of the two). An average of equal numbers is that number.",
    reference=2 * math.log(2),
    solution_note="\n= softplus(-0) + softplus(0) = 2 ln 2: the real and the fake term are both ln 2 = 0.6931.")


# ----------------------------------------------------------------------------- 3. corrected_fake
_SCHED = DiffusionScheduler(1000, device="cpu")


def _corrected_fake(G, x_t, t, alpha_hat):
    a_hat = alpha_hat[t].view(-1, 1, 1, 1)                        # one alpha_hat per image
    eps_pred = G(x_t, t)                                          # 1. the one forward pass
    x0_pred = (x_t - (1 - a_hat).sqrt() * eps_pred) / a_hat.sqrt()   # 2. eq. 4 solved for x0
    return x0_pred.clamp(-1, 1)                                   # 3. an image in the data range


def _inputs(G=None):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([5, 300, 900])
    x_t, _ = _SCHED.add_noise(x0, t, eps)                         # the library noises x0 (notebook 01)
    return G or _G, x_t, t, _SCHED.alpha_hat


class _HalfNoise(torch.nn.Module):
    """A stand-in noise predictor: half of its input, whatever t (enough to check the algebra)."""
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x_t, t):
        self.calls += 1
        return 0.5 * x_t


_G = _HalfNoise()


def _test_corrected_fake(fn):
    G = _HalfNoise()
    _, x_t, t, alpha_hat = _inputs(G)
    out = fn(G, x_t, t, alpha_hat)
    calls, G.calls = G.calls, 0
    expected = _corrected_fake(G, x_t, t, alpha_hat)
    if close(out, expected):
        if calls != 1:
            return (f"right values, but G ran {calls} times: the corrected fake needs one forward pass "
                    "(in training, the one the diffusion loss already made)")
        return None
    a = alpha_hat[t].view(-1, 1, 1, 1)
    e = G(x_t, t)
    if close(out, (x_t - (1 - a).sqrt() * e) / a.sqrt()):
        return "right formula; now clamp it to [-1, 1], the range of real images"
    if close(out, e):
        return "that is G's output, a noise estimate (the seed's mistake): turn it into a clean-image estimate"
    if close(out, x_t) or close(out, x_t.clamp(-1, 1)):
        return "that is the noisy input x_t: remove G's noise estimate from it"
    if close(out, ((x_t - (1 - a) * e) / a).clamp(-1, 1)):
        return "the weights are square roots of alpha_hat and 1 - alpha_hat"
    if close(out, (x_t - (1 - a).sqrt() * e).clamp(-1, 1)):
        return "the noise is removed, but the signal is still scaled down by sqrt(alpha_hat): undo that"
    return tensor_problem(out, expected, "the fake", atol=1e-4)


corrected_fake = Exercise(
    "corrected_fake", _test_corrected_fake,
    hint_text="x_t is given, already noised. Three stages: ask G for the noise in x_t, remove that noise and "
              "undo the signal's scaling (alpha_hat[t] has one value per image: give it the image's four "
              "dimensions), then keep the result in the image range.",
    reference=_corrected_fake, probe=lambda fn: fn(*_inputs()),
    solution_note="\nThe library computes the same in diffusion_forward (out.x0_pred), from the forward pass "
                  "that also gives the diffusion loss.")
