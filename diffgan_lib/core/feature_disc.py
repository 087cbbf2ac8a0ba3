"""A discriminator that learns: small trainable heads on the frozen teacher UNet's own features.

A PatchGAN trained from scratch for a few hundred steps stayed at chance in the course's first few-step
generator (its held-out AUROC 0.51-0.53). The methods that make one-call generators as good as their
teachers (LADD, SiDA, DMD2) read images through the pretrained diffusion network instead, which already
knows what X-rays look like at every noise level. Here:

1. the image x (real, or G's) is re-noised to a random level s in [0, s_max): x_s = add_noise(x, s), so D
   sees what the teacher sees and judges coarse structure at large s, texture at small s;
2. the teacher's encoder (``UNet.encode``, frozen) gives 4 feature maps of x_s (sides S .. S/8);
3. a head per map: conv3x3 (stride 2 above 8 px) -> LeakyReLU -> a per-position logit, a 1x1 convolution
   plus a projection on an embedding of s, averaged over positions; no normalisation, which would hide
   the brightness the GroupNorm-ed encoder already removes;
4. a stats head: an MLP on what the encoder cannot see, x_s's mean, standard deviation and 4x4 average
   pooling, projected on s's embedding;
5. D(x, s) = the sum of the 5 logits, (B,). The gradient reaches G through the frozen encoder.

Only the heads train and are saved; the encoder is rebuilt from the teacher.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet import timestep_embedding

__all__ = ["FeatureDiscriminator", "pixel_stats"]


class _Head(nn.Module):
    def __init__(self, c_in: int, size: int, width: int, sdim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, width, 3, stride=2 if size > 8 else 1, padding=1)
        self.out, self.proj, self.width = nn.Conv2d(width, 1, 1), nn.Linear(sdim, width), width

    def forward(self, f: torch.Tensor, s_emb: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv(f), 0.2)
        logit = self.out(h) + (h * self.proj(s_emb)[:, :, None, None]).sum(1, keepdim=True) / math.sqrt(self.width)
        return logit.mean((1, 2, 3))


def pixel_stats(x: torch.Tensor) -> torch.Tensor:
    """(B, 2 + 16 C): each image's mean and standard deviation, and its 4x4 average-pooled self."""
    return torch.cat([x.mean((1, 2, 3))[:, None], x.std((1, 2, 3))[:, None], F.adaptive_avg_pool2d(x, 4).flatten(1)], 1)


class _StatsHead(nn.Module):
    def __init__(self, n_in: int, width: int, sdim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_in, width), nn.LeakyReLU(0.2), nn.Linear(width, width), nn.LeakyReLU(0.2))
        self.out, self.proj, self.width = nn.Linear(width, 1), nn.Linear(sdim, width), width

    def forward(self, x_s: torch.Tensor, s_emb: torch.Tensor) -> torch.Tensor:
        h = self.mlp(pixel_stats(x_s))
        return (self.out(h) + (h * self.proj(s_emb)).sum(1, keepdim=True) / math.sqrt(self.width))[:, 0]


class Heads(nn.Module):
    """The trainable part: one head per encoder scale, the stats head, and the embedding of s."""

    def __init__(self, in_ch: int, base: int, image_size: int, width: int = 64, sdim: int = 64):
        super().__init__()
        self.sdim = sdim
        self.s_mlp = nn.Sequential(nn.Linear(sdim, sdim), nn.SiLU(), nn.Linear(sdim, sdim))
        self.scales = nn.ModuleList([_Head(base * m, image_size // 2 ** i, width, sdim)
                                     for i, m in enumerate((1, 2, 4, 8))])
        self.stats = _StatsHead(2 + 16 * in_ch, width, sdim)

    def forward(self, feats, s: torch.Tensor, x_s: torch.Tensor, per_scale: bool = False) -> torch.Tensor:
        e = self.s_mlp(timestep_embedding(s, self.sdim))
        logits = [h(f, e) for h, f in zip(self.scales, feats)] + [self.stats(x_s, e)]
        return torch.stack(logits, 1) if per_scale else sum(logits)


class FeatureDiscriminator(nn.Module):
    """D(x, s): trainable ``heads`` on a frozen copy of ``teacher``'s encoder (module docstring).

    x: (B, C, S, S) clean images in [-1, 1]; s: (B,) int64 levels; ``noise``: the noise that re-noises them.
    ``forward(x, s, noise)`` -> logits (B,) (``per_scale=True``: (B, 5), one column per head).
    """

    def __init__(self, teacher: nn.Module, scheduler, image_size: int, width: int = 64, s_max: int = 350):
        super().__init__()
        if not 0 < s_max <= scheduler.T:
            raise ValueError(f"s_max={s_max!r} must lie in (0, {scheduler.T}]")
        self.encoder = copy.deepcopy(teacher).eval().requires_grad_(False)
        for name in ("up3", "up2", "up1", "final", "mean_proj"):      # the decoder is not needed
            if hasattr(self.encoder, name):
                delattr(self.encoder, name)
        self.heads = Heads(teacher.in_ch, teacher.base, image_size, width)
        self.scheduler, self.s_max, self.width = scheduler, s_max, width

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()                                            # frozen, always
        return self

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor, per_scale: bool = False):
        x_s, _ = self.scheduler.add_noise(x, s, noise)
        feats, _ = self.encoder.encode(x_s, s)
        return self.heads(feats, s, x_s, per_scale)
