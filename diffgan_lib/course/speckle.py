"""Counting speckled samples instead of eyeballing them (notebooks 06 and 07).

A speckled sample is rougher than real images: its neighbouring pixels differ more. ``roughness`` is
that mean absolute difference per image; ``speckled`` flags the samples rougher than every one of a
set of real images, so the count needs no threshold chosen by hand.
"""
from __future__ import annotations

import torch

__all__ = ["roughness", "speckled"]


def roughness(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally neighbouring pixels, per image.

    x: (B, C, H, W) in [-1, 1]. Returns (B,) float: about 0.17 for a 32 px head phantom (its own fine
    noise and dots included), 0 for a flat image, about 1.1 for Gaussian noise of standard deviation 1.
    """
    x = x.detach().float()
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return ((vertical + horizontal) / 2).cpu()


def speckled(samples: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which samples are rougher than the roughest of the ``real`` images (N, C, H, W)."""
    return roughness(samples) > roughness(real).max()
