"""Exponential moving average of the generator's weights (ERRATA 12).

theta_ema <- d * theta_ema + (1 - d) * theta after every optimiser step of G, with the warm-up
d = min(decay, (1 + step) / (10 + step)) used by diffusers' ``EMAModel``: without it a 0.999
average would still be mostly the random initial weights after a few hundred steps, which is
all a CPU run makes. Buffers (none in the UNet) are copied. Samples come from the EMA copy.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["EMA"]


class EMA:
    """An averaged copy of ``model`` (``self.module``, eval mode, no gradients).

    Args:
        model: the network being trained (not a ``torch.compile`` wrapper: pass ``model._orig_mod``).
        decay: the long-run decay d in [0, 1); 0.999 is usual for diffusion models.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay} must lie in [0, 1); 0.999 is usual")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self, step: int) -> float:
        """d at ``step`` (0-based count of G updates done before this one)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights: ema = d * ema + (1 - d) * model."""
        d = self.current_decay(step)
        ema_p = [p for p in self.module.parameters()]
        new_p = [p.detach().to(q.dtype) for p, q in zip(model.parameters(), ema_p)]
        torch._foreach_lerp_(ema_p, new_p, 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
