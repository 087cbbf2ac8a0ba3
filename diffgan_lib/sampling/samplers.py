"""Sampling: one object per method, each with ``sample(model, x_T)``, and the seed's ``sample()`` front end.

- ``DDPM(scheduler)`` and ``DDIM(scheduler, steps, eta)`` (``chains``): Ho et al. 2020's Algorithm 2 over all
  T steps (the seed's sampler), and Song et al. 2021's eq. 12 over ``steps`` evenly spaced timesteps (eta = 0
  deterministic, 1 fresh noise at every step like DDPM);
- ``FewStep`` and ``OneCall`` (``generators``): a few-step generator's own K levels, and a one-call generator,
  alone or finished by its teacher.

``sample`` returns raw samples x (n, C, S, S), roughly in [-1, 1] (the training range, ERRATA 9);
``to_unit`` maps them to [0, 1]. C comes from the model (``G.in_ch``, ERRATA 6).
Noise is always drawn on the CPU (from ``generator``, or one seeded with ``seed``) and then moved
to the device, so one seed gives the same samples on CPU, CUDA and MPS up to rounding.

Why the fast default (``FAST_SAMPLER``: DDIM, 50 steps, eta = 1; used by ``generate_and_visualize``,
the command line's ``sample`` and the notebooks; ERRATA 13): DDPM walks all T = 1000 steps, one
network evaluation each, minutes per batch on a 2-core CPU; DDIM-50 is 20x cheaper with the same
network. eta = 1 rather than 0: on a young model the deterministic path is an order of magnitude
worse (benchmarks/results/xray_sampling.json, written by benchmarks/xray_study.py).
``sample()`` itself keeps the seed's DDPM default.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.device import pick_device
from ..core.fewstep import FewStepGenerator
from ..core.flow import RectifiedFlow
from ..core.onecall import OneCallGenerator
from ..core.guidance import GuidedModel
from ..data.phantoms import check_image_size
from .chains import DDIM, DDPM, draw_noise
from .generators import FewStep, OneCall
from .images import image_grid, save_image_files, save_image_grid, to_unit
from .ode import SOLVERS, Euler, Heun

FAST_SAMPLER = dict(sampler="ddim", steps=50, eta=1.0)   # the measured fast default (module docstring)
PROGRESS_MIN_WORK = 500     # a bar from this many image-evaluations of the network (a few seconds on a CPU)
MAX_SAMPLE_BYTES = 2**31    # the largest set of samples one call returns (float32): 2 GiB

__all__ = ["FAST_SAMPLER", "sample", "generate_and_visualize", "sample_grid"]


def _model_info(G, device, scheduler) -> tuple[int, torch.device]:
    core = getattr(G, "_orig_mod", G)
    if not hasattr(core, "in_ch"):
        raise ValueError("sample() reads the number of channels from G.in_ch; pass a diffgan_lib UNet "
                         "(or set G.in_ch on your model)")
    params = list(core.parameters())
    if not params:   # a parameter-free model (a test oracle): use the device asked for
        return core.in_ch, pick_device(device) if device is not None else torch.device(scheduler.device)
    here = params[0].device
    if device is not None and pick_device(device).type != here.type:
        raise ValueError(f"G is on {here} but device={str(device)!r}; move it first with G.to({str(device)!r})")
    return core.in_ch, here


def _guided_models(G, labels, guidance_scale, n: int, chunks: list[int]) -> list:
    """One model per chunk: G itself, or G with that chunk's labels and the guidance scale."""
    if labels is None and guidance_scale is None:
        return [G] * len(chunks)
    K = getattr(getattr(G, "_orig_mod", G), "num_classes", 0)
    if not K:
        raise ValueError("labels / guidance_scale need a class-conditional model (trained with num_classes > 0); "
                         "this one is unconditional: leave them out")
    if labels is None:
        raise ValueError("guidance_scale needs labels: the class(es) to guide towards")
    if isinstance(labels, (str, bool)) or (isinstance(labels, (list, tuple)) and any(isinstance(v, (str, bool)) for v in labels)):
        raise ValueError(f"labels={labels!r} must be class indices (ints); a class name is turned into its index "
                         "with list(config.class_names).index(name)")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    labels = labels.expand(n) if labels.numel() == 1 else labels
    if labels.numel() != n or int(labels.min()) < 0 or int(labels.max()) >= K:
        raise ValueError(f"labels must be one class index or n={n} of them, each in [0, {K - 1}]")
    w = 3.0 if guidance_scale is None else guidance_scale
    if not (isinstance(w, (int, float)) and 0 <= w < 100):
        raise ValueError(f"guidance_scale={w!r} must be a number in [0, 100): 0 unconditional, 1 conditional, 3 usual")
    return [GuidedModel(G, part, w) for part in labels.split(chunks)]


def _pick_sampler(G, scheduler, sampler, steps, eta, variance, clip_x0, trajectory_at, teacher=None):
    """The sampler object for these arguments (ValueError naming what does not apply)."""
    if isinstance(G, OneCallGenerator):
        given = {k: v for k, v in dict(sampler=sampler, trajectory_at=trajectory_at,
                                       eta=eta or None).items() if v is not None}
        if given:
            raise ValueError(f"this is a one-call generator: it makes each image in one network call (steps=k >= 2: "
                             f"its teacher finishes it in k - 1 more), so "
                             f"{', '.join(f'{k}={v!r}' for k, v in given.items())} does not apply; leave it out")
        return OneCall(G, teacher, 1 if steps is None else steps)
    if teacher is not None:
        raise ValueError("teacher= finishes a one-call generator's images; this model is not one: leave it out")
    if isinstance(G, FewStepGenerator):
        given = {k: v for k, v in dict(sampler=sampler, steps=steps, trajectory_at=trajectory_at).items() if v is not None}
        given.update({"eta": eta} if eta else {})
        given.update({"variance": variance} if variance != "fixed_large" else {})
        if given and not (set(given) == {"steps"} and steps == G.n_levels):
            raise ValueError(f"this is a few-step generator: it samples its own {G.n_levels} levels "
                             f"{G.levels.tolist()} in {G.n_levels} network evaluations, so "
                             f"{', '.join(f'{k}={v!r}' for k, v in given.items())} does not apply; leave it out")
        return FewStep(G)
    if isinstance(scheduler, RectifiedFlow):
        return _flow_solver(sampler, steps, eta, variance, clip_x0, trajectory_at, scheduler)
    sampler = "ddpm" if sampler is None else sampler
    if sampler == "ddpm":
        if steps not in (None, scheduler.T):
            raise ValueError(f"DDPM walks all T={scheduler.T} steps, so steps={steps} is not possible; "
                             "use sampler='ddim' for fewer steps")
        return DDPM(scheduler, variance, clip_x0)
    if sampler == "ddim":
        return DDIM(scheduler, steps if steps is not None else min(50, scheduler.T), eta, clip_x0)
    raise ValueError(f"sampler={sampler!r}: choose 'ddpm' (the seed's, T steps) or 'ddim' (few steps)")


def _flow_solver(sampler, steps, eta, variance, clip_x0, trajectory_at, flow):
    """Euler or Heun for a flow model (its scheduler is a RectifiedFlow); DDPM/DDIM options are refused."""
    given = {k: v for k, v in dict(eta=eta or None, trajectory_at=trajectory_at, clip_x0=clip_x0 or None,
                                   variance=None if variance == "fixed_large" else variance).items() if v is not None}
    if given:
        raise ValueError(f"this is a flow model, sampled by an ODE solver (euler or heun), so "
                         f"{', '.join(f'{k}={v!r}' for k, v in given.items())} does not apply; leave it out")
    sampler = "euler" if sampler is None else sampler
    if sampler not in SOLVERS:
        raise ValueError(f"sampler={sampler!r}: a flow model takes 'euler' or 'heun' (ODE solvers)")
    return (Euler if sampler == "euler" else Heun)(flow, steps if steps is not None else 50)


def _check_counts(n, batch_size) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer (the number of images)")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer (images per network call) or None (all n)")


def sample(G, scheduler, n: int = 8, image_size: int = 128, device=None, sampler: str | None = None,
           steps: int | None = None, eta: float = 0.0, generator: torch.Generator | None = None,
           seed: int | None = None, trajectory_at=None, progress: bool = True,
           variance: str = "fixed_large", clip_x0: bool = False, batch_size: int | None = None,
           labels=None, guidance_scale: float | None = None, teacher=None):
    """Generate n images from pure noise: x (n, C, image_size, image_size), roughly in [-1, 1].

    sampler: ``"ddpm"`` (default, the seed's; ``steps`` None or T) or ``"ddim"`` (``steps``, default 50,
    with noise ``eta``). A few-step generator (``load_checkpoint`` of a "fewstep" file) samples its own
    levels; sampler, steps, eta, variance and trajectory_at do not apply to it and are refused.
    ``generator`` or ``seed`` fix the noise; ``batch_size`` splits n into chunks (same seed and
    batch_size -> same images). ``trajectory_at=[999, 500, 0]`` also returns {t: x_t (n, C, S, S)}.
    A class-conditional G takes ``labels`` (an int for all n, or n ints) and ``guidance_scale`` w
    (classifier-free guidance: 0 unconditional, 1 conditional, default 3). A one-call generator makes each
    image in one call; with its ``teacher`` UNet (``load_teacher``), ``steps=k`` >= 2 re-noises that image to
    t = 50 and lets the teacher finish it in k - 1 DDIM steps (``OneCall``). A progress bar shows when
    the work is more than a few seconds and ``progress`` is on. G's train/eval mode is restored.
    """
    chain = _pick_sampler(G, scheduler, sampler, steps, eta, variance, clip_x0, trajectory_at, teacher)
    _check_counts(n, batch_size)
    check_image_size(image_size)
    trajectory_at = [] if trajectory_at is None else [int(t) for t in trajectory_at]
    if any(not 0 <= t < scheduler.T for t in trajectory_at):
        raise ValueError(f"trajectory_at={trajectory_at}: every t must lie in [0, {scheduler.T - 1}]")
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    generator = torch.Generator().manual_seed(seed) if seed is not None else generator
    if isinstance(G, (FewStepGenerator, OneCallGenerator)) and device is not None:
        G = G.to(pick_device(device))
    channels, dev = _model_info(G, device, scheduler)
    if n * channels * image_size ** 2 * 4 > MAX_SAMPLE_BYTES:
        raise ValueError(f"n={n} images of {channels} x {image_size} x {image_size} would need "
                         f"{n * channels * image_size ** 2 * 4 / 2**30:.0f} GiB at once (at most 2); sample in "
                         "several calls with different seeds")
    chunks = [min(batch_size or n, n - i) for i in range(0, n, batch_size or n)]
    models = _guided_models(G, labels, guidance_scale, n, chunks)
    x_T = draw_noise((n, channels, image_size, image_size), generator, dev)   # all initial noise first
    record = {t: [] for t in trajectory_at}
    was_training = G.training
    G.eval()
    name = type(chain).__name__ + (f"-{chain.steps}" if isinstance(chain, (DDIM, Euler)) else "")
    bar = tqdm(total=chain.evaluations() * len(chunks), desc=f"{name} sampling", unit="call", leave=False,
               disable=not progress or chain.evaluations() * n < PROGRESS_MIN_WORK)
    try:
        x = torch.cat([chain.sample(model, part, generator, record, bar) for model, part in zip(models, x_T.split(chunks))])
    finally:
        bar.close()
        G.train(was_training)
    if trajectory_at:
        return x, {t: torch.cat(v) for t, v in record.items()}
    return x


def sample_grid(G, scheduler, image_size: int, path, n: int = 16, steps: int = 25) -> torch.Tensor:
    """n fixed-seed samples saved as a PNG grid at ``path``, for watching training: DDIM (x0 clipped, eta of
    ``FAST_SAMPLER``), or Euler for a flow model."""
    how = (dict(sampler="euler", steps=steps) if isinstance(scheduler, RectifiedFlow) else
           dict(sampler="ddim", steps=min(steps, scheduler.T), eta=FAST_SAMPLER["eta"], clip_x0=True))
    x = sample(G, scheduler, n=n, image_size=image_size, seed=0, progress=False, **how)
    save_image_grid(to_unit(x), path)
    return x


def generate_and_visualize(G, scheduler, n: int = 16, image_size: int = 128, save_grid=None,
                           save_individual=None, device=None, sampler: str | None = None, steps: int | None = None,
                           seed: int | None = 0, show: bool = True, nrow: int | None = None,
                           clip_x0: bool = True, eta: float | None = None) -> torch.Tensor:
    """Sample n images, show them as a grid, save the grid and/or one PNG per image.

    Defaults to ``FAST_SAMPLER``, DDIM-50 with eta = 1 (module docstring); ``eta=0`` is deterministic
    DDIM; ``sampler="ddpm"`` is the seed's sampler (all T steps: ``steps`` other than T is refused);
    a few-step generator uses its own levels (leave sampler and steps unset). ``clip_x0=True`` clamps
    each step's predicted x0 to [-1, 1] (diffusers' DDIM default): early in training, unclipped DDIM
    samples saturate. Returns images in [0, 1], (n, C, S, S), on the CPU.
    """
    if save_grid is not None and Path(save_grid).is_dir():
        raise ValueError(f"save_grid={str(save_grid)!r} is a folder; give the grid's file name, e.g. "
                         f"{str(Path(save_grid) / 'grid.png')!r}")
    fewstep, flow = isinstance(G, (FewStepGenerator, OneCallGenerator)), isinstance(scheduler, RectifiedFlow)
    if flow:
        clip_x0, how = False, f"{sampler or 'euler'}-{steps or 50}, flow"
    elif not fewstep:
        sampler = sampler or FAST_SAMPLER["sampler"]
        steps = steps if steps is not None or sampler == "ddpm" else FAST_SAMPLER["steps"]
        eta = FAST_SAMPLER["eta"] if eta is None and sampler == "ddim" else eta
    x = sample(G, scheduler, n=n, image_size=image_size, device=device, sampler=sampler, steps=steps,
               eta=eta or 0.0, seed=seed, clip_x0=clip_x0)
    images = to_unit(x).float().cpu()
    if save_grid is not None:
        save_image_grid(images, save_grid, nrow)
    if save_individual is not None:
        save_image_files(images, save_individual)
    if show:
        _show_grid(images, nrow, how if flow else f"{G.n_levels} network call(s), its own levels" if fewstep else
                   sampler.upper() + (f"-{steps}, η={eta:g}" if sampler == "ddim" else ""))
    return images


def _show_grid(images: torch.Tensor, nrow, how: str) -> None:
    import matplotlib.pyplot as plt
    grid = image_grid(images, nrow)
    zoom = max(1.0, 96 / images.shape[-1])            # tiles at least ~96 screen pixels wide
    w, h = min(10, zoom * grid.shape[1] / 80 + 0.4), min(10, zoom * grid.shape[0] / 80 + 0.6)
    fig, ax = plt.subplots(figsize=(w, h), dpi=80)
    fig.subplots_adjust(left=0.2 / w, right=1 - 0.2 / w, bottom=0.1 / h, top=1 - 0.5 / h)
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(f"{len(images)} samples, {how}")
    ax.axis("off")
    plt.show()
    plt.close(fig)
