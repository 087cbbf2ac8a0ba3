"""Exercises of notebook 04, the losses: ``d_loss``, ``corrected_fake``, ``frozen_adv_loss``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.discriminator import Discriminator
from ...core.scheduler import DiffusionScheduler
from . import Exercise
from . import close, tensor_problem

__all__ = ["d_loss", "corrected_fake", "frozen_adv_loss"]


class _CountingD(nn.Module):
    """A small seeded discriminator (a 5 x 5 score map at 64 px) that counts its forward calls."""
    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():              # seeded weights, and the caller's random state untouched
            torch.manual_seed(0)
            self.net = Discriminator(1, 8)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _gan_inputs():
    """(D, real, fake, w): the fake comes from a one-weight stand-in generator w, so it carries G's graph."""
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 1, 64, 64, generator=g) * 2 - 1
    w = nn.Parameter(torch.tensor(0.8))
    return _CountingD(), real, w * (torch.rand(3, 1, 64, 64, generator=g) * 2 - 1), w


def _loss_value_problem(out, s_real, s_fake, expected, what):
    """None if ``out`` is ``expected``; else the usual slips with the signs and the averaging, named."""
    if not torch.is_tensor(out) or out.dim() != 0:
        kind = type(out).__name__ if not torch.is_tensor(out) else f"tensor of shape {tuple(out.shape)}"
        return (f"return {what} as a 0-dim tensor (one number that keeps its graph), not a {kind}"
                + (": .item() or float() cut the graph that backward() needs" if isinstance(out, float) else ""))
    if close(out, expected):
        return None
    if s_real is not None and close(out, F.softplus(s_real).mean() + F.softplus(-s_fake).mean()):
        return "the signs are swapped: the loss on a real image must be small when its score is high"
    if s_real is None and close(out, F.softplus(s_fake).mean()):
        return "that is D's loss on a fake; G wants its fake called real: which sign does that take?"
    if close(out, F.softplus(-s_real.mean()) + F.softplus(s_fake.mean()) if s_real is not None
             else F.softplus(-s_fake.mean())):
        return "average the loss of every patch, not the scores before the softplus"
    return tensor_problem(out, expected, what)


# ----------------------------------------------------------------------------- 1. d_loss
def _d_loss(D, real, fake):
    scores = D(torch.cat([real, fake.detach()]))              # one call; the fake cut from G's graph
    s_real, s_fake = scores[: len(real)], scores[len(real):]
    return F.softplus(-s_real).mean() + F.softplus(s_fake).mean()   # averaged over patches and images


def _test_d_loss(fn):
    D, real, fake, w = _gan_inputs()
    out = fn(D, real, fake)
    calls = D.calls
    with torch.no_grad():
        s_real, s_fake = D.net(real), D.net(fake)
    expected = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
    problem = _loss_value_problem(out, s_real, s_fake, expected, "D_loss")
    if problem:
        return problem
    if calls != 1:
        return (f"right value, but D ran {calls} times: score the real and the fake images in one call, on "
                "the batch of both")
    if out.grad_fn is None:
        return "right value, but it has no graph: D cannot learn from it (was it computed under torch.no_grad?)"
    out.backward()
    if w.grad is not None and w.grad.abs().item() > 0:
        return "D's loss sent gradient into the generator: cut the fake from G's graph before D scores it"
    if all(p.grad is None for p in D.parameters()):
        return "D's weights got no gradient from D's loss"
    return None


d_loss = Exercise(
    "d_loss", _test_d_loss,
    hint_text="torch.cat joins tensors along a dimension, and slicing by len(real) splits them again. Which "
              "tensor method returns the same values without the graph that produced them? Each of the two "
              "terms is a mean over a whole score tensor.",
    reference=_d_loss, probe=lambda fn: fn(*_gan_inputs()[:3]),
    solution_note="\nThe library's discriminator_loss does the same (and adds R1 when asked).")


# ----------------------------------------------------------------------------- 2. corrected_fake
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


# ----------------------------------------------------------------------------- 3. frozen_adv_loss
def _frozen_adv_loss(D, fake):
    flags = [p.requires_grad for p in D.parameters()]   # each weight's own setting, to put back after
    for p in D.parameters():
        p.requires_grad_(False)                          # no gradient is kept for D's weights ...
    loss = F.softplus(-D(fake)).mean()                   # ... but it still flows through D to the fake
    for p, flag in zip(D.parameters(), flags):
        p.requires_grad_(flag)
    return loss


def _test_frozen_adv_loss(fn):
    D, _, fake, w = _gan_inputs()
    D.net.model[0].weight.requires_grad_(False)            # one weight frozen before the call: it must stay so
    before = [p.requires_grad for p in D.parameters()]
    with torch.no_grad():
        s_fake = D.net(fake)
    w_ref = nn.Parameter(w.detach().clone())
    (g_ref,) = torch.autograd.grad(F.softplus(-D.net(fake.detach() / w.detach() * w_ref)).mean(), [w_ref])
    loss = fn(D, fake)
    after = [p.requires_grad for p in D.parameters()]
    problem = _loss_value_problem(loss, None, s_fake, F.softplus(-s_fake).mean(), "the generator's loss")
    if problem:
        return problem
    if after != before:
        if not any(after):
            return "D's weights are still frozen after your function: put them back, or D cannot learn in its step"
        return ("a weight of D that was frozen before your call is trainable after it: put back each weight's "
                "own setting, not the same one for all")
    if loss.grad_fn is None:
        return ("no gradient can reach G: keep the path from the fake through D (no torch.no_grad, no detach); "
                "freezing means D's weights keep none of it")
    loss.backward()
    if any(p.grad is not None for p in D.parameters()):
        return "D's weights received gradient from G's loss: switch off their requires_grad before D runs"
    if w.grad is None or not torch.allclose(w.grad, g_ref, rtol=1e-4, atol=1e-7):
        return "G's gradient is not the one that flows through D to the fake"
    return None


frozen_adv_loss = Exercise(
    "frozen_adv_loss", _test_frozen_adv_loss,
    hint_text="requires_grad belongs to each weight of D (D.parameters()), and a list can keep each one's "
              "setting until you need it again. Which term of section 2 is G's, and which sign does it give "
              "D's score?",
    reference=_frozen_adv_loss, probe=lambda fn: fn(*_gan_inputs()[::2]),
    solution_note="\nThe library's generator_adv_loss(D, fake, freeze_D=True) does the same with a context "
                  "manager, which also puts the flags back if D raises.")
