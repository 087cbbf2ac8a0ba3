"""The seed's training loop as written, kept for the side-by-side lesson of notebook 05 (ERRATA 2 and 4).

``train_step_as_written(run, x0)`` is a step function like ``engine.step.train_step``, so the one
training loop runs it: ``train(loader, config=TrainConfig.seed_as_written(), step=train_step_as_written)``.
Per batch, line by line as the seed wrote it: a fresh t from the global generator; the diffusion
loss; a second G forward ``G(add_noise(x0, 0))`` as the "fake" (a noise prediction, not an image);
D's step on (x0, fake); G's step on diff + 0.1 * adv with D *not* frozen, so G's backward also fills
D's .grad; no warm-up. Returns floats diff, adv, adv_w, D, D_real, D_fake.
"""
from __future__ import annotations

import torch

from ..core.losses import diffusion_loss, discriminator_loss, fake_images, generator_adv_loss
from ..engine.batches import mix
from ..engine.precision import resolve_precision
from ..engine.step import check_finite, finish_G_step

__all__ = ["train_step_as_written", "SEED_ADV_WEIGHT"]

SEED_ADV_WEIGHT = 0.1      # the seed's fixed weight of the adversarial term


def train_step_as_written(run, x0: torch.Tensor, labels=None) -> dict:
    """The seed's step at ``run.step`` (see the module docstring); labels are refused (the seed has none)."""
    if labels is not None:
        raise ValueError("the seed's loop as written has no class labels; train a conditional model with train_step")
    torch.manual_seed(mix(2, run.config.seed, run.step))
    G, D, scheduler = run.G_train, run.D, run.scheduler
    amp_dtype, _ = resolve_precision(run.config.precision, x0.device)
    autocast = torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    t = torch.randint(0, scheduler.T, (x0.size(0),)).to(x0.device)
    with autocast:
        diff = diffusion_loss(G, x0, t, scheduler)
        fake = fake_images(G, x0, scheduler, "as_written")      # 2nd forward: a noise prediction
        D_loss, D_real, D_fake = discriminator_loss(D, x0, fake.detach())
    run.opt_D.zero_grad()
    D_loss.backward()
    run.opt_D.step()
    with autocast:
        adv = generator_adv_loss(D, fake, freeze_D=False)        # fills D's .grad (ERRATA 4)
    w = torch.tensor(SEED_ADV_WEIGHT, device=x0.device)
    finish_G_step(run, diff + w * adv)
    losses = torch.stack([v.detach().float() for v in (diff, adv, w, D_loss, D_real, D_fake)])
    return check_finite(losses, ("diff", "adv", "adv_w", "D"), run)
