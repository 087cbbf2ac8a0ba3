"""Small tests of the helpers behind notebooks 05-07: plots, the scrubber, course, exercises."""
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
    assert [a.get_title() for a in fig.axes] == ["x_t, t = 10", "predicted x0, t = 10"]
    plt.close(fig)
    with pytest.raises(ValueError, match="not recorded"):
        draw_trajectory_step(record, 5)


EXERCISES = [getattr(m, n) for m in (nb05, nb06, nb07) for n in m.__all__]
WRONG = {
    "generator_forwards": {"as_written": 1, "corrected": 1},
    "ema_update": lambda e, p, d: d * p + (1 - d) * e,
    "gated_adv_loss": lambda D, x, t, t_max: torch.nn.functional.softplus(-D(x)).mean(),
    "scale_out": {"images_per_step": 16, "steps_per_epoch": 128},
    "ddim_timesteps": lambda T, n: list(range(0, T, T // n)),
    "to_unit": lambda x: (x + 1) / 2,
    "ddim_step": lambda x0, eps, a, a_prev, eta, z: a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps,   # eta ignored
    "frechet_1d": lambda m1, s1, m2, s2: (m1 - m2) ** 2,
    "nn_ratio": lambda a, b: (a.mean() / b.mean()).item(),
    "nearest_train_distance": lambda s, t: torch.cdist(s.flatten(1), t.flatten(1)).min(1).values,
    "fraction_close": lambda a, b: 0.5,
}


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.title)
def test_reference_passes_and_wrong_fails(ex, capsys):
    assert ex.check(ex.reference) == CORRECT
    assert ex.check(WRONG[ex.title]) == INCORRECT
    out = capsys.readouterr().out
    assert "incorrect" in out


def _sigma(a, a_prev, eta):
    return eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()


DDIM_STEP_MISTAKES = [   # typical mistakes in nb06.ddim_step, each with a fragment of the message it must get
    (lambda x0, eps, a, a_prev, eta, z: x0, "x0_pred itself"),
    (lambda x0, eps, a, a_prev, eta, z: a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps, "deterministic step"),
    (lambda x0, eps, a, a_prev, eta, z: a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps + _sigma(a, a_prev, eta) * z,
     "variances no longer add up"),
    (lambda x0, eps, a, a_prev, eta, z: a_prev.sqrt() * x0 + (1 - a_prev - _sigma(a, a_prev, eta) ** 2).sqrt() * eps,
     "fresh noise"),
    (lambda x0, eps, a, a_prev, eta, z: (a_prev.sqrt() * x0 + (1 - a_prev - _sigma(a, a_prev, 1) ** 2).sqrt() * eps
                                         + _sigma(a, a_prev, 1) * z), "deterministic"),
    (lambda x0, eps, a, a_prev, eta, z: a_prev.sqrt() * x0 + (1 - a).sqrt() * eps, "*earlier* timestep"),
]


@pytest.mark.parametrize("answer,fragment", DDIM_STEP_MISTAKES, ids=[f for _, f in DDIM_STEP_MISTAKES])
def test_ddim_step_mistakes_get_their_message_without_the_solution(answer, fragment, capsys):
    import inspect
    assert nb06.ddim_step.check(answer) == INCORRECT
    out = capsys.readouterr().out
    assert fragment in out, out
    body = [ln.split("#")[0].strip() for ln in inspect.getsource(nb06.ddim_step.reference).splitlines()[1:]]
    assert not [ln for ln in body if len(ln) > 8 and ln in out], out


def test_ddim_step_check_compares_with_the_library_at_eta_0_and_1():
    from diffgan_lib.course.exercises.nb06 import _T, _T_PREV, _ddim_state
    sched = DiffusionScheduler(1000, device="cpu")
    x_t, eps, z, x0 = _ddim_state()
    assert torch.allclose(x0, sched.predict_x0(x_t, _T, eps))
    # the check runs eta = 0 and eta = 1: the library's own step passes, a step off by 1e-3 does not
    lib = lambda x0_, eps_, a, a_prev, eta, z_: sched.ddim_step(eps_, _T, _T_PREV, x_t, eta=eta, noise=z_)  # noqa: E731
    assert nb06.ddim_step.test(lib) is None
    assert nb06.ddim_step.test(lambda *args: nb06._ddim_step(*args) + 1e-3) is not None


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
