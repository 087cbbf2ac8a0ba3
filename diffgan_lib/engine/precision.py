"""The number format a run trains in: float32, or bf16 / fp16 autocast, chosen by the machine.

``precision="auto"`` (``TrainConfig``'s default) means bf16 autocast on a CUDA GPU with bf16 (fp16 with a
GradScaler on older GPUs) and on a CPU that multiplies bf16 natively (AVX-512 BF16 or AMX: about twice the
float32 speed for the course's UNet, ``benchmarks/bench_train.py``), float32 everywhere else. Losses are
still computed in float32 (``core.losses``); weights and optimiser states stay float32.
"""
from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "cpu_has_bf16", "resolve_precision", "precision_name"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """True where this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX tiles), as PyTorch reports it."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in probes if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for float32, whether a GradScaler is needed) for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None, False
    if device.type != "cuda":
        if precision == "auto":
            return (torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None), False
        if precision == "bf16" and device.type == "cpu":
            return torch.bfloat16, False         # also without native bf16: slower than float32 there, but allowed
        raise ValueError(f"precision={precision!r} needs a CUDA device but training runs on {device.type}; "
                         "use precision='auto' or 'fp32'" + (" or 'bf16'" if device.type == "cpu" else ""))
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        if not torch.cuda.is_bf16_supported():
            raise ValueError("precision='bf16' but this GPU does not support bfloat16; use 'fp16' or 'auto'")
        return torch.bfloat16, False
    return torch.float16, True


def precision_name(precision: str, device: torch.device) -> str:
    """What ``precision`` means on ``device``, in words: "bf16 autocast", "fp16 autocast" or "float32"."""
    dtype = resolve_precision(precision, device)[0]
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(dtype, "float32")
