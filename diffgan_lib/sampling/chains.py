"""The reverse chains of a diffusion model: ``DDPM`` (Ho et al. 2020, Algorithm 2, all T steps: the seed's
sampler) and ``DDIM`` (Song et al. 2021, eq. 12, a few timesteps; eta = 0 deterministic, 1 fresh noise at every
step like DDPM), each one network call per timestep; and ``draw_noise``, which every sampler draws with.
Imports ``core`` only (through the scheduler it is given)."""
from __future__ import annotations

import torch

__all__ = ["DDPM", "DDIM", "draw_noise"]


def draw_noise(shape, generator, device) -> torch.Tensor:
    """N(0, I) of ``shape``, drawn from ``generator`` on its own device (the CPU by default), moved to ``device``."""
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_dev).to(device)


class _Chain:
    """A reverse chain over ``timesteps()``: one network call per timestep, then ``update``."""

    def evaluations(self) -> int:
        return len(self.timesteps())

    @torch.inference_mode()
    def sample(self, model, x_T: torch.Tensor, generator=None, record=None, bar=None) -> torch.Tensor:
        """x_T (B, C, S, S) -> x0 (B, C, S, S). ``record`` {t: list}: the state when the chain reaches t
        (the first visited timestep <= t, else the final x) is appended; ``bar`` is updated per call."""
        ts, x = self.timesteps(), x_T
        record = {} if record is None else record
        pending = sorted(record, reverse=True)
        for i, t in enumerate(ts):
            while pending and t <= pending[0]:
                record[pending.pop(0)].append(x.clone())
            eps_pred = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
            x = self.update(eps_pred, i, t, ts, x, generator)
            if bar is not None:
                bar.update(1)
        for t in pending:
            record[t].append(x.clone())
        return x


class DDPM(_Chain):
    """Ho et al. 2020, Algorithm 2: t = T-1 ... 0; ``variance`` "fixed_large" = the seed's sigma^2 = beta."""

    def __init__(self, scheduler, variance: str = "fixed_large", clip_x0: bool = False):
        self.scheduler, self.variance, self.clip_x0 = scheduler, variance, clip_x0

    def timesteps(self) -> list[int]:
        return list(range(self.scheduler.T - 1, -1, -1))

    def update(self, eps_pred, i, t, ts, x, generator):
        noise = draw_noise(x.shape, generator, x.device) if t > 0 else torch.zeros_like(x)
        return self.scheduler.step(eps_pred, t, x, noise=noise, variance=self.variance, clip_x0=self.clip_x0)


class DDIM(_Chain):
    """Song et al. 2021, eq. 12 over ``steps`` evenly spaced timesteps from T - 1, or over the descending
    ``timesteps`` given (a one-call image finished from t = 50: ``generators.OneCall``); ``eta`` in [0, 1]."""

    def __init__(self, scheduler, steps: int = 50, eta: float = 0.0, clip_x0: bool = False,
                 timesteps: list[int] | None = None):
        if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):      # also refuses nan
            raise ValueError(f"eta={eta!r} must lie in [0, 1]: 0 is deterministic DDIM, 1 is DDPM-like noise")
        if timesteps is not None:       # the levels to walk, given instead of steps
            ts = list(timesteps)
            if (not ts or not all(isinstance(t, int) and not isinstance(t, bool) for t in ts)
                    or any(a <= b for a, b in zip(ts, ts[1:])) or not 0 <= ts[-1] <= ts[0] < scheduler.T):
                raise ValueError(f"timesteps={timesteps!r} must be ints that descend strictly within [0, {scheduler.T - 1}]")
        self._ts = scheduler.timesteps_for(steps) if timesteps is None else ts
        self.scheduler, self.steps, self.eta, self.clip_x0 = scheduler, len(self._ts), eta, clip_x0

    def timesteps(self) -> list[int]:
        return self._ts

    def update(self, eps_pred, i, t, ts, x, generator):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        noise = draw_noise(x.shape, generator, x.device) if self.eta > 0 else None
        return self.scheduler.ddim_step(eps_pred, t, t_prev, x, eta=self.eta, noise=noise, clip_x0=self.clip_x0)
