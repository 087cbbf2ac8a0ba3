"""Exercises of notebook 05, training: ``generator_forwards``, ``ema_update``, ``gated_adv_loss``,
``scale_out``."""
from __future__ import annotations

import torch

from . import Exercise
from . import close, tensor_problem

__all__ = ["generator_forwards", "ema_update", "gated_adv_loss", "scale_out"]


# ----------------------------------------------------------------------------- 1. generator_forwards
_FORWARDS = {"as_written": 2, "corrected": 1}


def _test_forwards(answer):
    if not isinstance(answer, dict) or set(answer) != set(_FORWARDS):
        return "answer with a dict with exactly the keys 'as_written' and 'corrected'"
    if answer["corrected"] != _FORWARDS["corrected"]:
        return "look again at the corrected step: where does its fake image come from?"
    if answer["as_written"] != _FORWARDS["as_written"]:
        return "count the calls of G in the seed's loop: the diffusion loss, and the fake"
    return None


generator_forwards = Exercise(
    "generator_forwards", _test_forwards,
    hint_text="Ask, for each loop: where does the diffusion loss get G's prediction, and where does the fake "
              "come from? Notebook 04, section 4, counted them with a hook.",
    reference=dict(_FORWARDS),
    solution_note="\nThe corrected step's fake is x0_pred of the same forward pass, so one G call per step.")


# ----------------------------------------------------------------------------- 2. ema_update
def _ema_update(ema_param, param, decay):
    return decay * ema_param + (1 - decay) * param     # keep most of the average, move a little


def _ema_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), 0.9


def _test_ema(fn):
    ema, p, d = _ema_inputs()
    out = fn(ema, p, d)
    if close(out, _ema_update(ema, p, d)):
        return None
    if close(out, _ema_update(p, ema, d)):
        return "the weights are swapped: the old average keeps the factor decay, the new weights get 1 - decay"
    return tensor_problem(out, _ema_update(ema, p, d), "the new average") or "wrong values"


ema_update = Exercise(
    "ema_update", _test_ema,
    hint_text="With decay 0.999 the average barely moves each step: most of it is the old average.",
    reference=_ema_update, probe=lambda fn: fn(*_ema_inputs()))


# ----------------------------------------------------------------------------- 3. gated_adv_loss
def _gated_adv_loss(D, x0_pred, t, t_max):
    keep = t < t_max                          # only the lightly noised images
    if not keep.any():
        return None                           # no adversarial term on this step
    scores = D(x0_pred[keep])
    return torch.nn.functional.softplus(-scores).mean()


def _gated_inputs():
    g = torch.Generator().manual_seed(5)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        D[1].weight.copy_(torch.randn(1, 16, generator=g))
    return D, torch.randn(6, 1, 4, 4, generator=g), torch.tensor([10, 900, 480, 499, 500, 750]), 500


def _test_gated(fn):
    D, x, t, t_max = _gated_inputs()
    out = fn(D, x, t, t_max)
    expected = _gated_adv_loss(D, x, t, t_max)
    if not torch.is_tensor(out) or out.dim() != 0:
        return "return a 0-d tensor (the mean over the kept images), or None when no image is kept"
    if close(out, torch.nn.functional.softplus(-D(x)).mean()):
        return "every image went in: keep only those with t < t_max"
    if close(out, torch.nn.functional.softplus(-D(x[t <= t_max])).mean()):
        return "t = t_max is not lightly noised enough: the rule is t < t_max, strictly"
    if close(out, torch.nn.functional.softplus(D(x[t < t_max])).mean()):
        return "that is D's loss on fakes; G wants D to call its fakes real: softplus(-score)"
    if not close(out, expected):
        return "wrong value"
    if fn(D, x, torch.full((6,), 900), t_max) is not None:
        return "when no image has t < t_max there is no term at all: return None"
    return None


gated_adv_loss = Exercise(
    "gated_adv_loss", _test_gated,
    hint_text="Build a boolean mask from t, index the batch with it, and handle the case where the mask is "
              "all False before calling D.",
    reference=_gated_adv_loss, probe=lambda fn: fn(*_gated_inputs()),
    solution_note="\nThe library's train_step does this with adv_t_max, after the warm-up, with D frozen.")


# ----------------------------------------------------------------------------- 4. scale_out
_SCALE = {"images_per_step": 4 * 16, "steps_per_epoch": 2048 // (4 * 16)}


def _test_scale(answer):
    if not isinstance(answer, dict) or set(answer) != set(_SCALE):
        return "answer with a dict with exactly the keys 'images_per_step' and 'steps_per_epoch'"
    if answer["images_per_step"] == 16:
        return "16 is what ONE process sees; the step is taken after the gradients of all 4 are averaged"
    if answer["images_per_step"] != _SCALE["images_per_step"]:
        return "each of the 4 processes reads its own 16 images per step"
    if answer["steps_per_epoch"] == 2048 // 16:
        return "that would be one process alone; the 4 shards are read at the same time"
    if answer["steps_per_epoch"] != _SCALE["steps_per_epoch"]:
        return "an epoch is every scan once: divide the 2048 scans by the images one step sees"
    return None


scale_out = Exercise(
    "scale_out", _test_scale,
    hint_text="--batch-size is per process, and the DistributedSampler splits the scans into 4 disjoint shards.",
    reference=dict(_SCALE),
    solution_note="\n64 images per step (4 x 16); 2048 / 64 = 32 steps per epoch, a quarter of one process's 128.")
