"""Training throughput: the seed's loop as written vs diffgan_lib's corrected step, same network.

The as-written step runs the generator twice (diffusion loss, then G(add_noise(x0, 0)) as the
"fake") and backpropagates through both; the corrected step runs it once and reuses x0_pred
(ERRATA 2), so it should be about 2x faster on a CPU. On CUDA, bf16 autocast and channels_last
add more. Warm-up steps are excluded; the setups run in turn, one step each, and the median step time
counts, so a busy spell on a shared machine slows all alike. Random batches in [-1, 1] already on
the device (no data loading).

    python benchmarks/bench_train.py                 # CPU: 32 px, base 32, batch 32
    python benchmarks/bench_train.py --steps 10      # shorter
    python benchmarks/bench_train.py --device cuda   # 128 px, base 64, batch 32: fp32 and bf16
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from diffgan_lib import TrainConfig
from diffgan_lib import pick_device
from diffgan_lib import build_run
from diffgan_lib import train_step


def machine(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:                                               # Linux: the CPU's model name
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def prepare(cfg, dev, size, batch, timesteps):
    """Networks, optimisers and one batch for a setup; returns a function that runs one step."""
    run = build_run(cfg, 1, timesteps, dev, ema=cfg.variant != "as_written")   # the seed keeps no EMA
    G = torch.compile(run.G) if cfg.compile else run.G
    x0 = torch.rand(batch, 1, size, size, device=dev) * 2 - 1
    if run.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    counter = iter(range(10**9))
    return lambda: train_step(G, run.D, run.opt_G, run.opt_D, x0, run.scheduler, cfg, next(counter), ema=run.ema,
                              scaler=run.scaler)


def step_seconds(run_step, dev) -> float:
    """Wall time of one call of ``run_step``, with CUDA synchronised before and after."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    run_step()                                          # ends with a device sync (the losses' .tolist())
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start


def device_and_size(a) -> tuple[torch.device, int, int]:
    """Apply --threads, pick --device, and fill in the defaults for --image-size and --base: the seed's
    128 px / base 64 on CUDA, 32 px / base 32 elsewhere. Shared by the benchmark scripts."""
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    cuda = dev.type == "cuda"
    return dev, a.image_size or (128 if cuda else 32), a.base or (64 if cuda else 32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", help="cpu or cuda (default: the best one here)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per setup (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--image-size", type=int, help="default 32 on CPU, 128 on CUDA")
    p.add_argument("--base", type=int, help="default 32 on CPU, 64 on CUDA")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    p.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    a = p.parse_args()
    dev, size, base = device_and_size(a)
    common = dict(base=base, adv_weight=0.01, channels_last=False, amp="off")
    setups = [("as written (seed), fp32", TrainConfig(variant="as_written", ema_decay=0.0, **common)),
              ("ours, fp32", TrainConfig(**common))]
    if dev.type == "cuda":
        fast = {**common, "amp": "auto", "channels_last": True}    # bf16 where supported, else fp16
        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        setups.append((f"ours, {half} + channels_last", TrainConfig(**fast)))
    if a.compile:
        setups.append(("ours, fp32, torch.compile", TrainConfig(**common, compile=True)))
    print(f"machine: {machine(dev)}")
    print(f"training, {size} px, base {base}, batch {a.batch_size}, T {a.timesteps}: median of {a.steps} "
          f"timed steps per setup after {a.warmup} warm-up, setups interleaved step by step")
    steps = {name: prepare(cfg, dev, size, a.batch_size, a.timesteps) for name, cfg in setups}
    for run_step in steps.values():
        for _ in range(a.warmup):
            run_step()
    times = {name: [] for name in steps}
    for _ in range(a.steps):                            # round robin: a busy spell slows every setup alike
        for name, run_step in steps.items():
            times[name].append(step_seconds(run_step, dev))
    print(f"{'setup':<30} {'images/s':>9} {'ms/step':>8} {'speed-up':>9}")
    baseline = None
    for name, ts in times.items():
        ips = a.batch_size / statistics.median(ts)
        baseline = baseline or ips
        print(f"{name:<30} {ips:9.1f} {1000 * a.batch_size / ips:8.1f} {ips / baseline:8.2f}x")

if __name__ == "__main__":
    main()
