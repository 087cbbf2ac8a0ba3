"""The generator G: the seed's UNet noise predictor, with the timestep embedding it was missing.

Shapes: ``x`` is (B, C, H, W) with C = ``in_ch`` and H, W divisible by 8 (three 2x poolings,
ERRATA 10); ``t`` is (B,) int64 in [0, T) (or an int); the output has the shape of ``x`` and is the
predicted noise ``eps_pred`` (unbounded, roughly unit variance).

The seed's ``UNet`` never sees ``t`` (ERRATA 1). With ``time_embedding=True`` (default) ``t`` goes
through a sinusoidal embedding and a small MLP and is added inside every ``DoubleConv``, as in DDPM.
``time_embedding=False`` is the seed's network exactly as written (7,787,393 parameters at base 64),
kept for the ablation lesson; it accepts ``t`` and ignores it so training code can call both alike.

Class conditioning (``num_classes > 0``, for classifier-free guidance): a learned embedding of the
label, with one extra "no class" token (index ``num_classes``), is added to the time embedding.
``G(x_t, t, labels)``; ``labels=None`` (or the null index) asks for the unconditional prediction.
An unconditional UNet (``num_classes=0``, the default) has no such layer: its weights are unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DoubleConv", "UNet", "timestep_embedding", "count_parameters"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as used by DDPM).

    t: (B,) int or float; returns (B, dim) float32 with values in [-1, 1]:
    [cos(t w_0), ..., cos(t w_{d/2-1}), sin(t w_0), ...] with w_i = max_period^(-i / (d/2)).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class DoubleConv(nn.Module):
    """(Conv3x3 -> GroupNorm(8) -> ReLU) x 2, the seed's block; (B, in_ch, H, W) -> (B, out_ch, H, W).

    With ``time_dim`` set, a projection of the time embedding (B, time_dim) is added after the
    first ReLU, so every block knows the noise level. ``self.net`` keeps the seed's layout.
    """

    def __init__(self, in_ch: int, out_ch: int, time_dim: int | None = None):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(8, out_ch), nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.GroupNorm(8, out_ch), nn.ReLU(),
        )
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_ch)) if time_dim else None

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor | None = None) -> torch.Tensor:
        if self.time_proj is None or t_emb is None:
            return self.net(x)
        h = self.net[:3](x) + self.time_proj(t_emb)[:, :, None, None]
        return self.net[3:](h)


class UNet(nn.Module):
    """The seed's three-level UNet: widths base, 2b, 4b, bottleneck 8b; skip connections by concat.

    Args:
        in_ch: image channels (1 for grayscale, 3 for RGB); the output has the same number.
        base: channels of the first level; must be divisible by 8 (GroupNorm(8)).
        time_embedding: True adds the DDPM timestep embedding (fix of ERRATA 1); False is the seed.
        num_classes: > 0 adds a class embedding with a learned "no class" token (index num_classes).
        mean_path: True adds a path that carries each image's mean (its brightness) past the
            GroupNorms: eps_pred += k(t) * mean(x_t) + c(t), per channel, k and c read from the time
            (and class) embedding, both 0 at initialisation. Every block of the seed's UNet ends in a
            GroupNorm, which subtracts the mean, so without it the network barely sees the mean of
            its input and cannot predict the mean of the noise (README, "The brightness the seed's
            UNet cannot see"; notebook 02, section 6; benchmarks/mean_path_study.py).
    """

    def __init__(self, in_ch: int = 1, base: int = 64, time_embedding: bool = True, num_classes: int = 0,
                 mean_path: bool = False):
        super().__init__()
        if not isinstance(in_ch, int) or in_ch < 1:
            raise ValueError(f"in_ch={in_ch!r} must be a positive integer (1 grayscale, 3 RGB)")
        if not isinstance(base, int) or base < 8 or base % 8:
            raise ValueError(f"base={base!r} must be a positive multiple of 8 (every block uses "
                             "GroupNorm with 8 groups); try 32 or 64")
        if not isinstance(num_classes, int) or num_classes < 0 or (num_classes and not time_embedding):
            raise ValueError(f"num_classes={num_classes!r} must be an int >= 0, and class conditioning needs "
                             "time_embedding=True (the label is added to the time embedding)")
        if mean_path and not time_embedding:
            raise ValueError("mean_path=True needs time_embedding=True (its gain depends on t); the seed's "
                             "network without t has no mean path")
        self.in_ch, self.base, self.time_embedding, self.num_classes = in_ch, base, time_embedding, num_classes
        self.mean_path = bool(mean_path)
        tdim = 4 * base if time_embedding else None
        if time_embedding:   # sinusoid(base) -> Linear -> SiLU -> Linear, shared by all blocks
            self.time_mlp = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        if num_classes:      # label -> vector added to the time embedding; index num_classes = "no class"
            self.class_emb = nn.Embedding(num_classes + 1, tdim)
        # ENCODER
        self.down1 = DoubleConv(in_ch, base, tdim)
        self.down2 = DoubleConv(base, base * 2, tdim)
        self.down3 = DoubleConv(base * 2, base * 4, tdim)
        self.pool = nn.MaxPool2d(2)
        # BOTTLENECK
        self.mid = DoubleConv(base * 4, base * 8, tdim)
        # DECODER
        self.up3 = DoubleConv(base * 8 + base * 4, base * 4, tdim)
        self.up2 = DoubleConv(base * 4 + base * 2, base * 2, tdim)
        self.up1 = DoubleConv(base * 2 + base, base, tdim)
        self.final = nn.Conv2d(base, in_ch, 1)
        if mean_path:        # time embedding -> (k, c) per channel; zero at the start: the plain UNet
            self.mean_proj = nn.Sequential(nn.SiLU(), nn.Linear(tdim, 2 * in_ch))
            nn.init.zeros_(self.mean_proj[1].weight)
            nn.init.zeros_(self.mean_proj[1].bias)

    def _check(self, x: torch.Tensor, t) -> torch.Tensor | None:
        if x.dim() != 4:
            raise ValueError(f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}; "
                             "add a batch dimension with x[None] or a channel one with x[:, None]")
        if x.shape[1] != self.in_ch:
            raise ValueError(f"input has {x.shape[1]} channels but this UNet was built with "
                             f"in_ch={self.in_ch}; convert the images or build UNet(in_ch={x.shape[1]})")
        h, w = x.shape[-2:]
        for name, side in (("height", h), ("width", w)):
            if side % 8:
                lo, hi = side // 8 * 8, side // 8 * 8 + 8
                raise ValueError(f"image {name} {side} is not divisible by 8 (the UNet halves it three "
                                 f"times); use {lo or 8} or {hi}, or resize")
        if not self.time_embedding:
            return None
        if t is None:
            raise ValueError("this UNet has a timestep embedding and needs t: call G(x_t, t) with t of "
                             "shape (B,), or build UNet(time_embedding=False) for the seed's network")
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t has shape {tuple(t.shape)}; expected ({x.shape[0]},), one timestep per image")
        return t

    def _labels(self, labels, x: torch.Tensor) -> torch.Tensor | None:
        """labels as (B,) int64 on x's device; None -> the "no class" token; checked against num_classes."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this UNet is unconditional (num_classes=0) and takes no labels; train a "
                                 "conditional model (TrainConfig(class_names=('a', 'b', ...)), or train "
                                 "--conditional) to ask for a class")
            return None
        if labels is None:
            return torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        labels = torch.as_tensor(labels, device=x.device).long()
        if labels.shape != (x.shape[0],) or int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
            raise ValueError(f"labels must be ({x.shape[0]},) ints in [0, {self.num_classes}] ({self.num_classes} = "
                             f"no class), got shape {tuple(labels.shape)}")
        return labels

    def encode(self, x: torch.Tensor, t: torch.Tensor | int | None = None, labels=None):
        """The encoder half: ([d1, d2, d3, mid] feature maps of sides S, S/2, S/4, S/8 and widths base .. 8 base,
        the time (and class) embedding). A discriminator built on the network's own features reads these
        (``core.feature_disc``)."""
        t = self._check(x, t)
        labels = self._labels(labels, x)
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype)) if t is not None else None
        if labels is not None:
            emb = emb + self.class_emb(labels).to(emb.dtype)
        d1 = self.down1(x, emb)
        d2 = self.down2(self.pool(d1), emb)
        d3 = self.down3(self.pool(d2), emb)
        return [d1, d2, d3, self.mid(self.pool(d3), emb)], emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | None = None, labels=None) -> torch.Tensor:
        """x: (B, in_ch, H, W); t: (B,) int64 or int (ignored when time_embedding=False); labels: (B,)
        class indices (conditional UNets only; None = unconditional) -> eps_pred like x."""
        (d1, d2, d3, mid), emb = self.encode(x, t, labels)
        u3 = self.up3(torch.cat([F.interpolate(mid, scale_factor=2), d3], dim=1), emb)
        u2 = self.up2(torch.cat([F.interpolate(u3, scale_factor=2), d2], dim=1), emb)
        u1 = self.up1(torch.cat([F.interpolate(u2, scale_factor=2), d1], dim=1), emb)
        eps_pred = self.final(u1)
        if self.mean_path:   # the image mean, which every GroupNorm above removed: (B, C, 1, 1)
            k, c = self.mean_proj(emb).view(-1, 2, self.in_ch, 1, 1).unbind(1)
            eps_pred = eps_pred + k.to(eps_pred.dtype) * x.mean((2, 3), keepdim=True) + c.to(eps_pred.dtype)
        return eps_pred
