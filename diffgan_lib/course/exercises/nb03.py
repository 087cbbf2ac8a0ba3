"""Exercises of notebook 03, the discriminator: ``score_side``, ``receptive_field``, ``patch_box``.

Each takes a stack of convolutions as a list of ``(kernel, stride, padding)`` triples, in order."""
from __future__ import annotations

import torch
import torch.nn as nn

from . import Exercise

__all__ = ["score_side", "receptive_field", "patch_box"]

_D_LAYERS = [(4, 2, 1), (4, 2, 1), (4, 2, 1), (4, 1, 0)]              # the seed's discriminator
_STACKS = [_D_LAYERS, [(3, 1, 1), (3, 2, 1)], [(4, 2, 1), (4, 2, 1)], [(7, 2, 3), (3, 2, 1), (3, 1, 0)],
           [(5, 1, 0), (2, 2, 0), (5, 1, 2)]]


def _torch_side(layers, side):
    """The side PyTorch's own Conv2d layers give (None when a layer would leave nothing)."""
    x = torch.zeros(1, 1, side, side)
    for k, s, p in layers:
        if (side + 2 * p - k) // s + 1 < 1:
            return None
        x = nn.Conv2d(1, 1, k, stride=s, padding=p)(x)
        side = x.shape[-1]
    return side


# ----------------------------------------------------------------------------- 1. score_side
def _score_side(layers, side):
    for i, (kernel, stride, padding) in enumerate(layers):
        side = (side + 2 * padding - kernel) // stride + 1        # floor: a partial window is dropped
        if side < 1:
            raise ValueError(f"layer {i} (counting from 0) leaves a {side} px map: the image is too small "
                             "for these layers")
    return side


def _test_score_side(fn):
    with torch.no_grad():
        for layers in _STACKS:
            for side in (32, 40, 64, 96, 100, 128):
                out, expected = fn(layers, side), _torch_side(layers, side)
                if expected is None:
                    continue
                if isinstance(out, float) and int(out) != out:
                    return "the side is a whole number of positions: use floor division //"
                if out != expected:
                    if layers is _D_LAYERS and out == 1:
                        return "the seed's comment says 1x1, but that is only true at 32 px: trace the sides"
                    return f"wrong side for a {side} px input to the layers {layers}"
    try:
        out = fn(_D_LAYERS, 24)
    except ValueError:
        return None
    return (f"for a 24 px image the seed's D leaves no score map, but you returned {out!r}: raise a ValueError "
            "that says so as soon as a layer's output side drops below 1")


score_side = Exercise(
    "score_side", _test_score_side,
    hint_text="Carry one number, the side, through the layers in order, updating it with the formula above. "
              "Which Python division drops a partial window and keeps an int? And check the side after "
              "every layer, not only at the end.",
    reference=_score_side, probe=lambda fn: fn(_D_LAYERS, 96))


# ----------------------------------------------------------------------------- 2. receptive_field
def _receptive_field(layers):
    rf, jump = 1, 1                       # walking forwards: each layer widens the view by (k - 1) * jump
    for kernel, stride, _padding in layers:
        rf += (kernel - 1) * jump
        jump *= stride                    # the distance in input pixels between neighbouring outputs
    return rf


def _test_receptive_field(fn):
    for layers in _STACKS:
        out = fn(layers)
        if out != _receptive_field(layers):
            if out == 1 + sum(k - 1 for k, _, _ in layers):
                return "you added the kernels but ignored the strides: after a stride-2 layer each step is 2 px"
            if out == _receptive_field(layers) + sum(2 * p for _, _, p in layers):
                return "padding adds zeros around the image; it moves the view but does not widen it"
            return f"wrong receptive field for the layers {layers}"
    return None


receptive_field = Exercise(
    "receptive_field", _test_receptive_field,
    hint_text="Walk through the layers keeping two numbers: the view so far (one pixel before any layer) and "
              "the jump. The text above says how a layer changes each; which of the two updates must use "
              "the jump from before this layer's stride?",
    reference=_receptive_field, probe=lambda fn: fn([(3, 1, 1)]))


# ----------------------------------------------------------------------------- 3. patch_box
def _patch_box(layers, index):
    start, size = index, 1                # one output position; walk back to the input
    for kernel, stride, padding in reversed(layers):
        start = start * stride - padding      # the first input position this layer's window reads
        size = (size - 1) * stride + kernel   # neighbours are `stride` apart, and each window is `kernel` wide
    return start, start + size


def _test_patch_box(fn):
    for layers in _STACKS:
        for index in (0, 1, 5):
            out = fn(layers, index)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return "return two ints: (start, stop), the first row seen and one past the last"
            start, stop = _patch_box(layers, index)
            if tuple(out) == (start, stop):
                continue
            if tuple(out) == (start, stop - 1):
                return "stop is one past the last row seen, as in range(start, stop)"
            if start < 0 <= out[0]:
                return "the box may start before row 0: padding adds rows of zeros there, keep them in"
            if out[1] - out[0] != stop - start:
                return f"the box of output {index} of the layers {layers} has the wrong size"
            return f"right size, wrong place: the box of output {index} of the layers {layers} is shifted"
    return None


patch_box = Exercise(
    "patch_box", _test_patch_box,
    hint_text="Walk backwards from the output, from the last layer to the first, keeping where the box starts "
              "and how wide it is. One window's first input position depends on the stride and the padding; "
              "how many input positions do `size` neighbouring windows cover together?",
    reference=_patch_box, probe=lambda fn: fn(_D_LAYERS, 0),
    solution_note="\nviz.receptive_box does the same for nn.Conv2d layers; draw_receptive_field draws its boxes.")
