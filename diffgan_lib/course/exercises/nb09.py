"""Exercises of notebook 09, conditional generation: ``guided_prediction``, ``label_dropout``, ``guided_ddim``."""
from __future__ import annotations

import torch

from ...core.guidance import GuidedModel, guided_eps
from ...core.scheduler import DiffusionScheduler
from ...core.unet import UNet
from ...sampling.chains import DDIM
from . import Exercise, tensor_problem

__all__ = ["guided_prediction", "label_dropout", "guided_ddim"]


# ----------------------------------------------------------------------------- 1. guided_prediction
def _guided_prediction(G, x_t, t, labels, w):
    null = torch.full_like(labels, G.num_classes)                  # the "no class" token
    both = G(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null]))
    eps_cond, eps_uncond = both.chunk(2)
    return eps_uncond + w * (eps_cond - eps_uncond)


class _Counting(torch.nn.Module):
    """G, counting its calls (the exercise asks for one batched call)."""

    def __init__(self, G):
        super().__init__()
        self.G, self.calls, self.num_classes, self.in_ch = G, 0, G.num_classes, G.in_ch

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.G(*args, **kwargs)


def _guidance_inputs():
    torch.manual_seed(0)
    G = UNet(base=8, num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(4, 1, 16, 16, generator=g)
    return G, x_t, torch.tensor([10, 200, 500, 900]), torch.tensor([0, 1, 2, 1])


@torch.no_grad()
def _test_guided(fn):
    G, x_t, t, labels = _guidance_inputs()
    for w in (3.0, 0.0, 1.0, 7.5):
        counted = _Counting(G)
        out = fn(counted, x_t, t, labels, w)
        problem = tensor_problem(out, guided_eps(G, x_t, t, labels, w), f"the prediction at w = {w}", atol=1e-4)
        if problem:
            if w == 3.0 and torch.is_tensor(out) and out.shape == x_t.shape:
                swapped = guided_eps(G, x_t, t, labels, 1 - w)   # c + w (u - c) = u + (1 - w) (c - u)
                if torch.allclose(out, swapped, atol=1e-4):
                    return "the conditional and the unconditional predictions are swapped"
            return problem
        if w == 3.0 and counted.calls != 1:
            return (f"G was called {counted.calls} times: put x_t twice in one batch (labels, then the 'no class' "
                    "token) and call G once")
    return None


guided_prediction = Exercise(
    "guided_prediction", _test_guided,
    hint_text="One call of G can answer two questions if the batch holds every image twice: which labels must "
              "the second copy carry? After the call, split the answer back into its two halves and combine them "
              "as the formula of this section says.",
    reference=_guided_prediction, probe=lambda fn: fn(*_guidance_inputs(), 3.0))


# ----------------------------------------------------------------------------- 2. label_dropout
def _label_dropout(labels, p, num_classes):
    drop = torch.rand(labels.shape) < p                            # True with probability p
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def _test_dropout(fn):
    torch.manual_seed(0)
    labels = torch.randint(0, 6, (100_000,))
    for p in (0.0, 0.1, 0.5, 1.0):
        out = fn(labels.clone(), p, 6)
        if not torch.is_tensor(out) or out.shape != labels.shape:
            return "return a tensor of the labels' shape"
        if out.dtype != torch.long:
            return f"the result is {out.dtype}; labels stay int64 (torch.long) for the embedding"
        changed = out != labels
        if changed.any() and not (out[changed] == 6).all():
            return "a dropped label must become the 'no class' token, index num_classes (6 here), nothing else"
        rate = changed.float().mean().item()
        if abs(rate - p) > 0.01:
            return f"with p = {p} you dropped {rate:.1%} of the labels"
    return None


label_dropout = Exercise(
    "label_dropout", _test_dropout,
    hint_text="Every label needs its own coin that comes up 'drop' with probability p: how often is a uniform "
              "random number in [0, 1) below p? Then pick, entry by entry, between the token and the label.",
    reference=_label_dropout, probe=lambda fn: fn(torch.tensor([0, 1, 2]), 0.1, 3))


# ----------------------------------------------------------------------------- 3. guided_ddim
def _guided_ddim(G, scheduler, x_T, labels, w, steps):
    ts = scheduler.timesteps_for(steps)                            # descending, from T - 1
    x = x_T
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1              # the last step lands on the clean image
        t_batch = torch.full((len(x),), t, dtype=torch.long)
        eps = guided_eps(G, x, t_batch, labels, w)                 # both predictions, mixed by w
        x = scheduler.ddim_step(eps, t, t_prev, x)                 # eta = 0: deterministic
    return x


def _ddim_inputs():
    torch.manual_seed(0)
    G = UNet(base=8, num_classes=3).eval()
    g = torch.Generator().manual_seed(2)
    return G, DiffusionScheduler(100), torch.randn(3, 1, 16, 16, generator=g), torch.tensor([0, 2, 1])


@torch.no_grad()
def _library_chain(G, scheduler, x_T, labels, w, steps):
    return DDIM(scheduler, steps, eta=0.0).sample(GuidedModel(G, labels, w), x_T)


@torch.no_grad()
def _test_ddim(fn):
    G, scheduler, x_T, labels = _ddim_inputs()
    try:
        out = fn(G, scheduler, x_T.clone(), labels, 3.0, 6)
    except TypeError as err:
        if "Tensor" not in str(err):
            raise
        return f"{err}: G and guided_eps take t as a (B,) int64 tensor, one timestep per image, not a Python int"
    want = _library_chain(G, scheduler, x_T, labels, 3.0, 6)
    problem = tensor_problem(out, want, "the final image", atol=1e-4)
    if not problem:
        return None
    if not torch.is_tensor(out) or out.shape != x_T.shape:
        return problem
    if torch.allclose(out, x_T):
        return "the image did not change: every step must replace x by the next, less noisy state"
    if torch.allclose(out, _library_chain(G, scheduler, x_T, labels, 1.0, 6), atol=1e-4):
        return "the result does not depend on w: use the guided prediction, not the conditional one alone"
    last = scheduler.timesteps_for(6)[-1]
    before_last = {last: []}                                       # the state the final step starts from
    DDIM(scheduler, 6, eta=0.0).sample(GuidedModel(G, labels, 3.0), x_T, record=before_last)
    if torch.allclose(out, before_last[last][0], atol=1e-4):
        return "one step short: the last step must go all the way to the clean image (t_prev = -1)"
    return problem + " (is every step taken from the state the previous one returned, in descending t?)"


guided_ddim = Exercise(
    "guided_ddim", _test_ddim,
    hint_text="The sampler visits the timesteps the scheduler chooses for `steps` steps, from the noisiest down. "
              "At each one the network needs a (B,) tensor of that t; the guided noise estimate then goes into "
              "one deterministic DDIM step to the next visited timestep. What is the 'next' timestep after the "
              "last one?",
    reference=_guided_ddim, probe=lambda fn: fn(*_ddim_inputs(), 3.0, 2))
