"""Scale-out: training images/s of 1 process against N processes under torchrun (DDP), in one run.

Each process uses one thread (CPU) or one GPU and the same per-process batch, so N processes train
on N times the images per step; the ideal speed-up is N. The real ``train()`` runs on phantoms made
on the fly (the hybrid with the plain UNet, the default when the README's figures were taken; 32 px / base 32 on a CPU), and rank 0 times the steps after a
warm-up. The order is 1 process, N processes with DDP, N independent single-process runs at once
(no communication: the most these cores can give), 1 process again; a machine that slows down or
speeds up during the run shows as a gap between the two single-process figures. Ratios are to
their mean.

    python benchmarks/bench_ddp.py                       # CPU: 1 x 1 thread vs 2 x 1 thread (gloo)
    python benchmarks/bench_ddp.py --device cuda --nproc 1   # one GPU, NCCL: checks the path
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def worker(a) -> None:
    """One process of a timed run (under torchrun or alone); rank 0 prints one JSON line."""
    import torch

    from diffgan_lib import TrainConfig, make_dataloader, train
    from diffgan_lib.core.device import env_world
    torch.set_num_threads(1)
    rank, world = env_world()
    cuda = a.device == "cuda"
    size, base = a.image_size or (128 if cuda else 32), a.base or (64 if cuda else 32)
    cfg = TrainConfig.for_device(a.device, image_size=size, base=base, checkpoint_every=0,
                                 adv_weight=0.01, mean_path=False)   # the recipe the README's figures were measured with
    steps = a.warmup + a.steps
    loader = make_dataloader("phantoms", size, a.batch_size, n=a.batch_size * world * steps, seed=0, device=a.device)
    stamps = []
    train(loader, device=a.device, epochs=1, save_dir=a.out, config=cfg, max_steps=steps, progress=False,
          callback=lambda info: stamps.append(time.perf_counter()))
    if rank == 0:
        seconds = stamps[-1] - stamps[a.warmup - 1]
        print(json.dumps({"world": world, "images_per_s": a.steps * a.batch_size * world / seconds,
                          "ms_per_step": 1000 * seconds / a.steps, "size": size, "base": base}))


def launch(a, nproc: int, independent: bool = False) -> dict:
    """Run the worker in ``nproc`` processes and return rank 0's JSON line; ``independent``: ``nproc``
    separate single-process runs at once (no DDP), their images/s added: what the machine itself allows."""
    if independent:
        with concurrent.futures.ThreadPoolExecutor(nproc) as pool:
            runs = list(pool.map(lambda _: launch(a, 1), range(nproc)))
        return {**runs[0], "world": nproc, "images_per_s": sum(r["images_per_s"] for r in runs),
                "ms_per_step": max(r["ms_per_step"] for r in runs)}
    args = ["--worker", "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch-size", str(a.batch_size),
            "--device", a.device, "--out", tempfile.mkdtemp(prefix="bench_ddp_")]
    args += [f"--{k}={v}" for k, v in (("image-size", a.image_size), ("base", a.base)) if v]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = ([sys.executable, str(HERE)] if nproc == 1 else
           [torchrun, "--standalone", "--nproc_per_node", str(nproc), str(HERE)]) + args
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes of the DDP run (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (gloo, default) or cuda (NCCL, one GPU per process)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step in each process (default 32)")
    p.add_argument("--image-size", type=int, help="default 32 on CPU, 128 on CUDA")
    p.add_argument("--base", type=int, help="default 32 on CPU, 64 on CUDA")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    from bench_train import machine
    import torch
    torch.set_num_threads(1)
    print(f"machine: {machine(torch.device(a.device))} in each process")
    runs = [launch(a, 1), launch(a, a.nproc), launch(a, a.nproc, independent=True), launch(a, 1)]
    single = (runs[0]["images_per_s"] + runs[3]["images_per_s"]) / 2
    print(f"{runs[0]['size']} px, base {runs[0]['base']}, batch {a.batch_size} per process, {a.steps} timed steps "
          f"after {a.warmup}")
    print(f"{'run':<28} {'images/s':>9} {'ms/step':>8} {'ratio':>7}")
    names = ("1 process (before)", f"{a.nproc} processes, DDP", f"{a.nproc} independent runs, no DDP", "1 process (after)")
    for name, r in zip(names, runs):
        print(f"{name:<28} {r['images_per_s']:9.1f} {r['ms_per_step']:8.0f} {r['images_per_s'] / single:6.2f}x")


if __name__ == "__main__":
    main()
