"""The teacher's own (latent, image) pairs, which the one-call fine-tune regresses onto beside its GAN term.

For n latents z ~ N(0, I) (n, C, S, S), the teacher's DDIM chain (x̂0 clipped) started at x_T = z gives
x (n, C, S, S) in [-1, 1]. At eta 0 (the default) the chain is deterministic: a fixed map z -> x that one network
call can learn. At eta > 0 fresh noise (from the same seed) enters every step, so x is one draw of the images
that start from z: sharper than eta 0's (the teacher's eta-1 samples score far better than its eta-0 ones), and
its coarse layout, which is all the regression reads, is still mostly set by z. The pairs are made
once per run folder and kept there (``teacher_pairs.pt``, written atomically) so that a resumed run reuses
them; a file made by another teacher or with other settings is made again, never trusted.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.files import atomic_write
from ..sampling import DDIM

__all__ = ["PAIRS_FILE", "make_pairs", "pairs_in_folder"]

PAIRS_FILE = "teacher_pairs.pt"


@torch.no_grad()
def make_pairs(unet, scheduler, n: int, steps: int, seed: int, shape: tuple[int, int, int], device,
               batch_size: int = 256, progress: bool = True, eta: float = 0.0) -> dict:
    """{"z": (n, *shape), "x": (n, *shape)} on the CPU: the teacher's DDIM-``steps`` (``eta``, x̂0 clipped) image
    of each latent z (drawn from ``seed``, as is the chain's noise at eta > 0), in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, *shape), generator=g)
    sampler, was_training = DDIM(scheduler, steps=steps, eta=eta, clip_x0=True), unet.training
    unet.eval()
    xs = []
    with tqdm(total=n * steps, desc=f"teacher pairs (DDIM-{steps}, eta {eta:g})", unit="call", unit_scale=1 / batch_size,
              disable=not progress) as bar:
        for chunk in z.split(batch_size):
            xs.append(sampler.sample(unet, chunk.to(device), generator=g).clamp(-1, 1).cpu())
            bar.update(len(chunk) * steps)
    unet.train(was_training)
    return {"z": z, "x": torch.cat(xs)}


def pairs_in_folder(folder, teacher_sha256: str, teacher, scheduler, n: int, steps: int, seed: int,
                    shape: tuple[int, int, int], device, progress: bool = True, eta: float = 0.0) -> dict:
    """The pairs kept in ``folder`` if they were made by this teacher with these settings; else made by
    ``teacher()`` (a function returning the teacher UNet, called only then) and kept."""
    path = Path(folder) / PAIRS_FILE
    made_by = {"teacher": teacher_sha256, "n": n, "steps": steps, "seed": seed, "shape": list(shape)}
    if eta:                    # files made before eta was a setting were all eta 0
        made_by["eta"] = float(eta)
    if path.is_file():
        try:
            kept = torch.load(path, map_location="cpu", weights_only=True)
            if kept.get("made_by") == made_by:
                return {"z": kept["z"], "x": kept["x"]}
        except Exception:          # a damaged file is made again
            pass
    pairs = make_pairs(teacher(), scheduler, n, steps, seed, shape, device, progress=progress, eta=eta)
    atomic_write(path, lambda f: torch.save({**pairs, "made_by": made_by}, f))
    return pairs
