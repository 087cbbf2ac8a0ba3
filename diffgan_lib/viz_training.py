"""Plots for notebooks 05-07: loss curves with the 2 ln 2 line, sample strips, trajectories, metrics.

Images come in the training range [-1, 1] unless a function says otherwise; every image panel is
drawn with ``cmap="gray"``, a fixed window (vmin -1, vmax 1) and no axes. Figures are small
(about 80 dpi); the caller ends the cell with ``plt.show()``.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .losses import D_LOSS_AT_CHANCE
from .sampling import image_grid, to_unit

__all__ = ["smooth", "plot_losses", "show_grid_strip", "show_trajectory", "plot_metric_bars",
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
    ax.imshow(arr.numpy(), cmap="gray", vmin=-1, vmax=1)
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


def plot_metric_bars(table: dict, metrics=("fd", "kid", "swd"), baseline: dict | None = None, title=None):
    """Grouped bars: {row name: {metric: value}}; one panel per metric, a dashed line at ``baseline``."""
    names = list(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 2.9), dpi=DPI, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        vals = [table[r][m] for r in names]
        ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
        if baseline is not None and m in baseline:
            ax.axhline(baseline[m], color="k", ls="--", lw=1, label="real vs real")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{m} (lower is better)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_pairs(samples, train_images, sample_idx, train_idx, distances=None, heldout_median=None):
    """Nearest-neighbour pairs: generated sample (top) over its closest training image (bottom)."""
    k = len(sample_idx)
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.0), dpi=DPI, squeeze=False)
    for j, (s, r) in enumerate(zip(sample_idx, train_idx)):
        d = f"d = {distances[j]:.3f}" if distances is not None else f"sample {s}"
        _gray(axes[0, j], samples[s], d)
        _gray(axes[1, j], train_images[r], f"train #{r}")
    note = "" if heldout_median is None else f" (held-out real median d = {heldout_median:.3f})"
    fig.suptitle("closest sample (top) / training image (bottom) pairs" + note, fontsize=9)
    fig.tight_layout()
    return fig
