"""Exercises of notebook 02, the UNet: ``bottleneck_shape``, ``doubleconv_params``, ``embedding``."""
from __future__ import annotations

import torch

from ..unet import DoubleConv, UNet, count_parameters, timestep_embedding
from . import Exercise
from . import close, tensor_problem

__all__ = ["bottleneck_shape", "doubleconv_params", "embedding"]


# ----------------------------------------------------------------------------- 1. bottleneck_shape
def _bottleneck_shape(batch, in_ch, side, base):
    return (batch, 8 * base, side // 8, side // 8)   # three 2x poolings; mid has 8 * base channels


def _measured_bottleneck(batch, in_ch, side, base):
    """The shape of G.mid's output, measured with a forward hook on a real UNet."""
    G, seen = UNet(in_ch, base, time_embedding=False), {}
    G.mid.register_forward_hook(lambda m, i, o: seen.update(mid=tuple(o.shape)))   # returns None
    with torch.no_grad():
        G(torch.zeros(batch, in_ch, side, side))
    return seen["mid"]


def _test_bottleneck_shape(fn):
    for args in ((1, 1, 64, 64), (2, 3, 32, 8), (4, 1, 96, 16)):
        out = fn(*args)
        out = tuple(out) if isinstance(out, (tuple, list, torch.Size)) else out
        if not isinstance(out, tuple) or len(out) != 4:
            return "return a tuple of four ints (B, C, H, W)"
        expected = _measured_bottleneck(*args)
        if out != expected:
            wrong = [n for n, a, b in zip("BCHW", out, expected) if a != b]
            return (f"for batch={args[0]}, in_ch={args[1]}, side={args[2]}, base={args[3]} the "
                    f"{', '.join(wrong)} entr{'y is' if len(wrong) == 1 else 'ies are'} wrong")
    return None


bottleneck_shape = Exercise(
    "bottleneck_shape", _test_bottleneck_shape,
    hint_text="Count the poolings before self.mid, and read the channels of DoubleConv(base * 4, base * 8). "
              "The input channels do not reach the bottleneck.",
    reference=_bottleneck_shape, probe=lambda fn: fn(1, 1, 64, 64))


# ----------------------------------------------------------------------------- 2. doubleconv_params
def _doubleconv_params(in_ch, out_ch):
    conv1 = in_ch * out_ch * 3 * 3 + out_ch          # 3x3 kernels + one bias per output channel
    conv2 = out_ch * out_ch * 3 * 3 + out_ch
    norms = 2 * (2 * out_ch)                          # each GroupNorm: a scale and a shift per channel
    return conv1 + conv2 + norms


def _test_doubleconv_params(fn):
    for in_ch, out_ch in ((1, 64), (64, 128), (3, 8)):
        out = fn(in_ch, out_ch)
        expected = count_parameters(DoubleConv(in_ch, out_ch))
        if out == expected:
            continue
        if not isinstance(out, int):
            return f"return an int, not a {type(out).__name__}"
        if out == expected - 4 * out_ch:
            return "the two GroupNorm layers have parameters too (a scale and a shift per channel)"
        if out == expected - 2 * out_ch:
            return "each convolution also has a bias: one number per output channel"
        return f"wrong count for DoubleConv({in_ch}, {out_ch})"
    return None


doubleconv_params = Exercise(
    "doubleconv_params", _test_doubleconv_params,
    hint_text="A Conv2d(i, o, 3) has i * o * 3 * 3 weights and o biases; a GroupNorm(8, o) has o scales and "
              "o shifts. A DoubleConv has two of each; ReLU has none.",
    reference=_doubleconv_params, probe=lambda fn: fn(1, 64))


# ----------------------------------------------------------------------------- 3. embedding
def _embedding(t, dim):
    half = dim // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32) / half)   # w_i = 10000^(-i / half)
    args = t.float()[:, None] * freqs[None, :]                            # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)          # (B, dim): cosines, then sines


def _test_embedding(fn):
    t = torch.tensor([0, 1, 10, 250, 999])
    for dim in (8, 32):
        out, expected = fn(t, dim), timestep_embedding(t, dim)
        if close(out, torch.cat([expected[:, dim // 2:], expected[:, :dim // 2]], dim=1)):
            return "sines and cosines are swapped: the cosines come first"
        problem = tensor_problem(out, expected, f"the embedding with dim={dim}", atol=1e-4)
        if problem:
            return problem
    return None


embedding = Exercise(
    "embedding", _test_embedding,
    hint_text="Make the half = dim // 2 frequencies with torch.arange, multiply t[:, None] by freqs[None, :] "
              "to get a (B, half) table, then torch.cat its cos and sin along dim=1.",
    reference=_embedding, probe=lambda fn: fn(torch.tensor([0, 1]), 8))
