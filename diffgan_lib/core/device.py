"""Device selection: CUDA, then Apple MPS, then CPU (ERRATA 7).

The seed defaults every function to ``device="cuda"``, which crashes on a laptop. Every function in
``diffgan_lib`` instead takes ``device=None`` meaning "pick the best one here", and accepts an
explicit ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``torch.device`` to override it.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["pick_device", "describe_device", "DEVICE_TYPES", "launched", "env_world"]

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``, or the best available one when it is None.

    Order of preference: CUDA, then Apple MPS, then CPU. Asking for a device this machine does not
    have raises ``ValueError`` that says what is available, instead of failing deep inside PyTorch.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name; use 'cpu', 'cuda' or 'mps'") from err
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"device {str(device)!r}: diffgan_lib trains and samples on 'cpu', 'cuda' (or 'cuda:N') "
                         f"and 'mps', not on {dev.type!r}; use one of those, or device=None to pick automatically")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but this machine has no CUDA GPU; "
                         "use device=None to pick automatically, or 'cpu'")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} was requested but Apple MPS is not available here; "
                         "use device=None to pick automatically, or 'cpu'")
    return dev


def describe_device(device: str | torch.device | None = None) -> str:
    """One line naming the device and, for CUDA, the GPU model and its memory."""
    dev = pick_device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if dev.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'' if n == 1 else 's'})"
    return dev.type


def launched() -> bool:
    """Whether this process runs under torchrun (WORLD_SIZE is set, even to 1) or in a process group."""
    return "WORLD_SIZE" in os.environ or (dist.is_available() and dist.is_initialized())


def env_world() -> tuple[int, int]:
    """(rank, world size) from an initialised process group, else from torchrun's variables, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
