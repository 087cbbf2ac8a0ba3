"""Agreement with the reference implementation, diffusers' DDPMScheduler and DDIMScheduler.

Runs only where diffusers is installed (it is not a course dependency): `pip install diffusers`.
Tolerances from the issue: betas and add_noise to 1e-5, a sampler step to 1e-3.
"""
import pytest
import torch

from diffgan_lib import DiffusionScheduler

diffusers = pytest.importorskip("diffusers")

NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "quadratic": "scaled_linear", "sigmoid": "sigmoid"}


def _ddpm(schedule, **kw):
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                   beta_schedule=NAMES[schedule], clip_sample=False, **kw)


@pytest.mark.parametrize("schedule", list(NAMES))
def test_betas_alpha_hat_and_add_noise_match(schedule):
    ours, ref = DiffusionScheduler(schedule=schedule, device="cpu"), _ddpm(schedule)
    assert torch.allclose(ours.betas, ref.betas, atol=1e-5, rtol=0)
    assert torch.allclose(ours.alpha_hat, ref.alphas_cumprod, atol=1e-5, rtol=0)
    x0, noise = torch.rand(4, 1, 8, 8) * 2 - 1, torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    assert torch.allclose(ours.add_noise(x0, t, noise)[0], ref.add_noise(x0, noise, t), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variance", ["fixed_large", "fixed_small"])
@pytest.mark.parametrize("t", [999, 500, 20, 1, 0])
def test_ddpm_step_matches(variance, t):
    ours, ref = DiffusionScheduler(device="cpu"), _ddpm("linear", variance_type=variance)
    ref.set_timesteps(1000)
    x_t, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(7))   # the draw diffusers makes
    ref_out = ref.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    assert torch.allclose(ours.step(eps, t, x_t, noise=z, variance=variance), ref_out, atol=1e-3, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_steps_match_over_a_50_step_chain(eta):
    ours = DiffusionScheduler(device="cpu")
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                  clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    ref.set_timesteps(50)
    steps = ours.timesteps_for(50)
    assert steps == ref.timesteps.tolist()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=gen)
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        eps, z = torch.sin(x * 3 + t / 100), torch.randn(x.shape, generator=gen)   # a fixed fake "model"
        want = ref.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        got = ours.ddim_step(eps, t, t_prev, x, eta=eta, noise=z)
        assert torch.allclose(got, want, atol=1e-3, rtol=0), t
        x = want
