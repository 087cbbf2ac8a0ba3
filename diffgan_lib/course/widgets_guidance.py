"""The guidance-scale slider of notebook 09: the same starting noise, sampled at several guidance scales.

``guidance_frames`` samples a conditional model once per scale w (same seed, so column j always starts
from the same noise) and keeps the images; ``draw_guidance`` draws one w (a row per class);
``guidance_slider_static`` draws the default w (for GitHub, which does not render widgets);
``guidance_slider`` is the live widget (ipywidgets imported lazily, inside the function). Moving the
slider only redraws: every frame is computed before the widget appears.
"""
from __future__ import annotations

import torch

from ..sampling import FAST_SAMPLER, sample
from .viz import show_images

__all__ = ["guidance_frames", "draw_guidance", "guidance_slider_static", "guidance_slider"]


def guidance_frames(G, scheduler, labels, scales=(0.0, 1.0, 3.0, 5.0), n_per_label: int = 4,
                    image_size: int = 32, seed: int = 0, class_names=None, **sampler) -> dict:
    """{"w": scales, "labels": names, "n": n_per_label, "images": {w: (len(labels) * n_per_label, C, S, S)}}.

    labels: class indices of G (one row each); sampler: ``sample`` options (default FAST_SAMPLER:
    DDIM-50, eta 1), x0 clipped. One ``sample`` call per scale, with the same seed.
    """
    if not getattr(G, "num_classes", 0):
        raise ValueError("guidance_frames needs a class-conditional model (trained with --conditional)")
    labels = [int(k) for k in labels]
    names = [str(class_names[k]) if class_names else str(k) for k in labels]
    y = torch.tensor(labels).repeat_interleave(n_per_label)
    opts = {**FAST_SAMPLER, "clip_x0": True, **sampler}
    images = {float(w): sample(G, scheduler, n=len(y), image_size=image_size, labels=y, guidance_scale=float(w),
                               seed=seed, progress=False, **opts).clamp(-1, 1).cpu() for w in scales}
    return {"w": [float(w) for w in scales], "labels": names, "n": n_per_label, "images": images}


def draw_guidance(frames: dict, w: float):
    """The samples at guidance scale ``w`` (one of ``frames["w"]``), one row per class; returns the figure."""
    if float(w) not in frames["images"]:
        raise ValueError(f"w={w} was not sampled; sampled scales: {frames['w']}")
    return show_images(frames["images"][float(w)], ncols=frames["n"], row_labels=frames["labels"],
                       suptitle=f"guidance scale w = {float(w):g}")


def _default_w(ws: list) -> float:
    """The scale shown first: 3 (the course's default) when sampled, else the middle one."""
    return 3.0 if 3.0 in ws else ws[len(ws) // 2]


def guidance_slider_static(frames: dict, w: float | None = None):
    """The slider's default picture (w = 3 when sampled, else the middle scale), as a figure."""
    return draw_guidance(frames, _default_w(frames["w"]) if w is None else w)


def guidance_slider(frames: dict):
    """A slider over the sampled guidance scales above the class rows it redraws; returns the widget box."""
    import ipywidgets as widgets   # lazy: the library works without ipywidgets
    import matplotlib.pyplot as plt

    ws = frames["w"]
    slider = widgets.SelectionSlider(options=[(f"{w:g}", w) for w in ws], value=_default_w(ws),
                                     description="w", continuous_update=False, layout=widgets.Layout(width="420px"))

    def show(w):
        draw_guidance(frames, w)
        plt.show()

    return widgets.VBox([slider, widgets.interactive_output(show, {"w": slider})])
