"""Losses: the noise-prediction MSE and the non-saturating (softplus) GAN losses.

Shapes: ``x0`` (B, C, H, W) in [-1, 1]; ``t`` (B,) int64 in [0, T); D returns patch scores
(B, 1, h, w), averaged by every loss here. All losses are scalar float32 tensors.

Reference numbers (ERRATA 11): a discriminator at chance outputs 0 everywhere, giving
``real_loss = fake_loss = ln 2`` and ``D_loss = 2 ln 2 ~ 1.386``; ``generator_adv_loss = ln 2 ~ 0.693``.

The GAN "fake" (ERRATA 2): the seed feeds D with ``G(noisy)`` at t = 0, a *noise prediction*, not
an image. :func:`fake_images` with ``variant="corrected"`` returns the predicted clean image
x0_pred = (x_t - sqrt(1 - alpha_hat) eps_pred) / sqrt(alpha_hat) from the same forward pass as the
diffusion loss, clamped to [-1, 1]; ``variant="as_written"`` reproduces the seed for the lesson.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DiffusionOutput", "diffusion_forward", "diffusion_loss", "fake_images", "gan_losses",
           "discriminator_loss", "generator_adv_loss", "frozen", "D_LOSS_AT_CHANCE"]

D_LOSS_AT_CHANCE = 2 * math.log(2)   # 1.3863: D_loss of a discriminator that cannot tell


@dataclass
class DiffusionOutput:
    """Everything one generator forward pass gives: loss (scalar) and (B, C, H, W) tensors."""
    loss: torch.Tensor
    x_t: torch.Tensor
    noise: torch.Tensor
    eps_pred: torch.Tensor
    x0_pred: torch.Tensor   # clamped to [-1, 1], differentiable w.r.t. G's weights


def diffusion_forward(G: nn.Module, x0: torch.Tensor, t: torch.Tensor, scheduler,
                      noise: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> DiffusionOutput:
    """Noise x0 to x_t, run G once, and return the MSE to the true noise with x0_pred.

    The MSE is computed in float32 even under autocast (a bf16 loss loses digits). ``labels`` (B,)
    go to a class-conditional G (its "no class" index for dropped labels).
    """
    x_t, noise = scheduler.add_noise(x0, t, noise)
    eps_pred = G(x_t, t) if labels is None else G(x_t, t, labels)
    loss = F.mse_loss(eps_pred.float(), noise.float())
    x0_pred = scheduler.predict_x0(x_t, t, eps_pred).clamp(-1, 1)
    return DiffusionOutput(loss, x_t, noise, eps_pred, x0_pred)


def diffusion_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, scheduler,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """The seed's loss: || eps - G(x_t, t) ||^2 averaged over pixels (Ho et al. eq. 14)."""
    return diffusion_forward(model, x0, t, scheduler, noise).loss


def fake_images(G: nn.Module, x0: torch.Tensor, scheduler, variant: str = "corrected",
                out: DiffusionOutput | None = None) -> torch.Tensor:
    """The generator's "fake" that D judges, (B, C, H, W).

    ``"corrected"``: ``out.x0_pred`` from :func:`diffusion_forward` (no extra forward pass).
    ``"as_written"``: the seed's ``G(add_noise(x0, 0))``, a second forward pass whose output is a
    noise prediction (roughly N(0, 1) noise, not an image).
    """
    if variant == "corrected":
        if out is None:
            raise ValueError("variant='corrected' needs out=diffusion_forward(...): the fake is x0_pred "
                             "from that same forward pass")
        return out.x0_pred
    if variant == "as_written":
        t0 = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        noisy, _ = scheduler.add_noise(x0, t0)
        return G(noisy.detach(), t0)
    raise ValueError(f"variant={variant!r}: choose 'corrected' or 'as_written'")


def gan_losses(D: nn.Module, real: torch.Tensor, fake: torch.Tensor):
    """The seed's discriminator losses: (softplus(-D(real)).mean(), softplus(D(fake)).mean()).

    Pass ``fake.detach()`` when training D. Their sum is D_loss; 2 ln 2 at chance.
    """
    return _d_terms(D(real).float(), D(fake).float())


def _d_terms(s_real: torch.Tensor, s_fake: torch.Tensor):
    """(softplus(-s_real).mean(), softplus(s_fake).mean()) from D's scores."""
    return F.softplus(-s_real).mean(), F.softplus(s_fake).mean()


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float = 0.0):
    """(D_loss, mean score on real, mean score on fake); D_loss = the sum of ``gan_losses`` + R1.

    One D forward on the batch [real; fake] (GroupNorm is per image, so this equals two calls, and
    under DDP a module should run once per backward). The scores are returned for logging (ERRATA 11:
    0 and 2 ln 2 at chance). R1 = r1_gamma / 2 * E ||grad_x sum D(x_real)||^2 (Mescheder et al.
    2018), in float32 even under autocast: a float16 gradient of a gradient overflows.
    real, fake: (B, C, H, W) and (B', C, H, W) in [-1, 1]; pass ``fake.detach()``.
    """
    scores = D(torch.cat([real, fake.to(real.dtype)])).float()
    s_real, s_fake = scores[: len(real)], scores[len(real):]
    loss = sum(_d_terms(s_real, s_fake))
    if r1_gamma > 0:
        with torch.autocast(real.device.type, enabled=False):
            real = real.detach().float().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
        loss = loss + r1_gamma / 2 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
    return loss, s_real.detach().mean(), s_fake.detach().mean()


@contextmanager
def frozen(module: nn.Module):
    """Temporarily set ``requires_grad=False`` on a module's parameters (ERRATA 4).

    Gradients still flow *through* the module to its input, but none accumulate in its weights.
    """
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def generator_adv_loss(D: nn.Module, fake: torch.Tensor, freeze_D: bool = True) -> torch.Tensor:
    """Non-saturating generator loss softplus(-D(fake)).mean(); ln 2 when D outputs 0.

    With ``freeze_D=True`` (default) D's weights receive no gradient from this loss (ERRATA 4);
    ``freeze_D=False`` is the seed's behaviour, which fills D's .grad until the next zero_grad().
    """
    if not freeze_D:
        return F.softplus(-D(fake).float()).mean()
    with frozen(D):
        return F.softplus(-D(fake).float()).mean()
