"""Loss values on hand-made inputs, and the fixes of ERRATA 2 (image-space fake) and 4 (frozen D)."""
import math

import pytest
import torch
import torch.nn as nn

from diffgan_lib.core import D_LOSS_AT_CHANCE, diffusion_forward, fake_images, generator_adv_loss
from diffgan_lib import DiffusionScheduler, Discriminator, UNet, diffusion_loss, gan_losses


class ConstD(nn.Module):
    """A 'discriminator' that outputs the same score c for every patch."""
    def __init__(self, c=0.0):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x):
        return self.c.expand(x.shape[0], 1, 5, 5)


class Oracle(nn.Module):
    """A noise predictor that knows the true noise (set before the call)."""
    def forward(self, x_t, t):
        return self.eps


@pytest.fixture
def sched():
    return DiffusionScheduler(device="cpu")


def test_discriminator_at_chance_gives_2_ln_2():
    real, fake = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    r, f = gan_losses(ConstD(0.0), real, fake)
    assert r.item() == pytest.approx(math.log(2)) and f.item() == pytest.approx(math.log(2))
    assert (r + f).item() == pytest.approx(D_LOSS_AT_CHANCE) == pytest.approx(1.3863, abs=1e-4)
    assert generator_adv_loss(ConstD(0.0), fake).item() == pytest.approx(math.log(2))


def test_softplus_values_for_a_confident_discriminator():
    real = torch.zeros(2, 1, 32, 32)
    r, f = gan_losses(ConstD(3.0), real, real)     # says "real" (score 3) to everything
    assert r.item() == pytest.approx(math.log1p(math.exp(-3)))
    assert f.item() == pytest.approx(math.log1p(math.exp(3)))


def test_diffusion_loss_is_zero_for_an_oracle_and_one_for_zero_prediction(sched):
    x0 = torch.rand(256, 1, 8, 8) * 2 - 1
    t = torch.randint(0, 1000, (256,))
    noise = torch.randn_like(x0)
    oracle = Oracle()
    oracle.eps = noise
    assert diffusion_loss(oracle, x0, t, sched, noise).item() == 0.0
    oracle.eps = torch.zeros_like(noise)
    assert diffusion_loss(oracle, x0, t, sched, noise).item() == pytest.approx(1.0, abs=0.02)


def test_oracle_x0_pred_is_the_clean_image(sched):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    oracle = Oracle()
    oracle.eps = noise
    out = diffusion_forward(oracle, x0, torch.tensor([0, 100, 500, 999]), sched, noise)
    assert torch.allclose(out.x0_pred, x0, atol=2e-3)
    assert fake_images(oracle, x0, sched, "corrected", out) is out.x0_pred


def test_corrected_fake_is_an_image_made_by_one_forward_pass(sched):
    G = UNet(base=8)
    calls = []
    G.register_forward_hook(lambda *a: calls.append(1))
    x0 = torch.rand(4, 1, 32, 32) * 2 - 1
    out = diffusion_forward(G, x0, torch.randint(0, 1000, (4,)), sched)
    fake = fake_images(G, x0, sched, "corrected", out)
    assert len(calls) == 1
    assert fake.min() >= -1 and fake.max() <= 1 and fake.requires_grad


def test_as_written_fake_is_a_second_pass_predicting_noise(sched):
    G = UNet(base=8)
    calls = []
    G.register_forward_hook(lambda *a: calls.append(1))
    x0 = torch.rand(4, 1, 32, 32) * 2 - 1
    diffusion_forward(G, x0, torch.randint(0, 1000, (4,)), sched)
    fake_images(G, x0, sched, "as_written")
    assert len(calls) == 2


def test_fake_images_errors(sched):
    with pytest.raises(ValueError, match="needs out=diffusion_forward"):
        fake_images(UNet(base=8), torch.zeros(1, 1, 32, 32), sched)
    with pytest.raises(ValueError, match="variant='seed'"):
        fake_images(UNet(base=8), torch.zeros(1, 1, 32, 32), sched, "seed")


def test_generator_loss_leaves_D_gradients_empty_when_frozen():
    D = Discriminator(base=8)
    fake = torch.randn(2, 1, 32, 32, requires_grad=True)
    generator_adv_loss(D, fake).backward()
    assert all(p.grad is None for p in D.parameters())
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.requires_grad for p in D.parameters()), "D must be unfrozen afterwards"
    generator_adv_loss(D, fake, freeze_D=False).backward()   # the seed's behaviour
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
