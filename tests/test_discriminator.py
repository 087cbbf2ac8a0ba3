"""Discriminator: a PatchGAN whose score map is 13x13 at 128 px (ERRATA 3)."""
import pytest
import torch

from diffgan_lib import Discriminator
from diffgan_lib.core import score_map_shape
from diffgan_lib.core.discriminator import receptive_field


@pytest.mark.parametrize("size, side", [(32, 1), (64, 5), (128, 13)])
def test_score_map_shape(size, side):
    assert score_map_shape(size) == (side, side)
    D = Discriminator(base=8)
    assert D(torch.randn(2, 1, size, size)).shape == (2, 1, side, side)


def test_rgb_and_rectangular():
    D = Discriminator(in_ch=3, base=8)
    assert D(torch.randn(1, 3, 64, 128)).shape == (1, 1, *score_map_shape((64, 128)))


def test_each_score_sees_a_patch_not_the_image():
    # The convolutions see a 46 px patch; only GroupNorm's statistics reach beyond it, weakly.
    D = Discriminator(base=8)
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    D(x)[0, 0, 0, 0].backward()
    g, rf = x.grad[0, 0].abs(), receptive_field()
    assert rf == 46
    assert g[:rf, :rf].mean() > 10 * g[rf + 8:, rf + 8:].mean()


def test_seed_parameter_count():
    convs = (1 * 64 * 16 + 64) + (64 * 128 * 16 + 128) + (128 * 256 * 16 + 256) + (256 * 1 * 16 + 1)
    norms = 2 * 128 + 2 * 256
    assert sum(p.numel() for p in Discriminator().parameters()) == convs + norms == 661_697


def test_errors():
    with pytest.raises(ValueError, match="too small for the discriminator.*at least 32 px"):
        Discriminator(base=8)(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"expected images \(B, 1, H, W\)"):
        Discriminator(base=8)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="base=10 must be a positive multiple of 8"):
        Discriminator(base=10)
