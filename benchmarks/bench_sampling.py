"""Sampling speed: milliseconds per network evaluation, DDPM-1000 vs DDIM-50 for 8 images, and the images per
second per core of DDIM-50, the few-step and the one-call generators, in float32 and bf16 autocast.

Each sampler step is one generator evaluation, so DDPM with T = 1000 steps costs 20x DDIM-50
(ERRATA 13). The network is untrained (speed does not depend on the weights).

    python benchmarks/bench_sampling.py                  # CPU: 32 px, base 32
    python benchmarks/bench_sampling.py --device cuda    # 128 px, base 64
    python benchmarks/bench_sampling.py --timesteps 200  # a shorter DDPM chain for a quick look
"""
from __future__ import annotations

import argparse
import statistics

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
    p.add_argument("--batch", type=int, default=64, help="images per batch in the throughput table (default 64)")
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
    throughput(a, dev, size, base, DiffusionScheduler(1000, device=dev))   # the shipped generators: T = 1000


def throughput(a, dev, size, base, scheduler) -> None:
    """Images per second per core of each generator the course ships, a batch of ``a.batch`` images at a time,
    in float32 and (on a CPU with native bf16, or on CUDA) under bf16 autocast."""
    from diffgan_lib.core.fewstep import FewStepGenerator, level_timesteps
    from diffgan_lib.core.onecall import OneCallGenerator
    from diffgan_lib.engine.precision import cpu_has_bf16
    unet = UNet(1, base).to(dev).eval()
    makers = {"DDIM-50 (50 calls)": (unet, dict(sampler="ddim", steps=50)),
              "few-step (4 calls)": (FewStepGenerator(unet, scheduler, level_timesteps(scheduler, 4)).eval(), {}),
              "one-call (1 call)": (OneCallGenerator(unet, scheduler).eval(), {})}
    formats = [torch.float32] + ([torch.bfloat16] if dev.type == "cuda" or cpu_has_bf16() else [])
    cores = 1 if dev.type == "cuda" else torch.get_num_threads()
    print(f"throughput, batches of {a.batch} images: images/s per {'GPU' if dev.type == 'cuda' else 'core'} "
          f"({cores} thread{'s' * (cores > 1)})")
    print(f"{'generator':<20}" + "".join(f"{str(f).split('.')[-1]:>10}" for f in formats))
    for name, (G, options) in makers.items():
        row = []
        for fmt in formats:
            with torch.autocast(dev.type, dtype=fmt, enabled=fmt != torch.float32):
                run = lambda: sample(G, scheduler, n=a.batch, image_size=size, seed=0, progress=False, **options)  # noqa: E731
                run()                                                     # warm-up
                seconds = statistics.median(timed(run, dev) for _ in range(3))
            row.append(a.batch / seconds / cores)
        print(f"{name:<20}" + "".join(f"{v:10.1f}" for v in row))


if __name__ == "__main__":
    main()
