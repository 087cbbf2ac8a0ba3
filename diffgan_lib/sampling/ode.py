"""Samplers of a flow model: integrate dx/dt = v_theta(x, t) from t = 1 (noise) to t = 0 (an image).

``Euler(flow, steps)``: x <- x + (t_next - t) v(x, t), one network call per step;
``Heun(flow, steps)``: Euler's step as a predictor, then the average of the velocities at both ends
(second order, Karras et al. 2022), two calls per step except the last, which is Euler's: 2 steps - 1
calls. Both march over ``steps`` evenly spaced times 1 = t_0 > t_1 > ... > t_steps = 0. Deterministic:
no noise after x_1, as DDIM at eta = 0, which integrates the probability-flow ODE of a diffusion model.
"""
from __future__ import annotations

import torch

__all__ = ["Euler", "Heun", "SOLVERS"]

SOLVERS = ("euler", "heun")


class Euler:
    """The explicit Euler method over ``steps`` equal steps; ``steps`` network calls."""

    def __init__(self, flow, steps: int = 50):
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps={steps!r} must be a positive integer (network calls of the ODE solver)")
        self.flow, self.steps = flow, steps

    def times(self) -> torch.Tensor:
        return torch.linspace(1.0, 0.0, self.steps + 1)

    def evaluations(self) -> int:
        return self.steps

    @torch.inference_mode()
    def sample(self, model, x_T: torch.Tensor, generator=None, record=None, bar=None) -> torch.Tensor:
        x, ts = x_T, self.times()
        for i in range(self.steps):
            x = x + float(ts[i + 1] - ts[i]) * self.flow.velocity(model, x, ts[i])
            if bar is not None:
                bar.update(1)
        return x


class Heun(Euler):
    """Heun's method (the trapezoidal rule with an Euler predictor); 2 steps - 1 network calls."""

    def evaluations(self) -> int:
        return 2 * self.steps - 1

    @torch.inference_mode()
    def sample(self, model, x_T: torch.Tensor, generator=None, record=None, bar=None) -> torch.Tensor:
        x, ts = x_T, self.times()
        for i in range(self.steps):
            dt = float(ts[i + 1] - ts[i])
            v = self.flow.velocity(model, x, ts[i])
            guess = x + dt * v
            if i + 1 < self.steps:                    # at t = 0 the last step stays Euler's
                v = 0.5 * (v + self.flow.velocity(model, guess, ts[i + 1]))
                guess = x + dt * v
            x = guess
            if bar is not None:
                bar.update(2 if i + 1 < self.steps else 1)
        return x
