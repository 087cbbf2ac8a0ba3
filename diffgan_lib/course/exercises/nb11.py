"""Exercises of notebook 11, flow matching: ``flow_matching_loss``, ``euler_sample``, ``eps_to_velocity``."""
from __future__ import annotations

import torch

from ...core.flow import TIME_SCALE, RectifiedFlow, velocity_from_eps
from . import Exercise, close, tensor_problem

__all__ = ["flow_matching_loss", "euler_sample", "eps_to_velocity"]

_FLOW = RectifiedFlow()


class _TinyVelocity(torch.nn.Module):
    """A fixed little network v(x, time input) for the checks: a 1x1 convolution plus a term in the time input."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w, self.b = torch.randn(2, 2, 1, 1, generator=g) * 0.5, torch.randn(2, generator=g) * 0.1

    def forward(self, x, time_input):
        s = torch.as_tensor(time_input, dtype=x.dtype).reshape(-1, 1, 1, 1) / TIME_SCALE
        return torch.nn.functional.conv2d(x, self.w, self.b) + s * x


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 2, 4, 4, generator=g) * 2 - 1, torch.tensor([0.1, 0.5, 0.9]),
            torch.randn(3, 2, 4, 4, generator=g))


# ----------------------------------------------------------------------------- 1. flow_matching_loss
def _flow_matching_loss(model, x0, t, eps):
    t_col = t.reshape(-1, 1, 1, 1)                   # one t per image, broadcast over (C, S, S)
    x_t = (1 - t_col) * x0 + t_col * eps             # the straight path: t = 0 the image, t = 1 the noise
    target = eps - x0                                # its velocity, d x_t / d t
    v_pred = model(x_t, TIME_SCALE * t)              # the network reads t in the range of its time embedding
    return ((v_pred - target) ** 2).mean()


def _test_loss(fn):
    model, (x0, t, eps) = _TinyVelocity(), _batch()
    out = fn(model, x0, t, eps)
    expected = _flow_matching_loss(model, x0, t, eps)
    if torch.is_tensor(out) and out.numel() == 1 and close(out.reshape(()), expected):
        return None
    col = t.reshape(-1, 1, 1, 1)
    wrong = {
        "the target points the wrong way: the path runs from the image (t = 0) to the noise (t = 1), so its "
        "velocity is eps - x0": ((model((1 - col) * x0 + col * eps, TIME_SCALE * t) - (x0 - eps)) ** 2).mean(),
        "t = 0 must be the image and t = 1 the noise: x_t = (1 - t) x0 + t eps":
            ((model(col * x0 + (1 - col) * eps, TIME_SCALE * t) - (eps - x0)) ** 2).mean(),
        "the network was trained with its time input in [0, 1000]: call it with TIME_SCALE * t":
            ((model((1 - col) * x0 + col * eps, t) - (eps - x0)) ** 2).mean(),
    }
    for message, value in wrong.items():
        if torch.is_tensor(out) and out.numel() == 1 and close(out.reshape(()), value):
            return message
    if torch.is_tensor(out) and out.numel() != 1:
        return f"the loss should be one number (the mean over every pixel and image), got shape {tuple(out.shape)}"
    return tensor_problem(out, expected, "the loss") or "wrong value"


flow_matching_loss = Exercise(
    "flow_matching_loss", _test_loss,
    hint_text="Four lines: give t the shape (B, 1, 1, 1); mix x0 and eps along the straight path; the target is "
              "how fast that mix changes with t; compare the network's answer with it by the mean squared error.",
    reference=_flow_matching_loss, probe=lambda fn: fn(_TinyVelocity(), *_batch()),
    solution_note="\nengine.flow.flow_step does this, with keyed random t and eps, and takes a G step on it.")


# ----------------------------------------------------------------------------- 2. euler_sample
def _euler_sample(velocity, x1, steps):
    times = torch.linspace(1.0, 0.0, steps + 1)      # from the noise (t = 1) to the image (t = 0)
    x = x1
    for i in range(steps):
        dt = float(times[i + 1] - times[i])          # negative: we walk back along t
        x = x + dt * velocity(x, float(times[i]))    # follow the velocity at the start of the step
    return x


def _toy_velocity(x, t):
    return torch.sin(3 * x) * (1 + t)                # curved paths: the step count matters


def _test_euler(fn):
    x1 = torch.linspace(-2, 2, 12).reshape(3, 1, 2, 2)
    for steps in (1, 4, 10):
        expected = _euler_sample(_toy_velocity, x1, steps)
        out = fn(_toy_velocity, x1.clone(), steps)
        if close(out, expected):
            continue
        flipped = x1.clone()                         # the usual slip: + dt v with dt positive
        for t in torch.linspace(1.0, 0.0, steps + 1)[:-1]:
            flipped = flipped + _toy_velocity(flipped, float(t)) / steps
        if close(out, flipped):
            return "you moved towards the noise: t falls from 1 to 0, so each step adds (t_next - t) v, a negative dt"
        return f"with {steps} steps: " + (tensor_problem(out, expected, "the sample") or "wrong values")
    return None


euler_sample = Exercise(
    "euler_sample", _test_euler,
    hint_text="Make steps + 1 evenly spaced times from 1 down to 0; then, for each step, move x by the time "
              "difference times the velocity at the step's start. Nothing random happens.",
    reference=_euler_sample, probe=lambda fn: fn(_toy_velocity, torch.zeros(1, 1, 2, 2), 2),
    solution_note="\nsampling.Euler does this with the network as the velocity (its time input 1000 t).")


# ----------------------------------------------------------------------------- 3. eps_to_velocity
def _eps_to_velocity(eps_pred, x_t, t):
    t_col = t.reshape(-1, 1, 1, 1)
    x0_pred = (x_t - t_col * eps_pred) / (1 - t_col)  # where the straight line through x_t started
    velocity = eps_pred - x0_pred                     # the velocity of that line
    return velocity


def _eps_inputs():
    x0, t, eps = _batch(1)
    return eps, _FLOW.interpolate(x0, t, eps), t


def _test_eps(fn):
    x0, t, eps = _batch(1)
    x_t = _FLOW.interpolate(x0, t, eps)
    out = fn(eps, x_t, t)
    expected = velocity_from_eps(eps, x_t, t)
    if close(out, expected):
        return None
    if close(out, eps - x_t):
        return "eps - x_t is not eps - x0: first recover x0 from x_t and eps (divide by 1 - t)"
    if close(out, x0 - eps):
        return "the velocity points from the image to the noise: eps - x0, not x0 - eps"
    return tensor_problem(out, expected, "the velocity") or "wrong values"


eps_to_velocity = Exercise(
    "eps_to_velocity", _test_eps,
    hint_text="On the straight path x_t = (1 - t) x0 + t eps you know x_t, t and (a prediction of) eps: solve for "
              "x0, then the velocity is the difference of the two ends.",
    reference=_eps_to_velocity, probe=lambda fn: fn(*_eps_inputs()),
    solution_note="\ncore.flow.velocity_from_eps does this: v = (eps - x_t) / (1 - t).")

