"""Small tests of the helpers behind notebooks 05-07: plots, the scrubber, course, exercises."""
import inspect
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from diffgan_lib.course.exercises import CORRECT, INCORRECT, nb05, nb06, nb07
from diffgan_lib import DiffusionScheduler
from diffgan_lib import UNet
from diffgan_lib.course.viz_training import plot_losses, plot_metric_bars, show_grid_strip, show_pairs, show_rows, show_trajectory, smooth
from diffgan_lib.course.widgets_sampling import draw_trajectory_step, record_trajectory, trajectory_scrubber_static


def test_smooth_skips_nan():
    out = smooth([1.0, float("nan"), 3.0], window=2)
    assert out[0] == 1.0 and out[1] == 1.0 and out[2] == 3.0


def test_plot_losses_draws_chance_line():
    h = {"step": [1, 2, 3], "diff": [1.0, 0.8, 0.6], "adv": [0.7, 0.7, 0.7], "D": [1.3, float("nan"), 1.4]}
    fig = plot_losses(h, window=2, mark_step=2)
    ys = [line.get_ydata()[0] for line in fig.axes[2].lines]
    assert any(math.isclose(y, 2 * math.log(2)) for y in ys)
    plt.close(fig)


def test_image_helpers_build_figures():
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    for fig in (show_grid_strip({"a": x, "b": x}, nrow=2), show_trajectory({999: x, 0: x}, rows=2, x0_pred={999: x, 0: x}),
                show_pairs(x, x, [0, 1], [2, 3], [0.1, 0.2], 0.5),
                plot_metric_bars({"m": {"fd": 1.0, "kid": 0.1}}, metrics=("fd", "kid"), baseline={"fd": 0.5})):
        assert fig.axes
        plt.close(fig)


def test_show_rows_lines_up_one_row_per_set_at_the_asked_tile_size():
    x = torch.rand(10, 1, 8, 8) * 2 - 1
    fig = show_rows({"first": x, "second": x[:3]}, tile_px=96, title="t")
    assert len(fig.axes) == 2 * 8                              # at most 8 columns
    width_px = fig.axes[0].get_window_extent().width
    assert 85 <= width_px <= 100, width_px                     # a tile is about 96 screen pixels wide
    assert [t.get_text() for t in fig.axes[0].texts] == ["first"] and not fig.axes[8 + 3].images   # row 2 has 3
    plt.close(fig)


@pytest.fixture(scope="module")
def record():
    torch.manual_seed(0)
    G = UNet(1, 8).eval()
    return record_trajectory(G, DiffusionScheduler(20, device="cpu"), ts=[19, 10, 0], n=2, image_size=8, seed=0,
                             clip_x0=True)


def test_record_trajectory(record):
    assert record["t"] == [19, 10, 0]
    assert record["x_t"][10].shape == record["x0_pred"][10].shape == (2, 1, 8, 8)
    assert record["x0_pred"][19].abs().max() <= 1
    fig = trajectory_scrubber_static(record)
    assert [a.get_title() for a in fig.axes] == [f"x_t, t = 10 (±{record['window'][10]:.1f})", "predicted x0, t = 10"]
    assert 1.0 <= record["window"][0] < record["window"][10] < record["window"][19]   # wider as the noise grows
    assert fig.axes[0].images[0].get_clim() == (-record["window"][10], record["window"][10])
    plt.close(fig)
    with pytest.raises(ValueError, match="not recorded"):
        draw_trajectory_step(record, 5)


EXERCISES = [getattr(m, n) for m in (nb05, nb06, nb07) for n in m.__all__]


def _train_step_variant(slip):
    """The pure-diffusion step with one typical slip (None: correct)."""
    def step(G, G_ema, opt, scheduler, x0, t, noise, decay):
        a = scheduler.alpha_hat[t].view(-1, 1, 1, 1)
        x_t = a * x0 + (1 - a) * noise if slip == "x_t" else a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(G(x_t, t), x0 if slip == "target" else noise)
        if slip != "zero_grad":
            opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                d = 1 - decay if slip == "swap" else decay
                p_ema.mul_(d).add_(p, alpha=1 - d)
        return loss.item()
    return step


def _ddpm_variant(slip):
    def loop(G, scheduler, x, noises):
        for t in reversed(range(scheduler.T)):
            a, b, a_hat = scheduler.alphas[t], scheduler.betas[t], scheduler.alpha_hat[t]
            x = (x - b / (1 - a_hat).sqrt() * G(x, torch.full((len(x),), t, dtype=torch.long))) / a.sqrt()
            if t > 0 or slip == "noise_at_0":
                x = x + (b if slip == "sigma" else b.sqrt()) * noises[t]
        return x
    return loop


def _fd_variant(slip):
    def fd(a, b):
        a, b = a.double(), b.double()
        ca, cb = torch.cov(a.T), torch.cov(b.T)
        cross = (ca * cb).sqrt().trace() if slip == "entrywise" else torch.linalg.eigvals(ca @ cb).real.sqrt().sum()
        return (((a.mean(0) - b.mean(0)) ** 2).sum() + ca.trace() + cb.trace() - (1 if slip == "once" else 2) * cross).item()
    return fd


# (exercise) -> [(wrong answer, a fragment of the message it must get)]
WRONG = {
    "train_step": [(_train_step_variant("x_t"), "square roots"), (_train_step_variant("target"), "noise predictor"),
                   (_train_step_variant("zero_grad"), "cleared before backward"), (_train_step_variant("swap"), "swapped")],
    "gated_adv_loss": [(lambda D, x, t, t_max: torch.nn.functional.softplus(-D(x)).mean(), "every image went in")],
    "rank_shard": [(lambda n, w, r: list(range(n))[r::w], "same number of images"),
                   (lambda n, w, r: nb05._rank_shard(n, w, r)[::-1], "wrong order")],
    "ddpm_sample": [(_ddpm_variant("noise_at_0"), "last step (t = 0) too"), (_ddpm_variant("sigma"), "standard deviation")],
    "ddim_step": [(lambda x_t, eps, a, a_prev, eta, z: nb06._ddim_step(x_t, eps, a, a_prev, 0.0, z), "deterministic step")],
    "frechet_distance": [(_fd_variant("once"), "subtracted twice"), (_fd_variant("entrywise"), "square root of each entry")],
    "nearest_train_distance": [(lambda s, t: torch.cdist(s.flatten(1), t.flatten(1)).min(1).values, "Euclidean distance")],
    "copy_scores": [(lambda a, b: ((a.mean() / b.mean()).item(), 0.1), "outliers cannot drag"),
                    (lambda a, b: ((a.median() / b.median()).item(), (a < torch.quantile(b, 0.05)).double().mean().item()),
                     "at or below")],
}


def _solution_lines(ex):
    return [ln.split("#")[0].strip() for ln in inspect.getsource(ex.reference).splitlines()[1:]]


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.title)
def test_reference_passes_and_wrong_answers_get_their_message(ex, capsys, monkeypatch):
    monkeypatch.delenv("DIFFGAN_FILL_SOLUTIONS", raising=False)
    assert ex.check(ex.reference) == CORRECT
    assert set(WRONG) == {e.title for e in EXERCISES}
    for answer, fragment in WRONG[ex.title]:
        assert ex.check(answer) == INCORRECT, fragment
        out = capsys.readouterr().out
        assert "incorrect" in out and fragment in out, out
        assert not [ln for ln in _solution_lines(ex) if len(ln) > 8 and ln in out], out


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.title)
def test_hint_nudges_without_a_line_of_the_solution(ex, capsys):
    ex.hint()
    out = capsys.readouterr().out
    assert not [ln for ln in _solution_lines(ex) if len(ln) > 8 and ln in out], out


def _sigma(a, a_prev, eta):
    return eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()


def _step_parts(x_t, eps, a, clip=True, rederive=True):
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    x0 = x0.clamp(-1, 1) if clip else x0
    return x0, ((x_t - a.sqrt() * x0) / (1 - a).sqrt() if rederive else eps)


def _ddim(clip=True, rederive=True, eta_used=None, split=True, noise=True, a_dir=False):
    def step(x_t, eps_pred, a, a_prev, eta, z):
        x0, eps = _step_parts(x_t, eps_pred, a, clip, rederive)
        s = _sigma(a, a_prev, eta if eta_used is None else eta_used)
        var = (1 - a) if a_dir else (1 - a_prev - (s ** 2 if split else 0))
        return a_prev.sqrt() * x0 + var.sqrt() * eps + (s * z if noise else 0)
    return step


DDIM_STEP_MISTAKES = [   # typical mistakes in nb06.ddim_step, each with a fragment of the message it must get
    (lambda x_t, eps, a, a_prev, eta, z: _step_parts(x_t, eps, a)[0], "x0_pred itself"),
    (_ddim(clip=False), "must be clipped"),
    (_ddim(rederive=False), "no longer satisfy eq. 4"),
    (_ddim(eta_used=0.0), "deterministic step"),
    (_ddim(split=False), "variances no longer add up"),
    (_ddim(noise=False), "fresh noise"),
    (_ddim(eta_used=1.0), "deterministic"),
    (_ddim(a_dir=True, eta_used=0.0), "*earlier* timestep"),
]


@pytest.mark.parametrize("answer,fragment", DDIM_STEP_MISTAKES, ids=[f for _, f in DDIM_STEP_MISTAKES])
def test_ddim_step_mistakes_get_their_message_without_the_solution(answer, fragment, capsys):
    assert nb06.ddim_step.check(answer) == INCORRECT
    out = capsys.readouterr().out
    assert fragment in out, out
    assert not [ln for ln in _solution_lines(nb06.ddim_step) if len(ln) > 8 and ln in out], out


def test_ddim_step_check_compares_with_the_library_at_eta_0_and_1():
    from diffgan_lib.course.exercises.nb06 import _T, _T_PREV, _ddim_inputs
    sched = DiffusionScheduler(1000, device="cpu")
    x_t, eps, a, a_prev, _, z = _ddim_inputs()
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    assert 0 < (x0.abs() > 1).float().mean() < 1          # some pixels of x0_pred are clipped, not all
    # the check runs eta = 0 and eta = 1: the library's own step passes, a step off by 1e-3 does not
    lib = lambda x_t_, eps_, a_, a_prev_, eta, z_: sched.ddim_step(eps_, _T, _T_PREV, x_t_, eta=eta, noise=z_,  # noqa: E731
                                                                   clip_x0=True)
    assert nb06.ddim_step.test(lib) is None
    assert nb06.ddim_step.test(lambda *args: nb06._ddim_step(*args) + 1e-3) is not None


def test_ddpm_sample_check_compares_with_the_library_step():
    # the library's scheduler.step in a loop passes; a loop that skips the last step does not
    def lib(G, sched, x, noises):
        for t in reversed(range(sched.T)):
            tt = torch.full((len(x),), t, dtype=torch.long)
            x = sched.step(G(x, tt), tt, x, noise=noises[t])
        return x
    assert nb06.ddpm_sample.test(lib) is None
    assert nb06.ddpm_sample.test(lambda G, s, x, n: _ddpm_variant(None)(G, s, x, n) * 1.001) is not None


def test_train_step_check_runs_the_library_step_and_catches_a_stale_ema():
    from diffgan_lib.course.exercises.nb05 import _train_step
    assert nb05.train_step.test(_train_step) is None

    def ema_from_old_weights(G, G_ema, opt, scheduler, x0, t, noise, decay):
        old = [p.detach().clone() for p in G.parameters()]
        ema = [p.detach().clone() for p in G_ema.parameters()]
        loss = _train_step(G, G_ema, opt, scheduler, x0, t, noise, decay)
        with torch.no_grad():
            for p_ema, e, p in zip(G_ema.parameters(), ema, old):
                p_ema.copy_(decay * e + (1 - decay) * p)
        return loss
    assert "before* the step" in (nb05.train_step.test(ema_from_old_weights) or "")


def test_rank_shard_matches_the_distributed_sampler():
    from torch.utils.data import DistributedSampler
    for n, w in ((10, 4), (7, 3), (2048, 8)):
        shards = [nb05._rank_shard(n, w, r) for r in range(w)]
        assert all(s == list(DistributedSampler(range(n), num_replicas=w, rank=r, shuffle=False)) for r, s in enumerate(shards))
        assert len({len(s) for s in shards}) == 1


def test_frechet_distance_reference_matches_the_library_on_real_sized_features():
    from diffgan_lib.eval import frechet_distance
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 32, generator=g), torch.randn(200, 32, generator=g) * 1.2 + 0.1
    assert math.isclose(nb07._frechet(a, b), frechet_distance(a, b), rel_tol=1e-6)


def test_speckled_counts_samples_rougher_than_every_real_image():
    from diffgan_lib.course.speckle import roughness, speckled
    real = torch.rand(5, 1, 8, 8) * 0.1
    noisy = torch.cat([real[:1], torch.randn(1, 1, 8, 8)])
    assert speckled(noisy, real).tolist() == [False, True]
    assert roughness(torch.zeros(2, 1, 8, 8)).tolist() == [0.0, 0.0]


def test_ensure_checkpoint_returns_existing(tmp_path):
    from diffgan_lib.course import ensure_checkpoint
    p = tmp_path / "x.pth"
    p.write_bytes(b"")
    assert ensure_checkpoint(p) == p


def test_load_results_reads_committed_files_and_names_the_known_ones():
    from diffgan_lib.course import load_results
    assert "real_vs_real" in load_results("pretrained")         # benchmarks/results/pretrained.json
    with pytest.raises(FileNotFoundError, match="known results: .*pretrained"):
        load_results("no_such_study")
