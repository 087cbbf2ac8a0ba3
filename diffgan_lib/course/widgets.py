"""Interactive widgets of the course (ipywidgets 8), each with a static twin.

A widget function (``schedule_explorer``, ``d_loss_explorer``) returns a widget to display as the last
line of a cell; moving a control redraws its figure. Its twin (``..._static``) draws the same figure
in the widget's default state with plain matplotlib, for readers without a live kernel (GitHub, a
PDF) and for tests. ipywidgets is imported inside the widget functions only, so the rest of
``diffgan_lib`` works without it. Every figure comes from a ``draw_...`` function of this module.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ..core.scheduler import SCHEDULES, DiffusionScheduler
from .viz import DPI, as_image, plot_gan_losses, plot_schedules

__all__ = ["draw_schedule", "schedule_explorer", "schedule_explorer_static",
           "draw_d_loss", "d_loss_explorer", "d_loss_explorer_static"]

SCHEDULE_DEFAULTS = dict(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02, t=250)
D_LOSS_DEFAULTS = dict(s_real=0.0, s_fake=0.0)


def _fixed_noise(x0: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- schedule explorer
def draw_schedule(x0: torch.Tensor, noise: torch.Tensor, schedule: str = "linear", T: int = 1000,
                  beta_start: float = 1e-4, beta_end: float = 0.02, t: int = 250):
    """beta_t, alpha_hat_t and SNR_t of one schedule, and x0 (C, S, S) noised at t with ``noise``.

    x_t is drawn in the window [-3, 3] (3 sd of the noise), so the noise is not clipped to black and white.

    An invalid combination (beta_end <= beta_start, ...) draws the scheduler's error message instead.
    """
    fig = plt.figure(figsize=(10, 2.6), dpi=DPI)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    try:
        s = DiffusionScheduler(T, beta_start, beta_end, schedule, device="cpu")
    except ValueError as err:
        for ax in axes:
            ax.axis("off")
        fig.text(0.5, 0.5, f"{err}", ha="center", va="center", wrap=True, fontsize=9, color="tab:red")
        return fig
    t = min(int(t), T - 1)
    plot_schedules({schedule: s}, t_mark=t, axes=axes[:3])
    x_t, _ = s.add_noise(x0[None], t, noise[None])
    axes[3].imshow(as_image(x_t[0]), cmap="gray", vmin=-3, vmax=3)   # 3 sd of the noise: [-1, 1] would clip it
    axes[3].set_title(f"x_t at t = {t}, window [-3, 3]\nalpha_hat = {s.alpha_hat[t]:.4f}", fontsize=9)
    axes[3].axis("off")
    fig.tight_layout(pad=0.3)
    return fig


def schedule_explorer_static(x0: torch.Tensor, seed: int = 0, **overrides):
    """The schedule explorer's figure in its default state (linear, T = 1000, t = 250)."""
    return draw_schedule(x0, _fixed_noise(x0, seed), **{**SCHEDULE_DEFAULTS, **overrides})


def schedule_explorer(x0: torch.Tensor, seed: int = 0):
    """Schedule, T, beta_start, beta_end and t controls above the figure of :func:`draw_schedule`.

    x0: one image (C, S, S) in [-1, 1]; the noise is drawn once from ``seed``, so moving t shows the
    same noise growing. beta_start / beta_end are disabled for "cosine", which does not use them.
    """
    import ipywidgets as W
    noise = _fixed_noise(x0, seed)
    d = SCHEDULE_DEFAULTS
    style, wide = {"description_width": "70px"}, W.Layout(width="320px")
    controls = dict(
        schedule=W.Dropdown(options=SCHEDULES, value=d["schedule"], description="schedule", style=style),
        T=W.IntSlider(d["T"], min=50, max=2000, step=50, description="T", style=style, layout=wide,
                      continuous_update=False),
        beta_start=W.FloatLogSlider(d["beta_start"], base=10, min=-5, max=-2, step=0.1, description="β_start",
                                    readout_format=".1e", style=style, layout=wide, continuous_update=False),
        beta_end=W.FloatLogSlider(d["beta_end"], base=10, min=-3, max=-0.3, step=0.05, description="β_end",
                                  readout_format=".3f", style=style, layout=wide, continuous_update=False),
        t=W.IntSlider(d["t"], min=0, max=d["T"] - 1, description="t", style=style, layout=wide,
                      continuous_update=False),
    )
    c = controls

    def on_T(change):              # t must stay in [0, T - 1]; the slider clamps its value itself
        c["t"].max = change["new"] - 1

    def on_schedule(change):
        c["beta_start"].disabled = c["beta_end"].disabled = change["new"] == "cosine"

    c["T"].observe(on_T, names="value")
    c["schedule"].observe(on_schedule, names="value")

    def show(**kwargs):
        draw_schedule(x0, noise, **kwargs)
        plt.show()

    out = W.interactive_output(show, controls)
    rows = W.VBox([W.HBox([c["schedule"], c["T"], c["t"]]), W.HBox([c["beta_start"], c["beta_end"]])])
    return W.VBox([rows, out])


# ----------------------------------------------------------------------------- D_loss explorer
def draw_d_loss(s_real: float = 0.0, s_fake: float = 0.0):
    """D's two loss curves with the current scores marked, and D_loss compared with 2 ln 2."""
    real_loss = F.softplus(torch.tensor(-float(s_real))).item()
    fake_loss = F.softplus(torch.tensor(float(s_fake))).item()
    d_loss = real_loss + fake_loss
    fig = plot_gan_losses(marks={f"real: s = {s_real:+.1f}": (s_real, real_loss, "C0"),
                                 f"fake: s = {s_fake:+.1f}": (s_fake, fake_loss, "C1")})
    chance = 2 * math.log(2)
    verdict = ("at chance" if abs(d_loss - chance) < 0.01 else
               "D is winning" if d_loss < chance else "D does worse than chance")
    fig.axes[0].set_title(f"D_loss = {real_loss:.4f} + {fake_loss:.4f} = {d_loss:.4f}\n"
                          f"(2 ln 2 = {chance:.4f}: {verdict})", fontsize=9)
    fig.set_size_inches(6, 3.4)
    fig.tight_layout()
    return fig


def d_loss_explorer_static(**overrides):
    """The D_loss explorer's figure in its default state (both scores 0: a D at chance)."""
    return draw_d_loss(**{**D_LOSS_DEFAULTS, **overrides})


def d_loss_explorer():
    """Two sliders, D's score on a real and on a fake image, above :func:`draw_d_loss`."""
    import ipywidgets as W
    style, wide = {"description_width": "90px"}, W.Layout(width="360px")
    controls = {name: W.FloatSlider(value, min=-6, max=6, step=0.5, description=label, style=style,
                                    layout=wide, continuous_update=False)
                for (name, value), label in zip(D_LOSS_DEFAULTS.items(), ("score on real", "score on fake"))}

    def show(**kwargs):
        draw_d_loss(**kwargs)
        plt.show()

    return W.VBox([W.HBox(list(controls.values())), W.interactive_output(show, controls)])
