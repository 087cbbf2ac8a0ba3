"""Sampling speed: milliseconds per network evaluation, and DDPM-1000 vs DDIM-50 for 8 images.

Each sampler step is one generator evaluation, so DDPM with T = 1000 steps costs 20x DDIM-50
(ERRATA 13). The network is untrained (speed does not depend on the weights).

    python benchmarks/bench_sampling.py                  # CPU: 32 px, base 32
    python benchmarks/bench_sampling.py --device cuda    # 128 px, base 64
    python benchmarks/bench_sampling.py --timesteps 200  # a shorter DDPM chain for a quick look
"""
from __future__ import annotations

import argparse

import torch

from diffgan_lib import sample
from diffgan_lib import DiffusionScheduler
from diffgan_lib import UNet

from bench_train import device_and_size, machine
from bench_train import step_seconds as timed   # wall time of one call, with CUDA syncs around it


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", help="cpu or cuda (default: the best one here)")
    p.add_argument("--image-size", type=int, help="default 32 on CPU, 128 on CUDA")
    p.add_argument("--base", type=int, help="default 32 on CPU, 64 on CUDA")
    p.add_argument("-n", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--timesteps", type=int, default=1000, help="T, the DDPM chain length (default 1000)")
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    a = p.parse_args()
    dev, size, base = device_and_size(a)
    G = UNet(1, base).to(dev).eval()
    scheduler = DiffusionScheduler(a.timesteps, device=dev)
    x, t = torch.randn(a.n, 1, size, size, device=dev), torch.full((a.n,), 10, device=dev)
    with torch.inference_mode():
        for _ in range(3):
            G(x, t)                                    # warm-up
        evals = 20
        ms = 1000 * timed(lambda: [G(x, t) for _ in range(evals)], dev) / evals
    print(f"machine: {machine(dev)}")
    print(f"sampling {a.n} images, {size} px, base {base}: {ms:.1f} ms per network evaluation")
    print(f"{'sampler':<12} {'evaluations':>11} {'seconds':>8}")
    rows = [("DDPM", "ddpm", None, a.timesteps), (f"DDIM-{a.ddim_steps}", "ddim", a.ddim_steps, a.ddim_steps)]
    secs = {}
    for name, sampler, steps, nfe in rows:
        secs[name] = timed(lambda: sample(G, scheduler, n=a.n, image_size=size, sampler=sampler, steps=steps,
                                          seed=0, progress=False), dev)
        print(f"{name:<12} {nfe:>11} {secs[name]:8.2f}")
    ddpm, ddim = secs.values()
    print(f"DDPM / DDIM wall time: {ddpm / ddim:.1f}x")


if __name__ == "__main__":
    main()
