"""Training throughput: the seed's loop as written vs diffgan_lib's corrected step, same width, and how close
each comes to the machine's limit.

The as-written step runs the generator twice (diffusion loss, then G(add_noise(x0, 0)) as the
"fake") and backpropagates through both; the corrected step runs it once and reuses x0_pred
(ERRATA 2), so it should be about 2x faster on a CPU. bf16 autocast (on CUDA, and on CPUs with native
bf16: AVX-512 BF16 or AMX) and channels_last add more. D trains on every step in every row. Warm-up steps
are excluded; the setups run in turn, one step each, and the median step time counts, so a busy spell on a
shared machine slows all alike. Random batches in [-1, 1] already on the device (no data loading).

"How close to the limit" is a number: each row's floating-point work per step (matrix multiplies and
convolutions, forward and backward, counted by torch.utils.flop_counter) over its median step time, next to
the machine's measured speed in the same number format: the ceiling, the fastest of three dense kernels
(square matrix products of side 512 and 1024, a 3x3 convolution), each timed in the same rounds as the steps
(medians), so that a busy spell lowers both alike. Element-wise work (norms, activations, Adam) is not counted,
so a step can never reach 100 %. torch.compile's compile time is not in its row: it is paid once per run.

    python benchmarks/bench_train.py                 # CPU: 32 px, base 32, batch 32
    python benchmarks/bench_train.py --steps 10      # shorter
    python benchmarks/bench_train.py --device cuda   # 128 px, base 64, batch 32: fp32 and bf16
    python benchmarks/bench_train.py --threads 1     # one core (the figures in the README)
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


def prepare(cfg, dev, size, batch, timesteps, step=None):
    """Networks, optimisers and one batch for a setup; returns a function that runs one training step."""
    run = build_run(cfg, 1, timesteps, dev, ema=cfg.ema_decay > 0, step_fn=step)
    if cfg.compile:
        run.G_train = torch.compile(run.G)
    x0 = torch.rand(batch, 1, size, size, device=dev) * 2 - 1
    if run.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)

    def one_step():
        run.step_fn(run, x0, None)
        run.step += 1
    return one_step


def flops(run_step) -> float:
    """Floating-point operations of one call (matrix multiplies and convolutions, forward and backward),
    counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        run_step()
    return float(counter.get_total_flops())


def kernel_rates(dev, dtype, work_per_timing: float = 4e9) -> dict:
    """Functions timing the dense kernels a UNet step is made of, in ``dtype``; each returns GFLOP/s: square
    matrix products (side 512 and 1024) and a 3x3 convolution (32 x 64 channels x 16 x 16, 64 filters)."""
    def timed_rate(fn, work):               # enough repeats per timing for ~work_per_timing FLOP (tens of ms)
        fn()
        reps = max(1, round(work_per_timing / work))
        return lambda: work * reps / step_seconds(lambda: [fn() for _ in range(reps)], dev) / 1e9
    rates = {}
    for n in (512, 1024):
        a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
        rates[f"matmul {n}"] = timed_rate(lambda a=a, b=b: a @ b, 2 * n ** 3)
    x = torch.randn(32, 64, 16, 16, device=dev, dtype=dtype)
    w = torch.randn(64, 64, 3, 3, device=dev, dtype=dtype)
    rates["conv3x3"] = timed_rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 32 * 64 * 64 * 9 * 16 * 16)
    return rates


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


def setups(a, dev, size, base) -> list[tuple[str, TrainConfig, object]]:
    """(name, config, step function or None for the library's) of every row, the seed's loop first."""
    from diffgan_lib.course.seed_loop import train_step_as_written
    from diffgan_lib.engine.precision import cpu_has_bf16
    # equal width, D trained on every step (the hybrid's adversarial term from step 0), no data loading
    ours = dict(base=base, image_size=size, adv_weight=0.01, adv_warmup_steps=0, channels_last=False, precision="fp32")
    rows = [("seed's loop as written, fp32", TrainConfig.seed_as_written(base=base, image_size=size, adv_weight=0.01,
                                                                         adv_warmup_steps=0, channels_last=False,
                                                                         precision="fp32"), train_step_as_written),
            ("ours, fp32", TrainConfig(**ours), None)]
    if dev.type == "cuda":
        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        rows.append((f"ours, {half} + channels_last", TrainConfig(**{**ours, "precision": half, "channels_last": True}), None))
    elif cpu_has_bf16() or a.bf16:
        rows += [("ours, bf16", TrainConfig(**{**ours, "precision": "bf16"}), None),
                 ("ours, bf16 + channels_last", TrainConfig(**{**ours, "precision": "bf16", "channels_last": True}), None)]
    if a.compile:
        best = rows[-1]
        rows.append((f"{best[0]}, torch.compile", best[1].replace(compile=True), None))
    return rows


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
    p.add_argument("--bf16", action="store_true", help="CPU: time bf16 also where the CPU has no native bf16")
    p.add_argument("--compile", action="store_true", help="also time the fastest setup with torch.compile "
                   "(its compile time is excluded: see the docstring)")
    a = p.parse_args()
    dev, size, base = device_and_size(a)
    rows = setups(a, dev, size, base)
    print(f"machine: {machine(dev)}")
    print(f"training, {size} px, base {base}, batch {a.batch_size}, T {a.timesteps}, D on every step: median of "
          f"{a.steps} timed steps per setup after {a.warmup} warm-up, setups interleaved step by step")
    steps = {name: prepare(cfg, dev, size, a.batch_size, a.timesteps, step) for name, cfg, step in rows}
    precision = {name: (torch.bfloat16 if cfg.precision == "bf16" else torch.float16 if cfg.precision == "fp16"
                        else torch.float32) for name, cfg, _ in rows}
    for run_step in steps.values():
        for _ in range(a.warmup):
            run_step()
    work = {name: flops(run_step) for name, run_step in steps.items()}
    times = {name: [] for name in steps}
    kernels = {dtype: kernel_rates(dev, dtype) for dtype in set(precision.values())}
    rates = {(dtype, k): [] for dtype, ks in kernels.items() for k in ks}
    for _ in range(a.steps):                            # round robin: a busy spell slows every setup alike
        for name, run_step in steps.items():
            times[name].append(step_seconds(run_step, dev))
        for dtype, ks in kernels.items():
            for k, rate in ks.items():
                rates[dtype, k].append(rate())
    medians = {key: statistics.median(r) for key, r in rates.items()}
    ceiling = {dtype: max(v for (d, _), v in medians.items() if d == dtype) for dtype in kernels}
    for dtype in sorted(kernels, key=str):
        print(f"ceiling in {str(dtype).split('.')[-1]}: {ceiling[dtype]:.0f} GFLOP/s (" + ", ".join(
            f"{k} {v:.0f}" for (d, k), v in medians.items() if d == dtype) + ")")
    print(f"{'setup':<38} {'images/s':>9} {'ms/step':>8} {'vs seed':>8} {'GFLOP/step':>11} {'GFLOP/s':>8} "
          f"{'of ceiling':>10}")
    baseline = None
    for name, ts in times.items():
        sec = statistics.median(ts)
        ips, rate = a.batch_size / sec, work[name] / sec / 1e9
        baseline = baseline or ips
        print(f"{name:<38} {ips:9.1f} {1000 * sec:8.1f} {ips / baseline:7.2f}x {work[name] / 1e9:11.2f} "
              f"{rate:8.1f} {rate / ceiling[precision[name]]:9.0%}")


if __name__ == "__main__":
    main()
