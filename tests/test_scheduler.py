"""Closed-form checks of DiffusionScheduler (forward process, DDPM and DDIM steps, schedules)."""
import math

import pytest
import torch

from diffgan_lib import DiffusionScheduler

SCHEDULES = ["linear", "cosine", "quadratic", "sigmoid"]


@pytest.fixture
def sched():
    return DiffusionScheduler(device="cpu")


def test_seed_names_shapes_and_dtype(sched):
    assert sched.T == 1000
    for v in (sched.betas, sched.alphas, sched.alpha_hat):
        assert v.shape == (1000,) and v.dtype == torch.float32
    assert sched.betas[0].item() == pytest.approx(1e-4) and sched.betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alpha_hat_is_cumulative_product(schedule):
    s = DiffusionScheduler(schedule=schedule, device="cpu")
    expected = torch.tensor([math.prod(1 - b for b in s.betas.double().tolist()[: i + 1]) for i in (0, 9, 499, 999)], dtype=torch.float64)
    assert torch.allclose(s.alpha_hat[[0, 9, 499, 999]].double(), expected, rtol=1e-4, atol=1e-7)
    assert torch.all(s.alpha_hat[1:] < s.alpha_hat[:-1]), "signal must decrease with t"
    assert torch.allclose(s.alphas, 1 - s.betas)


def test_cosine_follows_its_cos2_formula():
    T, s_off = 1000, 0.008
    s = DiffusionScheduler(schedule="cosine", device="cpu")
    f = lambda u: math.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2
    for t in (0, 100, 500, 900):   # away from the beta cap at the very end
        assert s.alpha_hat[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-4)
    assert s.betas.max().item() <= 0.999 + 1e-7


def test_quadratic_is_linear_in_sqrt_beta():
    s = DiffusionScheduler(schedule="quadratic", device="cpu")
    root = s.betas.sqrt()
    assert torch.allclose(root[1:] - root[:-1], (root[1] - root[0]).expand(999), atol=1e-6)


def test_add_noise_at_t0_is_almost_x0(sched):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    x_t, noise = sched.add_noise(x0, torch.zeros(4, dtype=torch.long))
    # sqrt(alpha_hat_0) = sqrt(1 - 1e-4) and sqrt(1 - alpha_hat_0) = 0.01
    assert (x_t - x0).abs().max().item() < 0.01 * noise.abs().max().item() + 1e-4
    assert noise.shape == x0.shape


def test_add_noise_keeps_unit_variance_at_every_t(sched):
    x0 = torch.randn(4000, 1, 4, 4)
    for t in (0, 10, 250, 500, 999):
        x_t, _ = sched.add_noise(x0, torch.full((4000,), t))
        assert x_t.var().item() == pytest.approx(1.0, abs=0.03), t


def test_add_noise_uses_given_noise_and_per_sample_t(sched):
    x0 = torch.ones(2, 1, 2, 2)
    noise = torch.zeros_like(x0)
    x_t, n = sched.add_noise(x0, torch.tensor([0, 999]), noise)
    assert n is noise
    assert torch.allclose(x_t[0], sched.alpha_hat[0].sqrt().expand(1, 2, 2))
    assert torch.allclose(x_t[1], sched.alpha_hat[999].sqrt().expand(1, 2, 2))


def test_perfect_eps_recovers_x0_through_predict_x0_and_ddim(sched):
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    t = torch.tensor([5, 400, 999])
    x_t, eps = sched.add_noise(x0, t)
    assert torch.allclose(sched.predict_x0(x_t, t, eps), x0, atol=2e-3)
    assert torch.allclose(sched.ddim_step(eps, t, -1, x_t), x0, atol=2e-3)


def test_ddim_deterministic_chain_with_oracle_lands_on_x0(sched):
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    eps = torch.randn_like(x0)
    steps = sched.timesteps_for(10)
    x = sched.add_noise(x0, steps[0], eps)[0]
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        x = sched.ddim_step(eps, t, t_prev, x)   # the true noise is constant along a DDIM path
    assert torch.allclose(x, x0, atol=1e-3)


def test_ddpm_step_matches_posterior_mean_and_has_no_noise_at_t0(sched):
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    t = 300
    x_t, eps = sched.add_noise(x0, t)
    zero = torch.zeros_like(x0)
    mean = sched.step(eps, t, x_t, noise=zero)
    a_hat, a_hat_prev, b = sched.alpha_hat[t], sched.alpha_hat[t - 1], sched.betas[t]
    posterior = (a_hat_prev.sqrt() * b / (1 - a_hat)) * x0 + ((1 - b).sqrt() * (1 - a_hat_prev) / (1 - a_hat)) * x_t
    assert torch.allclose(mean, posterior, atol=1e-4)
    assert torch.allclose(sched.step(eps, t, x_t, noise=zero, clip_x0=True), posterior, atol=1e-4)
    x1, e1 = sched.add_noise(x0, 0)
    assert torch.equal(sched.step(e1, 0, x1, noise=torch.randn_like(x0)), sched.step(e1, 0, x1, noise=zero))


def test_ddpm_step_variances(sched):
    x_t = torch.zeros(20000, 1, 1, 1)
    eps = torch.zeros_like(x_t)
    t = 500
    large = sched.step(eps, t, x_t, variance="fixed_large").var().item()
    small = sched.step(eps, t, x_t, variance="fixed_small").var().item()
    b, a_hat, a_hat_prev = sched.betas[t].item(), sched.alpha_hat[t].item(), sched.alpha_hat[t - 1].item()
    assert large == pytest.approx(b, rel=0.05)
    assert small == pytest.approx((1 - a_hat_prev) / (1 - a_hat) * b, rel=0.05)


def test_step_generator_is_reproducible(sched):
    x = torch.randn(2, 1, 4, 4)
    eps = torch.randn_like(x)
    a = sched.step(eps, 10, x, generator=torch.Generator().manual_seed(1))
    b = sched.step(eps, 10, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_snr_decreases_and_matches_definition(sched):
    snr = sched.snr(torch.arange(1000))
    assert torch.all(snr[1:] < snr[:-1])
    assert snr[10].item() == pytest.approx((sched.alpha_hat[10] / (1 - sched.alpha_hat[10])).item())


def test_timesteps_for():
    s = DiffusionScheduler(device="cpu")
    assert s.timesteps_for(4) == [999, 749, 499, 249]
    assert s.timesteps_for(4, spacing="leading") == [750, 500, 250, 0]
    steps = s.timesteps_for(50)
    assert len(steps) == 50 and steps == sorted(steps, reverse=True) and steps[0] == 999
    assert s.timesteps_for(1000) == list(range(999, -1, -1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(schedule="exponential"), "unknown schedule 'exponential'.*linear, cosine"),
    (dict(beta_start=0.02, beta_end=1e-4), "beta_end=0.0001 must be larger than beta_start=0.02"),
    (dict(beta_start=0.01, beta_end=0.01), "must be larger"),
    (dict(beta_end=1.5), r"must both lie in \(0, 1\)"),
    (dict(beta_start=0.0), r"must both lie in \(0, 1\)"),
    (dict(timesteps=0), "timesteps=0 must be an integer >= 1"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionScheduler(device="cpu", **kwargs)


def test_bad_calls_are_refused(sched):
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"out of range \[0, 999\].*0..T-1"):
        sched.add_noise(x, torch.tensor([1000]))
    with pytest.raises(ValueError, match="variance='large'"):
        sched.step(x, 5, x, variance="large")
    with pytest.raises(ValueError, match=r"num_steps=0 must be an integer in \[1, 1000\]"):
        sched.timesteps_for(0)
    with pytest.raises(ValueError, match="t_prev out of range"):
        sched.ddim_step(x, 5, -2, x)
