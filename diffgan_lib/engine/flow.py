"""One optimisation step of flow matching (``TrainConfig(objective="flow")``): the velocity of straight paths.

Per batch x0 (B, C, S, S) in [-1, 1]: each sample gets its own t ~ U(0, 1) and noise eps, drawn from a
generator seeded by (seed, step, its index in the global batch) as diffusion's step draws them; then
x_t = (1 - t) x0 + t eps, v_pred = G(x_t, 1000 t), loss = ||(eps - x0) - v_pred||^2; a G step and the
EMA update. No discriminator. Labels (a conditional model) are dropped to "no class" as in diffusion.
"""
from __future__ import annotations

import torch

from .batches import mix
from .precision import resolve_precision
from .step import check_finite, finish_G_step, keyed_label_dropout

__all__ = ["flow_step", "keyed_time_and_noise", "FLOW_KEYS"]

FLOW_KEYS = ("flow",)


def keyed_time_and_noise(seed: int, step: int, index, shape, device=None):
    """t (B,) float32 in [0, 1) and noise (B, *shape) ~ N(0, 1), sample i from its own generator seeded by
    (seed, step, index[i])."""
    g, ts, eps = torch.Generator(), [], []
    for i in index:
        g.manual_seed(mix(6, seed, step, int(i)))
        ts.append(torch.rand(1, generator=g))
        eps.append(torch.randn(tuple(shape), generator=g))
    return torch.cat(ts).to(device), torch.stack(eps).to(device)


def flow_step(run, x0: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    """The flow-matching step at ``run.step`` (module docstring); returns {"flow": the velocity MSE}."""
    cfg, step, ctx = run.config, run.step, run.ctx
    torch.manual_seed(mix(2, cfg.seed, step))
    index = torch.arange(len(x0)) * ctx.world + ctx.rank
    t, eps = keyed_time_and_noise(cfg.seed, step, index, x0.shape[1:], x0.device)
    if labels is not None:
        labels = keyed_label_dropout(labels, cfg.label_dropout, cfg.num_classes, cfg.seed, step, index).to(x0.device)
    amp_dtype, _ = resolve_precision(cfg.precision, x0.device)
    with torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        v_pred = run.scheduler.velocity(run.G_train, run.scheduler.interpolate(x0, t, eps), t, labels)
    loss = torch.nn.functional.mse_loss(v_pred.float(), (eps - x0).float())
    finish_G_step(run, loss)
    return check_finite(ctx.mean(loss.detach().float().reshape(1)), FLOW_KEYS, run, keys=FLOW_KEYS)
