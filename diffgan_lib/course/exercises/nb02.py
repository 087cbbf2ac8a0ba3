"""Exercises of notebook 02, the UNet: ``bottleneck_shape``, ``doubleconv_params``, ``embedding``,
``unet_forward``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.unet import DoubleConv, UNet, count_parameters, timestep_embedding
from . import Exercise
from . import close, tensor_problem

__all__ = ["bottleneck_shape", "doubleconv_params", "embedding", "unet_forward"]


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
    hint_text="Read the shape table above (base 64, 128 px): how many times was the side halved before mid, "
              "and what multiple of base are mid's output channels? Does in_ch change either?",
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
    hint_text="List the six layers of the block in the text above and say which have parameters. For each "
              "convolution, what are its input and output channels? (The second one does not start from in_ch.)",
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
    hint_text="Three stages: the dim/2 frequencies w_i (one tensor), a (B, dim/2) table of t times every "
              "frequency (an outer product by broadcasting), then cosines and sines side by side, cosines first.",
    reference=_embedding, probe=lambda fn: fn(torch.tensor([0, 1]), 8))


# ----------------------------------------------------------------------------- 4. unet_forward
def _unet_forward(G, x, t):
    emb = G.time_mlp(timestep_embedding(t, G.base))          # given in the starter: the time code
    d1 = G.down1(x, emb)                                       # encoder: full side
    d2 = G.down2(G.pool(d1), emb)                              # 1/2
    d3 = G.down3(G.pool(d2), emb)                              # 1/4
    mid = G.mid(G.pool(d3), emb)                               # bottleneck: 1/8
    u3 = G.up3(torch.cat([F.interpolate(mid, scale_factor=2), d3], dim=1), emb)   # up, then the skip
    u2 = G.up2(torch.cat([F.interpolate(u3, scale_factor=2), d2], dim=1), emb)
    u1 = G.up1(torch.cat([F.interpolate(u2, scale_factor=2), d1], dim=1), emb)
    return G.final(u1)                                         # back to the image's channels


def _forward_variant(G, x, t, skip_first=False, use_emb=True):
    """The forward pass with one typical mistake, to name it in the check's message."""
    emb = G.time_mlp(timestep_embedding(t, G.base)) if use_emb else None
    up = lambda h: F.interpolate(h, scale_factor=2)           # noqa: E731
    cat = (lambda a, b: torch.cat([b, a], 1)) if skip_first else (lambda a, b: torch.cat([a, b], 1))
    d1 = G.down1(x, emb)
    d2 = G.down2(G.pool(d1), emb)
    d3 = G.down3(G.pool(d2), emb)
    mid = G.mid(G.pool(d3), emb)
    u1 = G.up1(cat(up(G.up2(cat(up(G.up3(cat(up(mid), d3), emb)), d2), emb)), d1), emb)
    return G.final(u1)


def _unet_inputs():
    g = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):                    # leave the notebook's global random state alone
        G = UNet(1, 8).eval()
    for p in G.parameters():                                   # nonzero weights everywhere, also in the
        p.data = 0.3 * torch.randn(p.shape, generator=g)       # time MLP, so every mistake changes the output
    return G, torch.randn(2, 1, 16, 16, generator=g), torch.tensor([3, 700])


def _test_unet_forward(fn):
    G, x, t = _unet_inputs()
    with torch.no_grad():
        out, expected = fn(G, x, t), G(x, t)
        if torch.is_tensor(out) and out.shape[1] == G.base:
            return f"the result has {G.base} channels: the last 1x1 convolution, G.final, maps them back to the image's"
        if close(out, _forward_variant(G, x, t, skip_first=True)):
            return "the concatenation order is swapped: the blocks were built for the upsampled map first, the skip second"
        if close(out, _forward_variant(G, x, t, use_emb=False)):
            return "the blocks ran without the time embedding: pass emb to every block, block(h, emb)"
    return tensor_problem(out, expected, "your output", atol=1e-4)


unet_forward = Exercise(
    "unet_forward", _test_unet_forward,
    hint_text="Follow the shape table from top to bottom: three encoder blocks with a pooling before the second "
              "and the third, the bottleneck after one more pooling, then three decoder blocks. Each decoder "
              "block gets its input upsampled by 2 and joined along the channels with the encoder output of "
              "the same side. Keep the encoder outputs in variables: the decoder needs them.",
    reference=_unet_forward, probe=lambda fn: fn(*_unet_inputs()),
    solution_note="\nThis is UNet.forward in diffgan_lib/unet.py, without its input checks and class labels.")
