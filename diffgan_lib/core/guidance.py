"""Classifier-free guidance (Ho & Salimans 2021), in diffusers' convention.

One conditional UNet (``UNet(num_classes=K)``) learns both p(x | class) and p(x): during training
each label is replaced by the "no class" token with probability p (``drop_labels``), so the same
network answers with and without a class. At sampling, guidance scale w mixes the two answers:

    eps = eps_uncond + w * (eps_cond - eps_uncond)

w = 0 is the unconditional model, w = 1 the plain conditional one, w > 1 pushes samples further
towards what distinguishes the class (sharper class features, less variety). Both predictions come
from one network call on the batch [x_t; x_t] with labels [class; no class].
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["drop_labels", "guided_eps", "GuidedModel"]


def drop_labels(labels: torch.Tensor, p: float, num_classes: int, generator: torch.Generator | None = None):
    """labels (B,) int64 with each entry replaced by the "no class" index ``num_classes`` with probability p."""
    if not 0 <= p <= 1:
        raise ValueError(f"label dropout p={p!r} must lie in [0, 1] (0.1 is usual)")
    drop = torch.rand(labels.shape, generator=generator).to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def guided_eps(G: nn.Module, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, w: float) -> torch.Tensor:
    """The guided noise prediction for x_t (B, C, H, W) at t (B,) with labels (B,); one batched call of G."""
    null = torch.full_like(labels, G.num_classes)
    if w == 1:                      # the plain conditional prediction: one evaluation
        return G(x_t, t, labels)
    if w == 0:                      # the unconditional prediction: one evaluation
        return G(x_t, t, null)
    eps_c, eps_u = G(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return eps_u + w * (eps_c - eps_u)


class GuidedModel(nn.Module):
    """G with fixed labels and guidance scale, callable as ``model(x_t, t)``: what the samplers expect."""

    def __init__(self, G: nn.Module, labels: torch.Tensor, w: float):
        super().__init__()
        self.G, self.labels, self.w = G, labels, float(w)
        self.in_ch = G.in_ch

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.dim() == 0 else t
        return guided_eps(self.G, x_t, t, self.labels.to(x_t.device), self.w)
