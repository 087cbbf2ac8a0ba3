"""Sampling: shapes, seeds, trajectories, samplers checked against a perfect noise oracle, PNG output."""
import pytest
import torch
import torch.nn as nn
from PIL import Image

from diffgan_lib import generate_and_visualize, sample, to_unit
from diffgan_lib import DiffusionScheduler
from diffgan_lib import UNet

T = 50



@pytest.fixture(scope="module")
def scheduler():
    return DiffusionScheduler(T, device="cpu")


class Oracle(nn.Module):
    """Knows the clean images x0 and returns the exact noise eps = (x_t - sqrt(a_hat) x0) / sqrt(1 - a_hat)."""
    def __init__(self, x0, scheduler):
        super().__init__()
        self.x0, self.a_hat, self.in_ch = x0, scheduler.alpha_hat, x0.shape[1]

    def forward(self, x_t, t):
        a = self.a_hat[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("sampler,steps,clip_x0", [("ddim", 10, False), ("ddim", 1, False), ("ddpm", None, False),
                                                   ("ddim", 10, True), ("ddpm", None, True)])
def test_perfect_noise_oracle_recovers_x0(scheduler, sampler, steps, clip_x0):
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    x = sample(Oracle(x0, scheduler), scheduler, n=2, image_size=8, device="cpu", sampler=sampler,
               steps=steps, seed=0, progress=False, clip_x0=clip_x0)
    # DDIM eq. 12 and DDPM's last step both return x0_pred. The clipped DDPM update (eq. 7) divides by
    # 1 - alpha_hat_t, which near t = 0 keeps only ~4 digits in float32, hence the looser tolerance.
    assert torch.allclose(x, x0, atol=1e-3 if clip_x0 else 1e-4)


def test_three_channel_model_gives_three_channel_samples(scheduler):
    x = sample(UNet(3, 8), scheduler, n=3, image_size=32, sampler="ddim", steps=2, seed=0, progress=False)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32


def test_same_seed_same_samples(scheduler):
    G = UNet(1, 8)
    kw = dict(n=2, image_size=32, sampler="ddim", steps=3, eta=1.0, progress=False)
    a, b = sample(G, scheduler, seed=5, **kw), sample(G, scheduler, seed=5, **kw)
    c = sample(G, scheduler, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, sample(G, scheduler, seed=6, **kw))
    assert sample(G, scheduler, seed=5, batch_size=1, **kw).shape == a.shape


def test_trajectory_keys_and_mode_restored(scheduler):
    G = UNet(1, 8).train()
    x, traj = sample(G, scheduler, n=2, image_size=32, sampler="ddim", steps=5, seed=0,
                     trajectory_at=[T - 1, 25, 0], progress=False)
    assert sorted(traj) == [0, 25, T - 1] and all(v.shape == x.shape for v in traj.values())
    noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(traj[T - 1], noise)    # the chain starts from the seeded noise, drawn on the CPU
    assert G.training                         # sample() ran in eval mode and put it back
    with pytest.raises(ValueError, match="every t must lie in"):
        sample(G, scheduler, n=1, image_size=32, trajectory_at=[T], progress=False)


def test_bad_arguments(scheduler):
    G = UNet(1, 8)
    with pytest.raises(ValueError, match="use sampler='ddim'"):
        sample(G, scheduler, n=1, image_size=32, sampler="ddpm", steps=10)
    with pytest.raises(ValueError, match="multiple of 8"):
        sample(G, scheduler, n=1, image_size=30)


def test_to_unit():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0])
    assert torch.equal(to_unit(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_generate_and_visualize_writes_pngs(scheduler, tmp_path, channels, mode):
    images = generate_and_visualize(UNet(channels, 8), scheduler, n=5, image_size=32, steps=2, show=False,
                                    save_grid=tmp_path / "res" / "grid.png", save_individual=tmp_path / "ind")
    assert images.shape == (5, channels, 32, 32) and 0 <= images.min() and images.max() <= 1
    files = sorted((tmp_path / "ind").glob("*.png"))
    assert len(files) == 5
    first = Image.open(files[0])
    assert first.mode == mode and first.size == (32, 32)
    expected = (images[0] * 255).round().to(torch.uint8).permute(1, 2, 0).squeeze(-1)
    assert torch.equal(torch.from_numpy(__import__("numpy").array(first)), expected)
    assert Image.open(tmp_path / "res" / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)   # 3 x 2 tiles, 2 px gaps


@pytest.mark.parametrize("kwargs,message", [
    (dict(eta=float("nan")), r"eta=nan must lie in \[0, 1\]"), (dict(eta=-1.0), r"eta=-1.0 must lie in \[0, 1\]"),
    (dict(eta=2), r"eta=2 must lie in \[0, 1\]"), (dict(batch_size=0), "batch_size=0 must be a positive integer"),
    (dict(batch_size=-2), "batch_size=-2 must be a positive integer"),
])
def test_bad_sampling_values_are_refused(scheduler, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(UNet(1, 8), scheduler, n=2, image_size=32, sampler="ddim", steps=2, progress=False, **kwargs)


def test_fast_default_is_stochastic_ddim(scheduler):
    """generate_and_visualize's default is FAST_SAMPLER (DDIM-50, eta = 1): the same images as sample() with
    those arguments, and not the deterministic eta = 0 path."""
    from diffgan_lib.sampling import FAST_SAMPLER
    assert FAST_SAMPLER == dict(sampler="ddim", steps=50, eta=1.0)
    G = UNet(1, 8)
    shown = generate_and_visualize(G, scheduler, n=2, image_size=32, steps=3, show=False)
    kw = dict(n=2, image_size=32, sampler="ddim", steps=3, seed=0, progress=False, clip_x0=True)
    assert torch.equal(shown, to_unit(sample(G, scheduler, eta=1.0, **kw)))
    assert not torch.equal(shown, to_unit(sample(G, scheduler, eta=0.0, **kw)))
    assert torch.equal(generate_and_visualize(G, scheduler, n=2, image_size=32, steps=3, eta=0.0, show=False),
                       to_unit(sample(G, scheduler, eta=0.0, **kw)))


def test_ddim_over_given_timesteps(scheduler):
    """DDIM(timesteps=...) walks exactly the levels given (a one-call image finished from t = 50), recovers x0
    from a perfect oracle started at its first level, and refuses levels that do not descend within [0, T)."""
    from diffgan_lib.sampling import DDIM
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    ddim = DDIM(scheduler, eta=0.0, timesteps=[30, 20, 10])
    assert ddim.timesteps() == [30, 20, 10] and ddim.evaluations() == 3
    x_t, _ = scheduler.add_noise(x0, torch.full((4,), 30), torch.randn(4, 1, 8, 8))
    assert torch.allclose(ddim.sample(Oracle(x0, scheduler), x_t), x0, atol=1e-4)
    for bad in ([], [10, 20], [30, 30], [T, 10], [10, -1], [30.7, 20], [True, False]):
        with pytest.raises(ValueError, match="must be ints that descend strictly"):
            DDIM(scheduler, timesteps=bad)
