"""Rectified flow (flow matching): straight paths between data and noise, and the velocity along them.

Shapes: x0, eps, x_t (B, C, S, S); t (B,) float in [0, 1], t = 0 the data, t = 1 pure noise.

- the path: x_t = (1 - t) x0 + t eps, a straight line from an image to its noise;
- the velocity along it: v = d x_t / d t = eps - x0, the same at every t of one line;
- the network v_theta(x_t, t) (the course's UNet, its time embedding fed ``TIME_SCALE * t``, the range
  of diffusion's integer timesteps) learns E[eps - x0 | x_t] with the MSE (conditional flow matching,
  Lipman et al. 2023; rectified flow, Liu et al. 2023);
- sampling integrates dx/dt = v_theta from t = 1 (noise) to t = 0 (``sampling.Euler``, ``sampling.Heun``);
- conversions: x̂0 = x_t - t v, ε̂ = x_t + (1 - t) v; a noise prediction ε̂ at x_t gives
  v = (ε̂ - x_t) / (1 - t) (``velocity_from_eps``).

``RectifiedFlow`` plays the scheduler's part for a flow model: ``sample``, ``load_checkpoint`` and the
run use it where a diffusion model has its ``DiffusionScheduler``.
"""
from __future__ import annotations

import torch

__all__ = ["RectifiedFlow", "TIME_SCALE", "velocity_from_eps"]

TIME_SCALE = 1000.0     # t in [0, 1] -> the UNet's time input in [0, 1000], like diffusion's timesteps


class RectifiedFlow:
    """The straight path x_t = (1 - t) x0 + t eps and what follows from it (module docstring)."""

    T = int(TIME_SCALE)         # the time range the network sees, as a DiffusionScheduler's T

    def __init__(self, time_scale: float = TIME_SCALE, device=None):
        self.time_scale = float(time_scale)
        self.device = device

    def config(self) -> dict:
        """Plain values for a checkpoint."""
        return {"path": "rectified", "time_scale": self.time_scale}

    def to(self, device) -> "RectifiedFlow":
        self.device = device
        return self

    @staticmethod
    def _col(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.dim() - 1)))

    def interpolate(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - t) x0 + t eps."""
        t = self._col(t, x0)
        return (1 - t) * x0 + t * eps

    def velocity(self, model, x_t: torch.Tensor, t: torch.Tensor, labels=None) -> torch.Tensor:
        """v_theta(x_t, t): the model called with its time input ``time_scale * t``."""
        t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).reshape(-1).expand(x_t.shape[0])
        return model(x_t, self.time_scale * t) if labels is None else model(x_t, self.time_scale * t, labels)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x̂0 = x_t - t v (where the straight line through x_t with velocity v started)."""
        return x_t - self._col(t, x_t) * v


def velocity_from_eps(eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path that a noise prediction implies at x_t: with x̂0 = (x_t - t ε̂) / (1 - t),
    v = ε̂ - x̂0 = (ε̂ - x_t) / (1 - t). t < 1."""
    t = RectifiedFlow._col(t, x_t)
    return (eps - x_t) / (1 - t)
