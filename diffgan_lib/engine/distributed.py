"""Scale-out with torchrun: one process per GPU (or per CPU core), gradients averaged by DDP.

``torchrun --nproc_per_node N -m diffgan_lib train ...`` starts N copies of the program and tells
each one who it is through environment variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR...).
:func:`setup` reads them: without them (a plain ``python`` or a notebook) it returns a
single-process context and nothing distributed happens; with WORLD_SIZE > 1 it joins the
process group (NCCL on CUDA, one GPU per process; gloo on the CPU) unless the caller already did.
WORLD_SIZE = 1 under torchrun also takes this path (one process with DDP), so a single GPU can
check the distributed code.

Rules the training loop follows (each is a method here, so that it reads as one line there):
- every rank draws its own shard of the data (``DistributedSampler``) and runs the same number of steps;
- only rank 0 (``ctx.is_main``) writes files, prints and draws progress bars;
- decisions that change which collective operations run (the adversarial term on this step, stop
  now) are agreed by all ranks (``ctx.all_true`` / ``ctx.any_true``), or the ranks would deadlock;
- logged losses are averaged over ranks (``ctx.mean``), so a NaN on any rank reaches every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.device import env_world, launched, pick_device

__all__ = ["DistContext", "setup", "env_world", "launched", "is_sharded"]


@dataclass
class DistContext:
    """Who this process is: ``rank`` of ``world`` processes, on ``device``.

    ``distributed``: in a process group (torchrun), so the networks are wrapped in DDP and the
    ranks agree on every decision, even with one process (``--nproc_per_node 1`` checks the path).
    ``owns_group``: this context started the process group, so :meth:`close` ends it.
    """
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    distributed: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _reduce(self, x: torch.Tensor, op) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(x, op=op)
        return x

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of ``x`` over ranks (in place; ``x`` itself in a single process)."""
        return self._reduce(x, dist.ReduceOp.SUM).div_(self.world) if self.distributed else x

    def _int(self, value: int, op) -> int:
        """An integer reduced over ranks with ``op`` (the value itself in a single process)."""
        if not self.distributed:
            return int(value)
        return int(self._reduce(torch.tensor([int(value)], device=self.device), op).item())

    def all_true(self, flag: bool) -> bool:
        """True only if ``flag`` is true on every rank."""
        return bool(self._int(flag, dist.ReduceOp.MIN))

    def any_true(self, flag: bool) -> bool:
        """True if ``flag`` is true on at least one rank."""
        return bool(self._int(flag, dist.ReduceOp.MAX))

    def max_int(self, value: int) -> int:
        """The largest of an integer over ranks."""
        return self._int(value, dist.ReduceOp.MAX)

    def same_on_all(self, value: int) -> bool:
        """Whether an integer (e.g. batches per epoch) is equal on every rank."""
        return self._int(value, dist.ReduceOp.MIN) == self._int(value, dist.ReduceOp.MAX)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this context started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device=None) -> DistContext:
    """The process context for ``device`` (None = the best one here), joining torchrun's group if any.

    Under torchrun with CUDA each process takes GPU ``LOCAL_RANK``, whatever ``device`` names.
    """
    if not launched():
        return DistContext(device=pick_device(device))
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE is set (torchrun?) but this PyTorch build has no torch.distributed; "
                           "run a single process (python, not torchrun)")
    dev = pick_device(device)
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s); "
                             "start torchrun with --nproc_per_node at most the number of GPUs")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif dev.type == "mps":
        raise ValueError("torchrun with Apple MPS is not supported; use --device cpu (gloo) or one process")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size(), device=dev, distributed=True,
                       owns_group=owns)


def is_sharded(dataloader) -> bool:
    """Whether a DataLoader draws its indices from a DistributedSampler (each rank its own shard)."""
    from torch.utils.data.distributed import DistributedSampler
    sampler = getattr(dataloader, "sampler", None)
    batch_sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None)
    return isinstance(sampler, DistributedSampler) or isinstance(batch_sampler, DistributedSampler)
