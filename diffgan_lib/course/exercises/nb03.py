"""Exercises of notebook 03, the discriminator: ``conv_out_side``, ``score_side``, ``receptive_field``."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...core.discriminator import score_map_shape
from . import Exercise

__all__ = ["conv_out_side", "score_side", "receptive_field"]


# ----------------------------------------------------------------------------- 1. conv_out_side
def _conv_out_side(side, kernel, stride, padding):
    return (side + 2 * padding - kernel) // stride + 1   # floor division: a partial window is dropped


def _test_conv_out_side(fn):
    for side, k, s, p in ((128, 4, 2, 1), (16, 4, 1, 0), (33, 3, 2, 1), (7, 3, 1, 1), (25, 4, 2, 1)):
        out = fn(side, k, s, p)
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p)
        expected = conv(torch.zeros(1, 1, side, side)).shape[-1]   # ask PyTorch itself
        if out != expected:
            if isinstance(out, float) and int(out) != out:
                return "the side is a whole number of positions: use floor division //"
            return f"wrong side for a {side} px input, kernel {k}, stride {s}, padding {p}"
    return None


conv_out_side = Exercise(
    "conv_out_side", _test_conv_out_side,
    hint_text="The formula is in the text above. In Python, which division drops a partial window at the end "
              "and returns an int?",
    reference=_conv_out_side, probe=lambda fn: fn(128, 4, 2, 1))


# ----------------------------------------------------------------------------- 2. score_side
def _score_side(side):
    for _ in range(3):                    # three 4x4 convolutions, stride 2, padding 1
        side = _conv_out_side(side, 4, 2, 1)
    return _conv_out_side(side, 4, 1, 0)  # the last 4x4 convolution, stride 1, no padding


def _test_score_side(fn):
    for side in (32, 40, 64, 96, 100, 128, 256):
        out = fn(side)
        if out != score_map_shape(side)[0]:
            if out == 1:
                return "the seed's comment says 1x1, but that is only true at 32 px: trace the sides"
            return f"wrong score-map side for a {side} px image"
    return None


score_side = Exercise(
    "score_side", _test_score_side,
    hint_text="Read the kernel, stride and padding of D's four convolutions off the layer-by-layer printout "
              "above (three alike, the last one different), and feed the side through them in order.",
    reference=_score_side, probe=lambda fn: fn(96))


# ----------------------------------------------------------------------------- 3. receptive_field
def _receptive_field(layers):
    rf, jump = 1, 1                       # walking forwards: each layer widens the view by (k - 1) * jump
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride                    # the distance in input pixels between neighbouring outputs
    return rf


def _test_receptive_field(fn):
    cases = ([(4, 2), (4, 2), (4, 2), (4, 1)], [(3, 1), (3, 1)], [(4, 2), (4, 2)], [(7, 2), (3, 2), (3, 1)])
    for layers in cases:
        out = fn(layers)
        if out != _receptive_field(layers):
            if out == 1 + sum(k - 1 for k, _ in layers):
                return "you added the kernels but ignored the strides: after a stride-2 layer each step is 2 px"
            return f"wrong receptive field for the layers {layers}"
    return None


receptive_field = Exercise(
    "receptive_field", _test_receptive_field,
    hint_text="Walk through the layers keeping two numbers: the view so far (one pixel before any layer) and "
              "the jump. The text above says how a layer changes each; which of the two updates must use "
              "the jump from before this layer's stride?",
    reference=_receptive_field, probe=lambda fn: fn([(3, 1)]))
