"""Plots for notebooks 05-07: loss curves with the 2 ln 2 line, sample strips, trajectories, metrics.

Images come in the training range [-1, 1] unless a function says otherwise; every image panel is
drawn with ``cmap="gray"``, a fixed window (vmin -1, vmax 1) and no axes. Figures are small
(about 80 dpi); the caller ends the cell with ``plt.show()``.
"""
from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np

from ..core.losses import D_LOSS_AT_CHANCE
from ..sampling import image_grid, to_unit

__all__ = ["smooth", "plot_losses", "show_grid_strip", "show_rows", "show_trajectory", "plot_metric_bars",
           "show_pairs", "show_sample_grids"]

DPI = 80


def smooth(values, window: int = 10) -> np.ndarray:
    """Running mean over ``window`` steps that skips NaN (steps without a D update); same length."""
    v = np.asarray(values, dtype=float)
    out = np.full_like(v, np.nan)
    for i in range(len(v)):
        chunk = v[max(0, i - window + 1): i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def plot_losses(history: dict, window: int = 10, title: str | None = None, mark_step: int | None = None):
    """Three panels from ``TrainResult.history``: Diff, Adv and D (with the chance line 2 ln 2).

    Thin lines are the raw per-step values, thick ones a ``window``-step running mean; ``mark_step``
    draws a dashed vertical line (e.g. where a resumed run started). Returns the figure.
    """
    steps = np.asarray(history["step"])
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), dpi=DPI)
    for ax, key, name in zip(axes, ("diff", "adv", "D"), ("Diff loss (MSE on eps)", "Adv loss (G)",
                                                          "D loss")):
        raw = np.asarray(history[key], dtype=float)
        ax.plot(steps, raw, lw=0.6, alpha=0.35, color="C0")
        ax.plot(steps, smooth(raw, window), lw=1.8, color="C0", label=f"mean of {window}")
        if key == "D":
            ax.axhline(D_LOSS_AT_CHANCE, color="C3", ls="--", lw=1.2, label="chance 2 ln 2 = 1.386")
        if mark_step is not None:
            ax.axvline(mark_step, color="gray", ls=":", lw=1.2, label=f"resumed at {mark_step}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _gray(ax, img, title=None):
    """One image (C, S, S) or (S, S) in [-1, 1] on ``ax``: gray, window [-1, 1], no axes."""
    arr = img.detach().float().cpu()
    arr = arr[0] if arr.dim() == 3 else arr
    ax.imshow(arr.numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")   # small PNGs, crisp pixels
    ax.axis("off")
    if title is not None:
        ax.set_title(title, fontsize=9)


def show_grid_strip(grids: dict, nrow: int = 4, title: str | None = None):
    """Side by side: {label: images (n, C, S, S) in [-1, 1]}, each tiled as a grid (e.g. per step)."""
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 2.9), dpi=DPI, squeeze=False)
    for ax, (label, imgs) in zip(axes[0], grids.items()):
        ax.imshow(image_grid(to_unit(imgs.float().cpu()), nrow), cmap="gray", vmin=0, vmax=255)
        ax.set_title(str(label), fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_rows(rows: dict, tile_px: int = 96, title: str | None = None, max_cols: int = 8):
    """One row per entry of ``rows`` ({label: images (n, C, S, S) in [-1, 1]}), the label on the left.

    Column j of every row is image j of each set, so sets drawn from the same starting noise line up
    (same seed, different samplers). Each tile is about ``tile_px`` screen pixels; at most ``max_cols``
    images per row.
    """
    cols = min(max_cols, max(len(v) for v in rows.values()))
    inch = tile_px / DPI
    fig, axes = plt.subplots(len(rows), cols, figsize=(inch * cols + 1.6, inch * len(rows) + (0.4 if title else 0.1)),
                             dpi=DPI, squeeze=False, gridspec_kw=dict(wspace=0.03, hspace=0.05))
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(imgs):
                _gray(ax, imgs[c])
            ax.axis("off")
        axes[r, 0].text(-0.08, 0.5, str(label), transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=1.5 / (inch * cols + 1.6), right=0.99, bottom=0.01,
                        top=1 - (0.4 if title else 0.05) / (inch * len(rows) + (0.4 if title else 0.1)))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_sample_grids(grids: dict, nrow: int = 4, title: str | None = None):
    """Alias of :func:`show_grid_strip` (one grid per model or per sampler)."""
    return show_grid_strip(grids, nrow, title)


def show_trajectory(traj: dict, rows: int | None = None, title: str | None = None, x0_pred: dict | None = None):
    """A t = T-1 ... 0 strip: {t: x_t (n, C, S, S)}; one row per image (up to ``rows``).

    With ``x0_pred`` ({t: predicted clean images}) a second row per image shows what the network
    believes x0 is at that t.
    """
    ts = sorted(traj, reverse=True)
    n = traj[ts[0]].shape[0] if rows is None else min(rows, traj[ts[0]].shape[0])
    per = 2 if x0_pred is not None else 1
    fig, axes = plt.subplots(n * per, len(ts), figsize=(1.25 * len(ts), 1.35 * n * per), dpi=DPI, squeeze=False)
    for i in range(n):
        for j, t in enumerate(ts):
            _gray(axes[i * per, j], traj[t][i], f"x_t, t = {t}" if i == 0 else None)
            if x0_pred is not None:
                _gray(axes[i * per + 1, j], x0_pred[t][i], f"x0_pred, t = {t}" if i == 0 else None)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_metric_bars(table: dict, metrics=("fd", "kid", "swd"), baseline: dict | None = None, title=None,
                     log: bool = True):
    """Grouped bars: {row name: {metric: value}}; one panel per metric, a dashed line at ``baseline``.

    ``log=True`` (default) puts each panel on a log axis, so a real-vs-real baseline 10-100x below the
    models stays visible; every bar is labelled with its value. Values <= 0 (KID can be slightly
    negative: it is an unbiased estimate of a quantity that is 0 for equal distributions) are drawn at
    the axis floor and labelled as they are.
    """
    names = list(table)
    panel_w = max(3.6, 0.6 * len(names) + 0.8)          # room for each bar's value label
    fig, axes = plt.subplots(1, len(metrics), figsize=(panel_w * len(metrics), 3.1), dpi=DPI, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        vals = np.array([table[r][m] for r in names], dtype=float)
        ref = baseline.get(m) if baseline is not None else None
        positive = np.concatenate([vals[vals > 0], [ref] if ref is not None and ref > 0 else []])
        floor = positive.min() / 3 if log and positive.size else 0.0
        ax.bar(range(len(names)), np.where(vals > floor, vals, floor) - floor, bottom=floor,
               color=[f"C{i}" for i in range(len(names))])
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.3g}", (i, max(v, floor)), ha="center", va="bottom", fontsize=7)
        if ref is not None:
            ax.axhline(ref, color="k", ls="--", lw=1, label=f"real vs real ({ref:.3g})")
            ax.legend(fontsize=7, loc="upper left")
        if log and positive.size:
            ax.set_yscale("log")
            ax.set_ylim(floor, positive.max() * 4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{m} (lower is better{', log scale' if log else ''})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_pairs(samples, train_images, sample_idx, train_idx, distances=None, heldout_median=None):
    """Nearest-neighbour pairs: generated sample (top) over its closest training image (bottom)."""
    k = len(sample_idx)
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.4), dpi=DPI, squeeze=False)
    for j, (s, r) in enumerate(zip(sample_idx, train_idx)):
        d = f"d={distances[j]:.3f}" if distances is not None else f"sample {s}"
        _gray(axes[0, j], samples[s], d)
        _gray(axes[1, j], train_images[r], f"#{r}")
        for ax in axes[:, j]:
            ax.title.set_fontsize(8)
    note = "" if heldout_median is None else f"\n(held-out real images: median d = {heldout_median:.3f})"
    fig.suptitle("closest pairs: sample (top), training image (bottom)" + note, fontsize=9)
    fig.tight_layout()
    return fig
