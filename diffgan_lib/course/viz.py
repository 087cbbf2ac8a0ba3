"""Plot helpers of the course: every figure a notebook shows is drawn here, never pasted into cells.

Conventions: images are tensors or arrays shaped (B, C, H, W), (C, H, W) or (H, W) in [-1, 1], drawn
with ``cmap="gray"`` and the fixed window ``vmin=-1, vmax=1`` (3-channel images as RGB), axes off.
Figures are small (``DPI`` = 80; plots at most 10 x 4 inches, image grids at most 10.5 inches wide
and as high as their rows of ~96 px tiles need). Every helper returns the ``Figure``; the
notebook ends its cell with ``plt.show()``.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["DPI", "show_images", "plot_curves", "plot_schedules", "plot_pipeline", "plot_sinusoids",
           "plot_score_maps", "receptive_box", "draw_receptive_field", "plot_gan_losses", "compare_histories"]

DPI = 80
MAX_W = 10.0          # inches: plots
GRID_MAX_W = 10.5     # inches: image grids (8 tiles of 96 px and the row labels)


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float32)


def as_image(img) -> np.ndarray:
    """One image (H, W), (1, H, W) or (3, H, W) in [-1, 1] -> (H, W) in [-1, 1] or (H, W, 3) in [0, 1]."""
    a = _np(img)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[0] == 3:
        a = np.clip((a.transpose(1, 2, 0) + 1) / 2, 0, 1)
    elif a.ndim != 2:
        raise ValueError(f"expected one image (H, W), (1, H, W) or (3, H, W), got shape {a.shape}")
    return a


def show_images(images, titles=None, ncols: int | None = None, suptitle: str | None = None,
                vmin: float = -1.0, vmax: float = 1.0, tile_px: int | None = None, cmap: str = "gray",
                row_labels=None, outlines=None, outline_color: str = "tab:red"):
    """A grid of images with the fixed window [vmin, vmax], gray, axes off; tiles of ``tile_px`` screen pixels.

    tile_px: None picks the smallest whole multiple of the image side that is at least 96 px (a 32 px
    image at 96, a 64 px one at 128): every pixel becomes a block of equal size, which reads well and
    keeps the PNG small.
    titles: one per image (None or "" for none); row_labels: one per row, written left of the row
    (upright when every line is at most 12 characters, else flat: break long labels with "\n");
    outlines: one (H, W) mask (or None) per image, outlined in ``outline_color`` (e.g. a lesion).
    The layout leaves room for titles and the suptitle, so no text overlaps; at most 8 columns of
    96 px fit 10.5 inches (80 dpi), so wider grids get smaller tiles.
    """
    imgs = [as_image(x) for x in images]
    n = len(imgs)
    ncols = ncols or min(n, 8)
    nrows = math.ceil(n / ncols)
    lines = max([str(t).count("\n") + 1 for t in titles if t] if titles is not None and any(titles) else [0])
    label_lines = [str(r).split("\n") for r in row_labels or []]
    longest = max((len(ln) for lines_ in label_lines for ln in lines_), default=0)
    flat = longest > 12                                                  # long row labels: written flat
    label_w = (0.07 * longest + 0.15 if flat else 0.17 * max(map(len, label_lines)) + 0.13) if row_labels else 0.05
    title_h = 0.17 * lines + (0.08 if lines else 0.03)
    top_h = 0.3 if suptitle else 0.0
    if tile_px is None:
        side = max(imgs[0].shape[:2])
        tile_px = side * math.ceil(96 / side)
    cell = min(tile_px / DPI, (GRID_MAX_W - label_w) / ncols - 0.05)
    w, h = label_w + ncols * (cell + 0.05), top_h + nrows * (cell + title_h) + 0.03
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), dpi=DPI, squeeze=False)
    fig.subplots_adjust(left=label_w / w, right=1 - 0.02 / w, bottom=0.03 / h, top=1 - (top_h + title_h) / h,
                        wspace=0.05 / cell, hspace=title_h / cell)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(imgs[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None and titles[i]:
                ax.set_title(titles[i], fontsize=9)
            mask = None if outlines is None else outlines[i]
            if mask is not None and _np(mask).any():
                ax.contour(_np(mask).astype(np.float32), levels=[0.5], colors=outline_color, linewidths=1.2)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].text(-0.04, 0.5, label, transform=axes[r, 0].transAxes, rotation=0 if flat else 90,
                        ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1 - 0.05 / h, va="top")
    return fig


def plot_curves(x, curves: dict, xlabel: str = "", ylabel: str = "", title: str | None = None,
                logy: bool = False, hlines: dict | None = None, ax=None, figsize=(5.0, 3.0), **kwargs):
    """Line plot of ``curves`` {label: y} against x (one shared x, or {label: (x, y)}).

    hlines: {label: y} dashed horizontal reference lines, named in the legend (never written over the
    curves). Returns the figure.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=figsize, dpi=DPI)
    ax = ax or fig.add_subplot()
    for label, y in curves.items():
        xs, ys = y if isinstance(y, tuple) else (x, y)
        ax.plot(_np(xs), _np(ys), label=label, **kwargs)
    for label, y in (hlines or {}).items():
        ax.axhline(y, ls="--", lw=1, color="gray", label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(curves) > 1 or hlines:
        ax.legend(fontsize=8, loc="best")         # "best": where it covers the fewest data points
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_schedules(schedulers: dict, t_mark: int | None = None, axes=None):
    """Three panels, beta_t, alpha_hat_t and SNR_t (log scale), for {name: DiffusionScheduler}."""
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), dpi=DPI)
    fig = axes[0].figure
    for name, s in schedulers.items():
        t = np.arange(s.T)
        snr = _np(s.alpha_hat / (1 - s.alpha_hat))
        for ax, y in zip(axes, (_np(s.betas), _np(s.alpha_hat), snr)):
            ax.plot(t, y, label=name)
    for ax, label in zip(axes, ("beta_t (noise added at step t, log)", "alpha_hat_t (signal kept)",
                                "SNR_t = alpha_hat / (1 - alpha_hat) (log)")):
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
        if t_mark is not None:
            ax.axvline(t_mark, color="k", lw=0.8, ls=":")
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[2].axhline(1.0, color="gray", ls="--", lw=1)
    if len(schedulers) > 1:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


# (x, y) centres of the pipeline's boxes, their labels and colours; arrows between them.
_PIPE_BOXES = {
    "data": (0.08, 0.72, "real scan $x_0$\nscaled to [-1, 1]", "#dbe9f6"),
    "noise": (0.30, 0.72, "scheduler adds noise\n$x_t = \\sqrt{\\bar\\alpha_t}\\,x_0$\n"
                          "$+\\sqrt{1-\\bar\\alpha_t}\\,\\epsilon$", "#fde9d9"),
    "G": (0.52, 0.72, "UNet $G(x_t, t)$\npredicts the noise $\\hat\\epsilon$", "#e2f0d9"),
    "Ldiff": (0.76, 0.72, "diffusion loss\n$\\|\\epsilon - \\hat\\epsilon\\|^2$\n(structure)", "#eeeeee"),
    "x0": (0.52, 0.25, "predicted clean image\n$\\hat x_0$ from $x_t$ and $\\hat\\epsilon$\n(the \"fake\")",
           "#e2f0d9"),
    "D": (0.30, 0.25, "discriminator D\npatch scores:\nreal $x_0$ vs fake $\\hat x_0$", "#f2dcdb"),
    "Lgan": (0.08, 0.25, "GAN losses\nsoftplus\n(sharpness)", "#eeeeee"),
    "sample": (0.89, 0.25, "sampling: noise\n$\\to$ G, step $\\to \\cdots$\n$\\to$ a new scan", "#fff2cc"),
}
_PIPE_ARROWS = [("data", "noise"), ("noise", "G"), ("G", "Ldiff"), ("G", "x0"), ("x0", "D"),
                ("data", "D"), ("D", "Lgan"), ("G", "sample")]


def plot_pipeline():
    """The whole course on one page: boxes for data, noise, G, losses, D and sampling, with arrows."""
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=DPI)
    ax.set(xlim=(-0.04, 1.02), ylim=(0.0, 1.0))
    ax.axis("off")
    w, h = 0.18, 0.32
    for x, y, text, color in _PIPE_BOXES.values():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01",
                                    fc=color, ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5)
    for a, b in _PIPE_ARROWS:
        (xa, ya, *_), (xb, yb, *_) = _PIPE_BOXES[a], _PIPE_BOXES[b]
        dx, dy = xb - xa, yb - ya
        k = min(w / 2 / abs(dx) if dx else 9, h / 2 / abs(dy) if dy else 9)   # leave each box at its edge
        ax.add_patch(FancyArrowPatch((xa + k * dx, ya + k * dy), (xb - k * dx, yb - k * dy),
                                     arrowstyle="-|>", mutation_scale=12, color="0.25", lw=1.2))
    ax.text(0.5, 0.99, "diffusion (top row) learns structure; the GAN term (bottom row) asks for sharpness",
            ha="center", va="top", fontsize=9, style="italic")
    fig.tight_layout(pad=0.2)
    return fig


def plot_sinusoids(emb, t, dims=(0, 2, 8)):
    """The timestep embedding: a heat map (t by dimension) and a few of its columns as curves.

    emb: (T, dim) values of ``timestep_embedding(t, dim)`` for the timesteps ``t`` (T,).
    """
    e, t = _np(emb), _np(t)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.0), dpi=DPI, gridspec_kw={"width_ratios": [1, 1.3]})
    im = a0.imshow(e, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="antialiased",
                   extent=(-0.5, e.shape[1] - 0.5, t[-1], t[0]))
    a0.set(xlabel="embedding dimension", ylabel="t")
    a0.set_title("embedding of every t (cosines | sines)", fontsize=10)
    fig.colorbar(im, ax=a0, fraction=0.05)
    for d in dims:
        a1.plot(t, e[:, d], label=f"dim {d}")
    a1.set(xlabel="t", ylabel="value")
    a1.set_title("a few dimensions: fast to slow waves", fontsize=10)
    a1.legend(fontsize=8, loc="lower left")
    a1.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_score_maps(images, scores, titles, limit: float | None = None, tile_px: int = 128):
    """Images (top row) above D's patch-score maps (bottom row, red = "fake", blue = "real").

    scores: (N, 1, h, w) or (N, h, w) logits; ``limit`` fixes the symmetric colour range (else the max |score|).
    Each panel is about ``tile_px`` screen pixels (smaller when more than 5 images must fit 10 inches).
    """
    imgs = [as_image(x) for x in images]
    s = _np(scores).reshape(len(imgs), *_np(scores).shape[-2:])
    limit = limit or float(np.abs(s).max()) or 1.0
    n = len(imgs)
    bar_w, title_h = 0.9, 0.3
    cell = min(tile_px / DPI, (MAX_W - bar_w) / n - 0.1)
    w, h = n * (cell + 0.1) + bar_w, 2 * (cell + title_h) + 0.05
    fig, axes = plt.subplots(2, n, figsize=(w, h), dpi=DPI, squeeze=False)
    fig.subplots_adjust(left=0.05 / w, right=1 - bar_w / w, bottom=0.05 / h, top=1 - title_h / h,
                        wspace=0.1 / cell, hspace=title_h / cell)
    for j in range(n):
        axes[0, j].imshow(imgs[j], cmap="gray", vmin=-1, vmax=1)
        axes[0, j].set_title(titles[j], fontsize=9)
        im = axes[1, j].imshow(s[j], cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        axes[1, j].set_title(f"mean score {s[j].mean():+.2f}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    cax = fig.add_axes((1 - (bar_w - 0.15) / w, 0.05 / h, 0.12 / w, cell / h))
    fig.colorbar(im, cax=cax, label="score")
    return fig


def receptive_box(convs, index: int) -> tuple[int, int]:
    """Input pixels [start, stop) seen by output position ``index`` of a chain of Conv2d layers.

    convs: the nn.Conv2d modules in order (or (kernel, stride, padding) triples). Positions before 0
    or after the image are padding.
    """
    start, size = index, 1
    for c in reversed(list(convs)):
        k, s, p = (c.kernel_size[0], c.stride[0], c.padding[0]) if isinstance(c, nn.Conv2d) else c
        start, size = start * s - p, (size - 1) * s + k
    return start, start + size


def draw_receptive_field(image, convs, cell: tuple[int, int], score_side: int):
    """The image with the patch that one score sees (a box) and the centres of all score patches (dots)."""
    img = as_image(image)
    fig, ax = plt.subplots(figsize=(3.6, 3.6), dpi=DPI)
    ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
    centres = [sum(receptive_box(convs, i)) / 2 - 0.5 for i in range(score_side)]
    cx, cy = np.meshgrid(centres, centres)
    ax.plot(cx.ravel(), cy.ravel(), ".", color="tab:orange", ms=3)
    (r0, r1), (c0, c1) = receptive_box(convs, cell[0]), receptive_box(convs, cell[1])
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="tab:red", lw=2))
    ax.set_title(f"score {cell} sees {r1 - r0} x {c1 - c0} px", fontsize=9)
    ax.set(xlim=(-0.5, img.shape[1] - 0.5), ylim=(img.shape[0] - 0.5, -0.5))
    ax.axis("off")
    fig.tight_layout()
    return fig


def plot_gan_losses(s_range: float = 6.0, marks: dict | None = None, ax=None):
    """softplus(-s) (D's loss on a real image) and softplus(s) (on a fake) against the score s.

    marks: {label: (s, loss)} or {label: (s, loss, color)}: points to highlight, e.g. the chance
    point (0, ln 2), named in the legend (above the curves' V, clear of them).
    """
    ax = ax or plt.figure(figsize=(5.0, 3.0), dpi=DPI).add_subplot()
    s = torch.linspace(-s_range, s_range, 241)
    plot_curves(s, {"real: softplus(-s)": torch.nn.functional.softplus(-s),
                    "fake: softplus(s)": torch.nn.functional.softplus(s)},
                xlabel="score s = D(x)", ylabel="loss", ax=ax, hlines={"ln 2 = 0.6931": math.log(2)})
    for label, (x, y, *color) in (marks or {}).items():
        ax.plot([x], [y], "o", color=color[0] if color else "k", ms=6, ls="none", label=label)
    ax.legend(fontsize=8, loc="upper center")      # between the two arms of the V, where no curve runs
    return ax.figure


_LOSS_NAMES = {"diff": "diffusion loss (MSE on eps)", "adv": "adversarial loss (G)", "D": "D loss"}


def compare_histories(histories: dict, keys=("diff", "D"), window: int = 10, title: str | None = None):
    """Loss curves of several runs on shared axes, one panel per key of ``TrainResult.history``.

    histories: {run name: history} (each with "step" and the keys); lines are ``window``-step running
    means that skip nan (steps without a D update); the D panel has the chance line 2 ln 2.
    """
    from ..core.losses import D_LOSS_AT_CHANCE
    from .viz_training import smooth
    fig, axes = plt.subplots(1, len(keys), figsize=(5.0 * len(keys), 2.9), dpi=DPI, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, h in histories.items():
            ax.plot(h["step"], smooth(h[key], window), lw=1.6, label=name)
        if key == "D":
            ax.axhline(D_LOSS_AT_CHANCE, color="gray", ls="--", lw=1, label="chance 2 ln 2")
        ax.set(xlabel="step", title=_LOSS_NAMES.get(key, key))
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
