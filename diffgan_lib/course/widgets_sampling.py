"""The trajectory scrubber of notebook 06: a t slider over a recorded reverse chain.

``record_trajectory`` runs the sampler once and keeps, at a few timesteps t, the state x_t and the
network's guess of the clean image x0_pred = (x_t - sqrt(1 - alpha_hat_t) eps_pred) / sqrt(alpha_hat_t)
(Ho et al. 2020, eq. 15). ``draw_trajectory_step`` draws one t; ``trajectory_scrubber_static`` draws
the default state (for GitHub, which does not render widgets); ``trajectory_scrubber`` is the live
widget (ipywidgets imported lazily, inside the function).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..sampling import sample

__all__ = ["record_trajectory", "draw_trajectory_step", "trajectory_scrubber_static", "trajectory_scrubber"]


@torch.inference_mode()
def record_trajectory(G, scheduler, ts, n: int = 1, image_size: int = 32, seed: int = 0,
                      sampler: str = "ddpm", steps: int | None = None, clip_x0: bool = False) -> dict:
    """{"t": sorted ts (descending), "x_t": {t: (n, C, S, S)}, "x0_pred": {t: (n, C, S, S)}, "x": final,
    "window": {t: w}}: x_t is drawn in [-w, w], w = sqrt(alpha_hat_t) + 3 sqrt(1 - alpha_hat_t) (the image's
    range plus 3 sd of the noise), so its noise is not clipped to [-1, 1] and made to look binary."""
    ts = sorted({int(t) for t in ts}, reverse=True)
    x, traj = sample(G, scheduler, n=n, image_size=image_size, sampler=sampler, steps=steps, seed=seed,
                     trajectory_at=ts, clip_x0=clip_x0, progress=False)
    dev = next(G.parameters()).device
    x0_pred, window = {}, {}
    for t in ts:
        x_t = traj[t].to(dev)
        eps = G(x_t, torch.full((n,), t, dtype=torch.long, device=dev))
        a = scheduler.alpha_hat[t]
        x0_pred[t] = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1).cpu()
        window[t] = float(a.sqrt() + 3 * (1 - a).sqrt())
    return {"t": ts, "x_t": {t: v.cpu() for t, v in traj.items()}, "x0_pred": x0_pred, "x": x.cpu(), "window": window}


def draw_trajectory_step(record: dict, t: int, index: int = 0):
    """x_t (in its own window, see ``record_trajectory``) and x0_pred (in [-1, 1]) at the recorded timestep t
    (image ``index``), side by side; returns the figure."""
    if t not in record["x_t"]:
        raise ValueError(f"t={t} was not recorded; recorded timesteps: {record['t']}")
    fig, axes = plt.subplots(1, 2, figsize=(4.2, 2.3), dpi=80)
    w = record.get("window", {}).get(t, 1.0)
    for ax, key, title, lim in zip(axes, ("x_t", "x0_pred"), (f"x_t, t = {t} (±{w:.1f})", f"predicted x0, t = {t}"), (w, 1.0)):
        ax.imshow(record[key][t][index, 0].float().numpy(), cmap="gray", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def trajectory_scrubber_static(record: dict, t: int | None = None, index: int = 0):
    """The scrubber's default picture (the middle recorded t unless ``t`` is given), as a figure."""
    ts = record["t"]
    return draw_trajectory_step(record, ts[len(ts) // 2] if t is None else t, index)


def trajectory_scrubber(record: dict, index: int = 0):
    """A slider over the recorded timesteps that redraws x_t next to x0_pred; returns the widget box."""
    import ipywidgets as widgets   # lazy: the library works without ipywidgets
    from IPython.display import display

    ts = record["t"]
    slider = widgets.SelectionSlider(options=ts, value=ts[len(ts) // 2], description="t",
                                     continuous_update=False, layout=widgets.Layout(width="420px"))
    out = widgets.Output()

    def show(change=None):
        with out:
            out.clear_output(wait=True)
            draw_trajectory_step(record, slider.value, index)
            plt.show()

    slider.observe(show, names="value")
    show()
    box = widgets.VBox([slider, out])
    display(box)
    return box
