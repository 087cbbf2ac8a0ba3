"""The diffusion noise scheduler: forward noising and the DDPM / DDIM reverse steps.

Conventions (ERRATA 8, 9):
- timesteps are integers ``t`` in ``[0, T)``: ``t = 0`` is the first noising step, ``t = T - 1`` the last;
- images ``x0`` are scaled to ``[-1, 1]``; the noise ``eps`` is standard normal;
- ``betas``, ``alphas`` and ``alpha_hat`` are float32 tensors of shape ``(T,)``, ``alpha_hat[t]``
  being the product of ``alphas[0..t]`` (Ho et al. 2020, eq. 4: x_t = sqrt(alpha_hat) x0 + sqrt(1 - alpha_hat) eps).

Every method that takes ``t`` accepts a Python int, a 0-d tensor, or an int64 tensor of shape ``(B,)``.
The schedules give the same numbers as diffusers' ``linear``, ``squaredcos_cap_v2``, ``scaled_linear``
and ``sigmoid`` beta schedules.
"""
from __future__ import annotations

import math

import torch

from .device import pick_device

__all__ = ["DiffusionScheduler", "make_betas", "SCHEDULES"]

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid")


def _cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_hat(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), beta capped."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


def make_betas(timesteps: int, beta_start: float, beta_end: float, schedule: str) -> torch.Tensor:
    """Return the float32 betas of shape ``(timesteps,)`` for one of ``SCHEDULES``."""
    if schedule == "linear":        # Ho et al. 2020
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float32)
    if schedule == "quadratic":     # linear in sqrt(beta): diffusers' "scaled_linear"
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=torch.float32) ** 2
    if schedule == "sigmoid":       # GeoDiff's schedule, as in diffusers
        return torch.sigmoid(torch.linspace(-6, 6, timesteps)) * (beta_end - beta_start) + beta_start
    if schedule == "cosine":        # beta_start / beta_end are not used
        return _cosine_betas(timesteps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


class DiffusionScheduler:
    """Noise schedule of the seed, plus the standard samplers.

    Args:
        timesteps: number of diffusion steps T (>= 1).
        beta_start, beta_end: first and last beta, with 0 < beta_start < beta_end < 1.
        schedule: one of ``"linear"`` (the seed's), ``"cosine"``, ``"quadratic"``, ``"sigmoid"``.
        device: where the schedule tensors live; None picks CUDA, then MPS, then CPU.
    """

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 schedule: str = "linear", device: str | torch.device | None = None):
        if not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"timesteps={timesteps!r} must be an integer >= 1 (the seed uses 1000)")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 < beta_start < 1.0 or not 0.0 < beta_end < 1.0:
            raise ValueError(f"beta_start={beta_start} and beta_end={beta_end} must both lie in (0, 1); "
                             "the seed uses 1e-4 and 0.02")
        if beta_end <= beta_start:
            raise ValueError(f"beta_end={beta_end} must be larger than beta_start={beta_start}: "
                             "noise grows with t (the seed uses 1e-4 -> 0.02)")
        self.T = timesteps
        self.beta_start, self.beta_end, self.schedule = beta_start, beta_end, schedule
        self.device = pick_device(device)
        betas = make_betas(timesteps, beta_start, beta_end, schedule)
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(f"schedule {schedule!r} produced a beta outside (0, 1); check beta_start/beta_end")
        self.betas = betas.to(self.device)
        self.alphas = 1.0 - self.betas
        self.alpha_hat = torch.cumprod(self.alphas, dim=0)

    # ----------------------------------------------------------------- helpers
    def config(self) -> dict:
        """The constructor arguments (without device): enough to rebuild this scheduler."""
        return dict(timesteps=self.T, beta_start=self.beta_start, beta_end=self.beta_end,
                    schedule=self.schedule)

    def to(self, device) -> "DiffusionScheduler":
        """Move the schedule tensors to ``device`` (in place) and return self."""
        self.device = pick_device(device)
        self.betas, self.alphas, self.alpha_hat = (v.to(self.device) for v in
                                                   (self.betas, self.alphas, self.alpha_hat))
        return self

    def _t(self, t, like: torch.Tensor) -> torch.Tensor:
        """``t`` as an int64 tensor on ``like``'s device, range-checked."""
        t = torch.as_tensor(t, device=like.device, dtype=torch.long)
        # the range check reads t on the host: skip it on accelerators, where it would sync every call
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"timestep t out of range [0, {self.T - 1}] (got min {int(t.min())}, "
                             f"max {int(t.max())}); timesteps run 0..T-1")
        return t

    def _gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast against ``like`` (B, C, H, W)."""
        v = values.to(like.device)[t].to(like.dtype)
        return v.reshape(-1, *([1] * (like.dim() - 1))) if v.dim() else v

    def _alpha_hat_prev(self, t_prev, like: torch.Tensor) -> torch.Tensor:
        """alpha_hat at t_prev, with t_prev = -1 meaning 'before any noise' (alpha_hat = 1)."""
        t_prev = torch.as_tensor(t_prev, device=like.device, dtype=torch.long)
        if t_prev.device.type == "cpu" and t_prev.numel() and (int(t_prev.min()) < -1 or int(t_prev.max()) >= self.T):
            raise ValueError(f"t_prev out of range [-1, {self.T - 1}]")
        padded = torch.cat([torch.ones(1, device=like.device), self.alpha_hat.to(like.device)])
        return self._gather(padded, t_prev + 1, like)

    # ----------------------------------------------------------------- forward process
    def add_noise(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None):
        """Sample q(x_t | x0) in one shot (Ho et al. eq. 4).

        x0: (B, C, H, W) in [-1, 1]; t: (B,) int64 in [0, T) or an int; noise: like x0 or None (drawn).
        Returns ``(x_t, noise)``, both shaped like x0.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        a_hat = self._gather(self.alpha_hat, self._t(t, x0), x0)
        x_t = torch.sqrt(a_hat) * x0 + torch.sqrt(1 - a_hat) * noise
        return x_t, noise

    def predict_x0(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Invert eq. 4 with a noise estimate: x0 = (x_t - sqrt(1 - alpha_hat) eps) / sqrt(alpha_hat).

        Not clamped: clamp to [-1, 1] yourself where an image is needed (ERRATA 2).
        """
        a_hat = self._gather(self.alpha_hat, self._t(t, x_t), x_t)
        return (x_t - torch.sqrt(1 - a_hat) * eps) / torch.sqrt(a_hat)

    def snr(self, t) -> torch.Tensor:
        """Signal-to-noise ratio alpha_hat / (1 - alpha_hat) at t (same shape as t)."""
        t = self._t(t, self.alpha_hat)
        a_hat = self.alpha_hat[t]
        return a_hat / (1 - a_hat)

    # ----------------------------------------------------------------- reverse process
    def step(self, eps_pred: torch.Tensor, t, x_t: torch.Tensor, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None, variance: str = "fixed_large",
             clip_x0: bool = False) -> torch.Tensor:
        """One DDPM ancestral step x_t -> x_{t-1} (Ho et al. 2020, Algorithm 2).

        eps_pred, x_t: (B, C, H, W); t: int or (B,) int64. ``variance``: ``"fixed_large"``
        (sigma_t^2 = beta_t, the seed's choice) or ``"fixed_small"`` (the posterior
        beta~_t = (1 - alpha_hat_{t-1}) / (1 - alpha_hat_t) beta_t). No noise is added at t = 0.
        ``noise`` overrides the random draw; ``clip_x0`` clamps the implied x0 to [-1, 1] first.
        """
        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"variance={variance!r}: choose 'fixed_large' (seed) or 'fixed_small'")
        t = self._t(t, x_t)
        # 1. schedule values at t and t-1
        a = self._gather(self.alphas, t, x_t)
        b = self._gather(self.betas, t, x_t)
        a_hat = self._gather(self.alpha_hat, t, x_t)
        a_hat_prev = self._alpha_hat_prev(t - 1, x_t)
        # 2. posterior mean
        if clip_x0:   # eq. 7 with a clamped x0 estimate
            x0 = self.predict_x0(x_t, t, eps_pred).clamp(-1, 1)
            mean = (a_hat_prev.sqrt() * b / (1 - a_hat)) * x0 + (a.sqrt() * (1 - a_hat_prev) / (1 - a_hat)) * x_t
        else:         # eq. 11, the seed's formula
            mean = (x_t - (b / torch.sqrt(1 - a_hat)) * eps_pred) / torch.sqrt(a)
        # 3. variance, then noise (none at t = 0)
        var = b if variance == "fixed_large" else ((1 - a_hat_prev) / (1 - a_hat) * b).clamp(min=1e-20)
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        nonzero = self._gather((torch.arange(self.T, device=x_t.device) > 0).to(x_t.dtype), t, x_t)
        return mean + nonzero * torch.sqrt(var) * noise

    def ddim_step(self, eps_pred: torch.Tensor, t, t_prev, x_t: torch.Tensor, eta: float = 0.0,
                  noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  clip_x0: bool = False) -> torch.Tensor:
        """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12); ``t_prev = -1`` goes to x0.

        eta = 0 is deterministic; eta = 1 has DDPM's variance for that jump.
        """
        t = self._t(t, x_t)
        a_hat = self._gather(self.alpha_hat, t, x_t)
        a_hat_prev = self._alpha_hat_prev(t_prev, x_t)
        # 1. predicted x0 ("predicted x0" term of eq. 12)
        x0 = self.predict_x0(x_t, t, eps_pred)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps_pred = (x_t - a_hat.sqrt() * x0) / (1 - a_hat).sqrt()
        # 2. sigma_t(eta), eq. 16
        sigma = eta * torch.sqrt((1 - a_hat_prev) / (1 - a_hat) * (1 - a_hat / a_hat_prev))
        # 3. "direction pointing to x_t", then the random term
        direction = torch.sqrt((1 - a_hat_prev - sigma ** 2).clamp(min=0)) * eps_pred
        x_prev = a_hat_prev.sqrt() * x0 + direction
        if eta > 0:
            if noise is None:
                noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev

    def timesteps_for(self, num_steps: int, spacing: str = "trailing") -> list[int]:
        """Evenly spaced descending timesteps for a ``num_steps`` sampler.

        ``"trailing"`` (default) starts at T - 1, i.e. from pure noise, which matters for few steps
        (Lin et al. 2024); ``"leading"`` is diffusers' older default (0, T/n, 2T/n, ... reversed).
        """
        if not isinstance(num_steps, int) or not 1 <= num_steps <= self.T:
            raise ValueError(f"num_steps={num_steps!r} must be an integer in [1, {self.T}]")
        if spacing == "trailing":
            steps = [round(self.T - i * self.T / num_steps) - 1 for i in range(num_steps)]
        elif spacing == "leading":
            ratio = self.T // num_steps
            steps = [i * ratio for i in reversed(range(num_steps))]
        else:
            raise ValueError(f"spacing={spacing!r}: choose 'trailing' or 'leading'")
        return steps

    def __repr__(self) -> str:
        return (f"DiffusionScheduler(T={self.T}, schedule={self.schedule!r}, beta_start={self.beta_start}, "
                f"beta_end={self.beta_end}, device={str(self.device)!r})")
