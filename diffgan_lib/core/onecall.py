"""The one-call generator: a trained diffusion UNet turned into G(z), one network call per image.

z ~ N(0, I) (C, S, S) is the latent. G reads it as a noisy input at level t* with no signal left in it,
x = sqrt(1 - ᾱ_t*) z, and returns the clean image that the network predicts there, softly clamped:

    G(z) = softclamp((x - sqrt(1 - ᾱ_t*) ε_θ(x, t*)) / sqrt(ᾱ_t*)).

Why not t* = T - 1, the textbook read of pure noise: there 1 / sqrt(ᾱ) ≈ 157 multiplies every error of ε_θ,
and the untrained read is saturated noise (FD 483 on the X-rays); at t* = 400 the factor is 2.3 and the
teacher's single call already gives a blurred chest (FD 58.5, ``benchmarks/onecall_study.py``). Fine-tuning
against a discriminator (``engine.onecall``) then sharpens it. Shapes: z and G(z) (B, C, S, S); G(z) in [-1, 1].

More calls, if one is not enough (``sampling.OneCall``): G(z) re-noised to the low level ``REFINE_T`` and finished
by the *teacher* in k - 1 DDIM steps (eta 0) is a k-call sample. At t = 50 the noise hides G's fine speckle
but not its layout, and the teacher, which denoises well at low levels, removes the speckle (chosen on the
validation X-rays among t = 10 ... 200, ``benchmarks/onecall_tune.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OneCallGenerator", "softclamp", "REFINE_T"]

REFINE_T = 50           # the level a k-call sample re-noises G(z) to before the teacher finishes it


def softclamp(x: torch.Tensor, knee: float = 0.95) -> torch.Tensor:
    """The identity on [-knee, knee], then a tanh that saturates at +-1: smooth, so pixels near the edge of the
    range still get a gradient (a hard clamp gives none)."""
    w = 1.0 - knee
    over = knee + w * torch.tanh((x.abs() - knee) / w)
    return torch.where(x.abs() <= knee, x, torch.sign(x) * over)


class OneCallGenerator(nn.Module):
    """G(z) of a noise-predicting ``unet`` read at level ``t_star`` (module docstring)."""

    def __init__(self, unet: nn.Module, scheduler, t_star: int = 400):
        super().__init__()
        if not isinstance(t_star, int) or not 0 < t_star < scheduler.T:
            raise ValueError(f"t_star={t_star!r} must be a level in (0, {scheduler.T}); 400 is the course's")
        self.unet, self.scheduler, self.t_star = unet, scheduler, t_star
        self.in_ch = unet.in_ch
        a = float(scheduler.alpha_hat[t_star])
        self.signal, self.noise = a ** 0.5, (1 - a) ** 0.5

    @property
    def levels(self) -> torch.Tensor:
        return torch.tensor([self.t_star])

    @property
    def n_levels(self) -> int:
        return 1

    def raw(self, z: torch.Tensor) -> torch.Tensor:
        """x̂0 before the soft clamp."""
        x = self.noise * z
        eps = self.unet(x, torch.full((z.shape[0],), self.t_star, dtype=torch.long, device=z.device))
        return (x - self.noise * eps) / self.signal

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return softclamp(self.raw(z))

    ENCODER = ("time_mlp", "class_emb", "down1", "down2", "down3", "mid")
    FROZEN = {"none": (), "encoder": ENCODER, "most": ENCODER + ("up3",)}   # what each freeze keeps as the teacher's

    def freeze(self, which: str) -> "OneCallGenerator":
        """Keep some of the teacher's weights as they are: ``"encoder"`` the time MLP, the down blocks and the
        bottleneck (only the decoder trains, 39 % of the weights at base 32); ``"most"`` also the deepest decoder
        block (10 % train: D2O freezes about 85 % of its generator); ``"none"`` nothing. Returns self."""
        if which not in self.FROZEN:
            raise ValueError(f"freeze={which!r}: choose one of {', '.join(map(repr, self.FROZEN))}")
        for name in self.FROZEN[which]:
            if hasattr(self.unet, name):
                getattr(self.unet, name).requires_grad_(False)
        return self

    def with_unet(self, unet: nn.Module) -> "OneCallGenerator":
        """The same read through another UNet (e.g. the EMA copy)."""
        return OneCallGenerator(unet, self.scheduler, self.t_star)
