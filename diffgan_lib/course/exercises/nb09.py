"""Exercises of notebook 09, conditional generation: ``guided_prediction``, ``label_dropout``, ``guidance_needed``."""
from __future__ import annotations

import torch

from ...core.guidance import guided_eps
from ...core.unet import UNet
from . import Exercise, Measured, tensor_problem

__all__ = ["guided_prediction", "label_dropout", "guidance_needed"]


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
    hint_text="The 'no class' token is the index G.num_classes. Stack the batch twice (torch.cat), with the "
              "labels in the first half and the token in the second, call G once, split the answer with "
              ".chunk(2), then mix: the unconditional answer plus w times the difference.",
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
    hint_text="One uniform random number per label (torch.rand with the labels' shape); a label is dropped "
              "when its number is below p. torch.where picks, per entry, between the token and the label.",
    reference=_label_dropout, probe=lambda fn: fn(torch.tensor([0, 1, 2]), 0.1, 3))


# ----------------------------------------------------------------------------- 3. guidance_needed
def _measured_answer() -> float:
    """The smallest measured w at which every contrast reaches 90 % (benchmarks/results/guidance.json)."""
    from ..helpers import load_results
    rates = load_results("guidance")["rates"]
    ok = [float(w) for w, r in rates.items() if all(v >= 0.9 for k, v in r.items() if k != "mean")]
    return min(ok)


def _test_needed(answer):
    try:
        w = float(answer)
    except (TypeError, ValueError):
        return "answer with a number: one of the measured guidance scales 0, 1, 3, 5"
    if w not in (0.0, 1.0, 3.0, 5.0):
        return "answer with one of the measured guidance scales 0, 1, 3, 5"
    right = _measured_answer()
    if w < right:
        return f"at w = {w:g} at least one contrast is below 90 %: read its curve, not the mean"
    if w > right:
        return f"a smaller measured scale than {w:g} already brings every contrast to 90 %"
    return None


guidance_needed = Exercise(
    "guidance_needed", _test_needed,
    hint_text="Look for the first w where the lowest of the three curves is above the dashed 90 % line.",
    reference=Measured(_measured_answer),
    solution_note="\n(the plain conditional model, w = 1, leaves some CT requests looking like another contrast; "
                  "guidance pushes them over)")
