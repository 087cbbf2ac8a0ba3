"""The discriminator D: the seed's convolutional critic, which is a PatchGAN (ERRATA 3).

x: (B, C, H, W) in [-1, 1] -> scores (B, 1, H/8 - 3, W/8 - 3), unbounded logits (higher = "real").
Three stride-2 4x4 convolutions take 128 px to 16 px, and the last 4x4 convolution without padding
leaves 13 x 13 scores at 128 px, 5 x 5 at 64 px and 1 x 1 only at 32 px: each score judges one patch,
and the losses average over them. The seed's comment "16x16 -> 1x1" is wrong above 32 px.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Discriminator", "score_map_shape", "receptive_field"]


def score_map_shape(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """Height and width of D's score map for an image of side ``image_size`` (or (H, W)).

    Each 4x4 / stride 2 / padding 1 convolution maps a side s to floor(s / 2); the final 4x4 /
    padding 0 convolution maps s to s - 3. Raises ValueError for images smaller than 32 px.
    """
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    out = []
    for side in hw:
        s = side // 2 // 2 // 2 - 3
        if s < 1:
            raise ValueError(f"image side {side} is too small for the discriminator: it needs at least "
                             "32 px (three halvings to 4 px, then a 4x4 convolution); use 32, 64 or 128")
        out.append(s)
    return tuple(out)


def receptive_field() -> int:
    """Side in pixels of the input patch that one score's convolutions see (46 px here).

    GroupNorm's per-image statistics also carry a weak dependence on the rest of the image.
    """
    rf = 1
    for k, s in reversed([(4, 2), (4, 2), (4, 2), (4, 1)]):
        rf = (rf - 1) * s + k
    return rf


class Discriminator(nn.Module):
    """The seed's discriminator; widths base, 2b, 4b; ``base`` must be a multiple of 8 (GroupNorm(8))."""

    def __init__(self, in_ch: int = 1, base: int = 64):
        super().__init__()
        if not isinstance(base, int) or base < 8 or base % 8:
            raise ValueError(f"base={base!r} must be a positive multiple of 8 (GroupNorm with 8 groups)")
        self.in_ch, self.base = in_ch, base
        self.model = nn.Sequential(
            nn.Conv2d(in_ch, base, 4, stride=2, padding=1),         # H -> H/2
            nn.LeakyReLU(0.2),
            nn.Conv2d(base, base * 2, 4, stride=2, padding=1),      # -> H/4
            nn.GroupNorm(8, base * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(base * 2, base * 4, 4, stride=2, padding=1),  # -> H/8
            nn.GroupNorm(8, base * 4),
            nn.LeakyReLU(0.2),
            nn.Conv2d(base * 4, 1, 4, padding=0),                   # -> H/8 - 3 (13 at 128 px)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_ch, H, W) -> patch scores (B, 1, H/8 - 3, W/8 - 3)."""
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected images (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        score_map_shape(tuple(x.shape[-2:]))   # raises a clear error below 32 px
        return self.model(x)
