"""Sampling: the reverse diffusion process, DDPM (the seed's) and DDIM, and saving the images.

``sample`` returns raw samples x (n, C, S, S), roughly in [-1, 1] (the training range, ERRATA 9);
``to_unit`` maps them to [0, 1] for display and PNG files. C comes from the model (``G.in_ch``,
ERRATA 6), so a 3-channel model gives 3-channel samples.

Noise is always drawn on the CPU (from ``generator``, or a generator seeded with ``seed``, or the
global CPU generator) and then moved to the device, so one seed gives the same samples on CPU,
CUDA and MPS up to floating-point differences.

Why the fast default (``FAST_SAMPLER``: DDIM, 50 steps, eta = 1; used by ``generate_and_visualize``,
the command line's ``sample`` and the notebooks; ERRATA 13): DDPM walks all T = 1000 steps, one
network evaluation each; on a 2-core CPU that is minutes per batch even for small images. DDIM
(Song et al. 2021) jumps over the chain with the same trained network, 20x cheaper at 50 steps.
eta = 1 (fresh noise at every step, like DDPM) rather than the deterministic eta = 0: on a young
model the deterministic path is an order of magnitude worse (benchmarks/results/xray_sampling.json,
written by benchmarks/xray_study.py). ``sample()`` itself keeps the seed's DDPM default.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .device import pick_device
from .phantoms import check_image_size

FAST_SAMPLER = dict(sampler="ddim", steps=50, eta=1.0)   # the measured fast default (module docstring)

__all__ = ["FAST_SAMPLER", "sample", "to_unit", "generate_and_visualize", "save_image_grid", "save_image_files",
           "image_grid", "sample_grid"]

PROGRESS_MIN_EVALS = 50   # show a progress bar above this many network evaluations


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Map samples from [-1, 1] to [0, 1] (clamped), for display and 8-bit files."""
    return ((x + 1) / 2).clamp(0, 1)


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


def _noise(shape, generator, device) -> torch.Tensor:
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_dev).to(device)


@torch.inference_mode()
def _sample_batch(G, scheduler, x, ts, sampler, eta, generator, variance, clip_x0, record, bar):
    """Run the reverse chain from x over the timesteps ts; fill ``record`` {t_req: list of x_t}."""
    pending = sorted(record, reverse=True)
    for i, t in enumerate(ts):
        while pending and t <= pending[0]:            # state at the first visited t <= requested
            record[pending.pop(0)].append(x.clone())
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps_pred = G(x, t_batch)
        if sampler == "ddpm":                         # Ho et al. 2020, Algorithm 2 (the seed's loop)
            noise = _noise(x.shape, generator, x.device) if t > 0 else torch.zeros_like(x)
            x = scheduler.step(eps_pred, t, x, noise=noise, variance=variance, clip_x0=clip_x0)
        else:                                         # Song et al. 2021, eq. 12
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            noise = _noise(x.shape, generator, x.device) if eta > 0 else None
            x = scheduler.ddim_step(eps_pred, t, t_prev, x, eta=eta, noise=noise, clip_x0=clip_x0)
        bar.update(1)
    for t in pending:                                 # below the last visited timestep: the result
        record[t].append(x.clone())
    return x


def _guided_models(G, labels, guidance_scale, n: int, chunks: list[int]) -> list:
    """One model per chunk: G itself, or G with that chunk's labels and the guidance scale."""
    if labels is None and guidance_scale is None:
        return [G] * len(chunks)
    from .guidance import GuidedModel
    K = getattr(getattr(G, "_orig_mod", G), "num_classes", 0)
    if not K:
        raise ValueError("labels / guidance_scale need a class-conditional model (trained with num_classes > 0); "
                         "this one is unconditional: leave them out")
    if labels is None:
        raise ValueError("guidance_scale needs labels: the class(es) to guide towards")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    labels = labels.expand(n) if labels.numel() == 1 else labels
    if labels.numel() != n or int(labels.min()) < 0 or int(labels.max()) >= K:
        raise ValueError(f"labels must be one class index or n={n} of them, each in [0, {K - 1}]")
    w = 3.0 if guidance_scale is None else guidance_scale
    if not (isinstance(w, (int, float)) and 0 <= w < 100):
        raise ValueError(f"guidance_scale={w!r} must be a number in [0, 100): 0 unconditional, 1 conditional, 3 usual")
    return [GuidedModel(G, part, w) for part in labels.split(chunks)]


def sample(G, scheduler, n: int = 8, image_size: int = 128, device=None, sampler: str | None = None,
           steps: int | None = None, eta: float = 0.0, generator: torch.Generator | None = None,
           seed: int | None = None, trajectory_at=None, progress: bool = True,
           variance: str = "fixed_large", clip_x0: bool = False, batch_size: int | None = None,
           labels=None, guidance_scale: float | None = None):
    """Generate n images from pure noise: x (n, C, image_size, image_size), roughly in [-1, 1].

    sampler: ``"ddpm"`` walks t = T-1 ... 0 (the seed; ``steps`` must be None or T; ``variance``
    "fixed_large" = the seed's sigma^2 = beta); ``"ddim"`` takes ``steps`` evenly spaced timesteps
    (default 50) with stochasticity ``eta`` (0 = deterministic). ``generator`` or ``seed`` fix the
    noise; ``batch_size`` splits n into chunks (same seed and batch_size -> same images).
    ``trajectory_at=[999, 500, 0]`` also returns {t: x_t (n, C, S, S)}, the state when the chain
    reaches t (for DDIM: the first visited timestep <= t, else the final x).
    Runs under ``torch.inference_mode`` with G in eval mode; G's mode is restored afterwards.
    ``sampler=None`` means "ddpm" (the seed's default). A class-conditional G (``G.num_classes > 0``)
    takes ``labels`` (an int for all n images, or n ints) and ``guidance_scale`` w (classifier-free
    guidance, diffgan_lib.guidance: 0 unconditional, 1 plain conditional; default 3, the value the
    course's conditional lessons use); without labels it samples unconditionally. A few-step generator (``load_checkpoint`` of a
    "fewstep" checkpoint) samples its own K levels in K evaluations; ``sampler``, ``steps``, ``eta``,
    ``variance`` and ``trajectory_at`` do not apply to it and are refused.
    """
    from .fewstep import FewStepGenerator, fewstep_sample
    if isinstance(G, FewStepGenerator):
        given = {k: v for k, v in dict(sampler=sampler, steps=steps, trajectory_at=trajectory_at).items() if v is not None}
        if eta:
            given["eta"] = eta
        if variance != "fixed_large":
            given["variance"] = variance
        if given and not (set(given) == {"steps"} and steps == G.n_levels):
            raise ValueError(f"this is a few-step generator: it samples its own {G.n_levels} levels "
                             f"{G.levels.tolist()} in {G.n_levels} network evaluations, so "
                             f"{', '.join(f'{k}={v!r}' for k, v in given.items())} does not apply; leave it out")
        check_image_size(image_size)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        dev = pick_device(device) if device is not None else next(G.parameters()).device
        return fewstep_sample(G.to(dev), n, image_size, seed=seed, device=dev, batch_size=batch_size,
                              generator=generator)
    sampler = "ddpm" if sampler is None else sampler
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler={sampler!r}: choose 'ddpm' (the seed's, T steps) or 'ddim' (few steps)")
    if sampler == "ddpm":
        if steps not in (None, scheduler.T):
            raise ValueError(f"DDPM walks all T={scheduler.T} steps, so steps={steps} is not possible; "
                             "use sampler='ddim' for fewer steps")
        ts = list(range(scheduler.T - 1, -1, -1))
    else:
        ts = scheduler.timesteps_for(steps if steps is not None else min(50, scheduler.T))
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer (the number of images)")
    if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):      # also refuses nan
        raise ValueError(f"eta={eta!r} must lie in [0, 1]: 0 is deterministic DDIM, 1 is DDPM-like noise")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer (images per network call) or None (all n)")
    check_image_size(image_size)
    trajectory_at = [] if trajectory_at is None else [int(t) for t in trajectory_at]
    if any(not 0 <= t < scheduler.T for t in trajectory_at):
        raise ValueError(f"trajectory_at={trajectory_at}: every t must lie in [0, {scheduler.T - 1}]")
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    channels, dev = _model_info(G, device, scheduler)
    batch_size = batch_size or n
    chunks = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    models = _guided_models(G, labels, guidance_scale, n, chunks)
    x_T = _noise((n, channels, image_size, image_size), generator, dev)   # all initial noise first
    record = {t: [] for t in trajectory_at}
    was_training = G.training
    G.eval()
    bar = tqdm(total=len(ts) * len(chunks), desc=f"{sampler.upper()} sampling", leave=False,
               disable=not progress or len(ts) * len(chunks) <= PROGRESS_MIN_EVALS)
    try:
        outs = [_sample_batch(model, scheduler, x, ts, sampler, eta, generator, variance, clip_x0, record, bar)
                for model, x in zip(models, x_T.split(chunks))]
    finally:
        bar.close()
        G.train(was_training)
    x = torch.cat(outs)
    if trajectory_at:
        return x, {t: torch.cat(v) for t, v in record.items()}
    return x


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (n, C, S, S) images in [0, 1] into one uint8 array (H, W) or (H, W, 3), nrow per row."""
    n, c, s, _ = images.shape
    if c not in (1, 3):
        raise ValueError(f"can only draw 1-channel (gray) or 3-channel (RGB) images, got {c} channels")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (s + pad) + pad, nrow * (s + pad) + pad, c), dtype=np.uint8)
    arr = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, img in enumerate(arr):
        r, col = divmod(i, nrow)
        grid[pad + r * (s + pad): pad + r * (s + pad) + s, pad + col * (s + pad): pad + col * (s + pad) + s] = img
    return grid[..., 0] if c == 1 else grid


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None) -> Path:
    """Write images (n, C, S, S) in [0, 1] as one PNG grid (8-bit gray or RGB); returns the path."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, nrow)).save(path)
    return path


def save_image_files(images: torch.Tensor, folder, prefix: str = "sample") -> list[Path]:
    """Write each image (n, C, S, S) in [0, 1] as ``folder/{prefix}_{i:03d}.png`` (8-bit gray or RGB)."""
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        arr = image_grid(img[None], nrow=1, pad=0)
        paths.append(folder / f"{prefix}_{i:03d}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def sample_grid(G, scheduler, image_size: int, path, n: int = 16, steps: int = 25) -> torch.Tensor:
    """n fixed-seed DDIM samples (x0 clipped, eta of ``FAST_SAMPLER``) saved as a PNG grid at ``path`` (for watching training)."""
    x = sample(G, scheduler, n=n, image_size=image_size, sampler="ddim", steps=min(steps, scheduler.T),
               eta=FAST_SAMPLER["eta"], seed=0, progress=False, clip_x0=True)
    save_image_grid(to_unit(x), path)
    return x


def generate_and_visualize(G, scheduler, n: int = 16, image_size: int = 128, save_grid=None,
                           save_individual=None, device=None, sampler: str | None = None, steps: int | None = None,
                           seed: int | None = 0, show: bool = True, nrow: int | None = None,
                           clip_x0: bool = True, eta: float | None = None) -> torch.Tensor:
    """Sample n images, show them as a grid, save the grid and/or one PNG per image.

    Defaults to ``FAST_SAMPLER``, DDIM-50 with eta = 1 (see the module docstring: DDPM-1000 is slow
    on a CPU, eta = 0 loses quality); ``eta=0`` is deterministic DDIM; ``sampler="ddpm"`` is the seed's sampler; a few-step generator uses its own levels (leave sampler and steps unset). ``clip_x0=True`` clamps each step's predicted x0 to [-1, 1]
    (diffusers' DDIM default): early in training, unclipped DDIM samples saturate (after 450 CPU
    steps at 32 px, 78 % of the pixels fell outside [-1, 1] without it, none with it); pass
    ``clip_x0=False`` for the seed's unclipped update. Returns images in [0, 1], (n, C, S, S), on the CPU.
    """
    from .fewstep import FewStepGenerator
    if not isinstance(G, FewStepGenerator):
        sampler = sampler or FAST_SAMPLER["sampler"]
        steps = steps if steps is not None or sampler == "ddpm" else FAST_SAMPLER["steps"]
        eta = FAST_SAMPLER["eta"] if eta is None and sampler == "ddim" else eta
    x = sample(G, scheduler, n=n, image_size=image_size, device=device, sampler=sampler,
               steps=None if sampler == "ddpm" else steps, eta=eta or 0.0, seed=seed, clip_x0=clip_x0)
    images = to_unit(x).float().cpu()
    if save_grid is not None:
        save_image_grid(images, save_grid, nrow)
    if save_individual is not None:
        save_image_files(images, save_individual)
    if show:
        import matplotlib.pyplot as plt
        grid = image_grid(images, nrow)
        zoom = max(1.0, 96 / images.shape[-1])            # tiles at least ~96 screen pixels wide
        w, h = min(10, zoom * grid.shape[1] / 80 + 0.4), min(10, zoom * grid.shape[0] / 80 + 0.6)
        fig, ax = plt.subplots(figsize=(w, h), dpi=80)
        fig.subplots_adjust(left=0.2 / w, right=1 - 0.2 / w, bottom=0.1 / h, top=1 - 0.5 / h)   # the grid fills the figure
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        how = (f"few-step, {G.n_levels} levels" if isinstance(G, FewStepGenerator) else
               sampler.upper() + (f"-{steps}, η={eta:g}" if sampler == "ddim" else ""))
        ax.set_title(f"{n} samples, {how}")
        ax.axis("off")
        plt.show()
        plt.close(fig)
    return images
