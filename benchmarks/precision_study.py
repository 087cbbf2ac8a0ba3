"""Does bf16 cost quality? The course's default X-ray model trained in bf16 autocast against the same in float32.

Protocol: 32 px PneumoniaMNIST, the course's default recipe (pure diffusion, UNet base 32 with the mean path),
batch 32, 4 epochs, through the command line, training seeds 0, 1, 2:
  * float32: the diffusion models of ``benchmarks/flow_study.py`` (``runs/flow_study/diffusion_seed{S}``, trained
    in float32 before bf16 autocast became the CPU default);
  * bf16:    ``train --data pneumoniamnist --image-size 32 --base 32 --epochs 4 --batch-size 32 --seed S
    --precision bf16``.
Each is sampled from its EMA weights with the command line's default sampler (DDIM-50, eta 1, x0 clipped, 256
samples, noise seed 1000), in float32 and, to see whether sampling can use bf16 too, under bf16 autocast. FD and KID in the shipped
X-ray feature net against the 624 test X-rays (the flow study's yardstick), with each run's training wall time.

    python benchmarks/precision_study.py run        # trains what is missing (skips what is on disk), scores
    python benchmarks/precision_study.py table      # -> benchmarks/results/precision_study.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from diffgan_lib import load_checkpoint, sample
from diffgan_lib.cli import main as cli
from diffgan_lib.course import PRETRAINED_XRAY_FEATURES
from diffgan_lib.data import ImageDataset
from diffgan_lib.eval import extract_features, frechet_distance, kid, load_feature_net

OUT, FP32 = Path("runs/precision_study"), Path("runs/flow_study")
RESULTS = Path(__file__).resolve().parent / "results" / "precision_study.json"
SEEDS = (0, 1, 2)
TRAIN = ["train", "--data", "pneumoniamnist", "--image-size", "32", "--base", "32", "--epochs", "4",
         "--batch-size", "32", "--save-every", "100"]


def folder(precision: str, seed: int) -> Path:
    return FP32 / f"diffusion_seed{seed}" if precision == "fp32" else OUT / f"bf16_seed{seed}"


def cmd_run(a) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cache_path = OUT / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    net = load_feature_net(PRETRAINED_XRAY_FEATURES)
    f_test = extract_features(net, ImageDataset("pneumoniamnist", 32, split="test").images)
    for seed in a.seeds:
        out = folder("bf16", seed)
        if not (out / "final_model.pth").exists():
            t0 = time.time()
            resume = ["--resume", str(out / "last.pth")] if (out / "last.pth").exists() else []
            if cli([*TRAIN, "--seed", str(seed), "--precision", "bf16", "--out", str(out), *resume]):
                raise SystemExit(f"training {out} failed")
            cache[f"bf16_seed{seed}/train_s"] = round(time.time() - t0, 1)
        for precision in ("fp32", "bf16"):
            for sampling in ("fp32", "bf16"):
                key = f"{precision}_seed{seed}/sample_{sampling}"
                if key in cache:
                    continue
                G, _, sched = load_checkpoint(folder(precision, seed) / "final_model.pth", device="cpu")
                t0 = time.time()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=sampling == "bf16"):
                    x = sample(G, sched, n=256, image_size=32, seed=1000, progress=False, sampler="ddim", steps=50,
                               eta=1.0, clip_x0=True).float().clamp(-1, 1)
                f = extract_features(net, x)
                cache[key] = {"fd": frechet_distance(f, f_test), "kid": kid(f, f_test, seed=0)[0],
                              "sample_s": round(time.time() - t0, 1)}
                print(key, cache[key], flush=True)
                cache_path.write_text(json.dumps(cache, indent=1))


def cmd_table(a) -> None:
    cache = json.loads((OUT / "scores.json").read_text())
    flow = json.loads((Path(__file__).resolve().parent / "results" / "flow_study.json").read_text())
    rows = {}
    for precision in ("fp32", "bf16"):
        for sampling in ("fp32", "bf16"):
            got = [cache[f"{precision}_seed{s}/sample_{sampling}"] for s in SEEDS]
            fd = [g["fd"] for g in got]
            rows[f"trained in {precision}, sampled in {sampling}"] = {
                "fd": {"mean": statistics.fmean(fd), "sd": statistics.stdev(fd), "values": fd},
                "kid": statistics.fmean(g["kid"] for g in got), "sample_s": [g["sample_s"] for g in got]}
    train_s = {"fp32": [flow["training"][f"diffusion_seed{s}"]["train_s"] for s in SEEDS],
               "bf16": [cache[f"bf16_seed{s}/train_s"] for s in SEEDS if f"bf16_seed{s}/train_s" in cache]}
    RESULTS.write_text(json.dumps({
        "protocol": __doc__.split("\n\n")[1], "seeds": list(SEEDS), "rows": rows, "train_s": train_s,
        "real_vs_real": flow["real_vs_real"],
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; training "
                   "wall times from runs sharing 2 cores with other jobs (upper bounds)"}, indent=1))
    print(json.dumps(rows, indent=1))
    print(f"wrote {RESULTS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"run": cmd_run, "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
