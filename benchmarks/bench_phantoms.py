"""How fast are the phantoms made on the fly? Prints images/s at 32, 64 and 128 px on one CPU thread.

Run:  python benchmarks/bench_phantoms.py [--seconds 1.0]
Targets: >= 1,000 images/s at 32 px and >= 100 at 128 px, so that a DataLoader with
num_workers=0 never waits on the data. Each size is timed in a few rounds of about ``--seconds``
and the best round is reported (other programs on the machine only ever slow a round down).
"""
from __future__ import annotations

import argparse
import time

import torch

from diffgan_lib import PhantomDataset

TARGETS = {32: 1000, 64: None, 128: 100}


def images_per_second(image_size: int, seconds: float = 1.0, rounds: int = 3) -> float:
    """Best-of-``rounds`` rate of ``PhantomDataset(image_size=...)[i]`` for fresh indices i."""
    ds = PhantomDataset(n=10**9, image_size=image_size, seed=0)
    ds[0]                                                    # warm-up: caches, allocator
    best, i = 0.0, 1
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(10):
                ds[i]
                i += 1
            count += 10
        best = max(best, count / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timing round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    for size, target in TARGETS.items():
        rate = images_per_second(size, args.seconds)
        verdict = "" if target is None else (f"  (target >= {target}: "
                                             f"{'ok' if rate >= target else 'BELOW TARGET'})")
        print(f"{size:4d} px: {rate:8.0f} images/s{verdict}")


if __name__ == "__main__":
    main()
