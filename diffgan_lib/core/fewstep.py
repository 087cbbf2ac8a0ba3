"""The few-step generator: a trained diffusion UNet read as a predictor of the clean image at K levels.

With the MSE loss the UNet's x̂0 is the posterior *mean* E[x0 | x_t]. A 1000-step sampler only ever
needs that mean; a sampler with K big jumps (t = 999 -> 749 -> 499 -> 249 -> clean for K = 4) does
not: given x_999, the state at t = 749 has a multimodal distribution that a Gaussian step (DDPM,
DDIM) cannot represent. DDGAN (Xiao, Kreis & Vahdat 2022) trains the jumps adversarially; ADD, UFOGen
and GDD make that affordable by starting from a trained diffusion model, as the course does
(``diffgan_lib.engine.fewstep`` trains it, ``diffgan_lib.sampling`` samples it).

Pieces (shapes: images (B, C, S, S) in [-1, 1]; k: (B,) int64 level indices in [0, K)):
- ``level_timesteps(scheduler, K)``: the K levels, trailing spacing ([999, 749, 499, 249] for K = 4);
- ``posterior_sample(scheduler, x_t, x0, t, t_next, noise)``: q(x_{t_next} | x_t, x0), the exact
  Gaussian of the forward process between two levels (t_next = -1: the clean image itself);
- ``FewStepGenerator(unet, scheduler, levels)``: x̂0 = (x_t - sqrt(1 - ᾱ_t) ε_θ(x_t, t)) / sqrt(ᾱ_t),
  clamped to [-1, 1];
- ``PairDiscriminator``: the course's PatchGAN on [next state, x_t, one-hot level planes].
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .discriminator import Discriminator

__all__ = ["FewStepGenerator", "PairDiscriminator", "posterior_sample", "level_timesteps", "next_timestep"]


def level_timesteps(scheduler, n_levels: int) -> list[int]:
    """The K noise levels, descending and starting at T - 1: trailing spacing, [999, 749, 499, 249] for K = 4."""
    if not isinstance(n_levels, int) or not 1 <= n_levels <= 8:
        raise ValueError(f"levels={n_levels!r}: use 1 to 8 levels (4 is DDGAN's choice)")
    return scheduler.timesteps_for(n_levels)


def posterior_sample(scheduler, x_t: torch.Tensor, x0: torch.Tensor, t, t_next, noise: torch.Tensor | None = None):
    """A draw of q(x_{t_next} | x_t, x0) for t_next < t (per sample; t_next = -1 returns x0).

    With a = ᾱ_t / ᾱ_{t_next} (the signal kept from t_next to t):
    mean = sqrt(ᾱ_{t_next}) (1 - a) / (1 - ᾱ_t) * x0 + sqrt(a) (1 - ᾱ_{t_next}) / (1 - ᾱ_t) * x_t,
    var  = (1 - a) (1 - ᾱ_{t_next}) / (1 - ᾱ_t). For t_next = t - 1 this is DDPM's posterior (eq. 7).
    """
    t = torch.as_tensor(t, device=x_t.device).reshape(-1)
    t_next = torch.as_tensor(t_next, device=x_t.device).reshape(-1)
    ah = torch.cat([torch.ones(1, device=x_t.device), scheduler.alpha_hat.to(x_t.device)])   # ᾱ at t + 1
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    ah_t, ah_n = ah[t + 1].reshape(shape), ah[t_next + 1].reshape(shape)
    a = ah_t / ah_n
    mean = ah_n.sqrt() * (1 - a) / (1 - ah_t) * x0 + a.sqrt() * (1 - ah_n) / (1 - ah_t) * x_t
    var = (1 - a) * (1 - ah_n) / (1 - ah_t)
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + var.clamp(min=0).sqrt() * noise      # var = 0 where t_next = -1: mean = x0


class FewStepGenerator(nn.Module):
    """A trained noise-predicting UNet read as an x̂0 predictor at K levels (``levels``, descending).

    ``forward(x_t, k)``: x_t (B, C, S, S), k (B,) level indices -> x̂0 (B, C, S, S) in [-1, 1].
    ``unclamped(x_t, k)`` is the same before the clamp (for the reconstruction loss).
    """

    def __init__(self, unet: nn.Module, scheduler, levels):
        super().__init__()
        self.unet, self.scheduler = unet, scheduler
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.long), persistent=False)
        if not torch.all(self.levels[:-1] > self.levels[1:]) or int(self.levels.min()) < 0:
            raise ValueError(f"levels {list(levels)} must be distinct timesteps in descending order")
        self.in_ch = unet.in_ch

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def unclamped(self, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = self.levels.to(x_t.device)[k]
        return self.scheduler.predict_x0(x_t, t, self.unet(x_t, t))

    def forward(self, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.unclamped(x_t, k).clamp(-1, 1)

    def with_unet(self, unet: nn.Module) -> "FewStepGenerator":
        """The same levels and scheduler read through another UNet (e.g. the EMA copy)."""
        return FewStepGenerator(unet, self.scheduler, self.levels.tolist())


class PairDiscriminator(nn.Module):
    """D(next state, x_t, level): the course's PatchGAN on 2C + K input channels, the level given as
    one-hot constant planes. Scores (B, 1, h, w) as Discriminator's; 1x1 at 32 px."""

    def __init__(self, in_ch: int, base: int, n_levels: int):
        super().__init__()
        self.in_ch, self.base, self.n_levels = in_ch, base, n_levels
        self.net = Discriminator(2 * in_ch + n_levels, base)

    def pair(self, x_next: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The stacked input (B, 2C + K, S, S)."""
        planes = F.one_hot(k, self.n_levels).to(x_t.dtype)[:, :, None, None].expand(-1, -1, *x_t.shape[-2:])
        return torch.cat([x_next, x_t, planes], dim=1)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.net(stacked)


def next_timestep(G: FewStepGenerator, k: torch.Tensor) -> torch.Tensor:
    """The timestep after level k: the next level, or -1 (clean) after the last one."""
    padded = torch.cat([G.levels, torch.tensor([-1], device=G.levels.device)]).to(k.device)
    return padded[k + 1]
