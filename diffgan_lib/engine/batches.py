"""The data stream of a run: keyed seeds, and batches in an order that a resumed run repeats exactly.

Every random draw of a run comes from a generator seeded by integers (``mix``): each epoch's order
from (seed, epoch), each sample's t and noise from (seed, step, its index in the global batch). So a
run resumes exactly, and 2 processes x batch B draw what 1 process x batch 2B draws.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["mix", "batches", "seed_epoch"]


def mix(*keys: int) -> int:
    """A 63-bit seed from integers (the first one a tag naming the use), so that neighbouring keys
    give unrelated random streams."""
    h = 0x94D049BB133111EB
    for k in keys:
        h = ((h ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) % 2**64
    return h % 2**63


def seed_epoch(dataloader, seed: int, epoch: int) -> None:
    """Seed what shuffles an epoch from (seed, epoch): the global generators (a DataLoader without a
    generator draws its order from them), the loader's own generators and a sampler's ``set_epoch``."""
    s = mix(1, seed, epoch)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    sampler = getattr(dataloader, "sampler", None)
    batch_sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None)
    for smp in {id(x): x for x in (sampler, batch_sampler) if x is not None}.values():
        if hasattr(smp, "set_epoch"):
            smp.set_epoch(epoch)
        if isinstance(getattr(smp, "generator", None), torch.Generator):
            smp.generator.manual_seed(s)
    if isinstance(getattr(dataloader, "generator", None), torch.Generator):
        dataloader.generator.manual_seed(s)


def batches(dataloader, seed: int, position: tuple[int, int], epochs: int):
    """Yield (epoch, batch, whether it is the epoch's last) from ``position`` = (epoch, batches done)
    to the end of epoch ``epochs - 1``; each epoch's order comes from (seed, epoch)."""
    first, done = position
    for epoch in range(first, epochs):
        seed_epoch(dataloader, seed, epoch)
        it = iter(dataloader)
        skip = done if epoch == first else 0
        if sum(1 for _, _ in zip(range(skip), it)) < skip:
            raise ValueError(f"the checkpoint stopped after batch {skip} of epoch {epoch}, but this dataloader "
                             "has fewer batches: resume with the same data and batch size")
        nxt = next(it, None)
        while nxt is not None:
            batch, nxt = nxt, next(it, None)
            yield epoch, batch, nxt is None
