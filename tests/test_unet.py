"""UNet: the seed's structure, the timestep embedding (ERRATA 1) and its error messages (ERRATA 10)."""
import pytest
import torch

from diffgan_lib import DoubleConv, UNet
from diffgan_lib.core import count_parameters
from diffgan_lib.core.unet import timestep_embedding


def test_as_written_unet_is_the_seed_network():
    G = UNet(in_ch=1, base=64, time_embedding=False)
    assert count_parameters(G) == 7_787_393
    assert isinstance(G.down1, DoubleConv) and len(G.down1.net) == 6
    assert [G.down1.net[0].out_channels, G.down2.net[0].out_channels, G.down3.net[0].out_channels,
            G.mid.net[0].out_channels] == [64, 128, 256, 512]


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("ch", [1, 3])
def test_output_shape_matches_input(size, ch):
    G = UNet(in_ch=ch, base=8)
    x = torch.randn(2, ch, size, size)
    assert G(x, torch.tensor([0, 999])).shape == x.shape


def test_non_square_input_divisible_by_8_works():
    G = UNet(base=8)
    assert G(torch.randn(1, 1, 32, 48), 3).shape == (1, 1, 32, 48)


def test_output_changes_with_t_only_when_embedded():
    x = torch.randn(2, 1, 32, 32)
    G = UNet(base=8).eval()
    assert not torch.allclose(G(x, torch.tensor([10, 10])), G(x, torch.tensor([900, 900])), atol=1e-5)
    G0 = UNet(base=8, time_embedding=False).eval()
    assert torch.equal(G0(x, torch.tensor([10, 10])), G0(x, torch.tensor([900, 900])))
    assert torch.equal(G0(x), G0(x, 5))


def test_int_t_broadcasts_to_batch():
    G = UNet(base=8).eval()
    x = torch.randn(3, 1, 32, 32)
    assert torch.allclose(G(x, 7), G(x, torch.full((3,), 7)))


def test_timestep_embedding_values():
    emb = timestep_embedding(torch.tensor([0, 5]), 16)
    assert emb.shape == (2, 16)
    assert torch.equal(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))   # cos(0)=1, sin(0)=0
    assert emb[1, 0].item() == pytest.approx(torch.cos(torch.tensor(5.0)).item())
    assert emb.abs().max() <= 1


def test_gradients_reach_the_time_mlp():
    G = UNet(base=8)
    G(torch.randn(2, 1, 32, 32), torch.tensor([1, 2])).pow(2).mean().backward()
    assert G.time_mlp[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape, match", [
    ((1, 1, 100, 100), "height 100 is not divisible by 8.*use 96 or 104"),
    ((1, 1, 64, 28), "width 28 is not divisible by 8.*use 24 or 32"),
    ((1, 3, 32, 32), "input has 3 channels but this UNet was built with in_ch=1"),
    ((1, 32, 32), r"expected a batch of images \(B, C, H, W\)"),
])
def test_bad_inputs_say_what_to_do(shape, match):
    with pytest.raises(ValueError, match=match):
        UNet(base=8)(torch.randn(*shape), 0)


def test_missing_t_and_bad_t():
    G = UNet(base=8)
    with pytest.raises(ValueError, match=r"needs t: call G\(x_t, t\)"):
        G(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"t has shape \(3,\); expected \(2,\)"):
        G(torch.randn(2, 1, 32, 32), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("base", [12, 4, 0])
def test_base_must_be_multiple_of_8(base):
    with pytest.raises(ValueError, match=f"base={base} must be a positive multiple of 8"):
        UNet(base=base)


def test_an_unconditional_unet_names_a_fix_that_works():
    from diffgan_lib import TrainConfig
    with pytest.raises(ValueError, match="class_names") as err:
        UNet(1, 8)(torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    assert "TrainConfig(class_names=" in str(err.value)
    assert TrainConfig(class_names=("a", "b")).num_classes == 2        # the fix it names is a real call
