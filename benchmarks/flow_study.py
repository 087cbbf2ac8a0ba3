"""Flow matching against diffusion at equal training budget, and at equal numbers of network calls.

Protocol: 32 px PneumoniaMNIST; for each training seed, two models trained through the command line with
the same network (UNet base 32 with the mean path), batch 32 and 4 epochs (588 steps):
  * diffusion: ``train --data pneumoniamnist --image-size 32 --base 32 --epochs 4 --batch-size 32 --seed S``
    (the course's default recipe, pure diffusion);
  * flow:      the same with ``--objective flow`` (rectified flow; one forward and backward a step, as diffusion).
Each is sampled from its EMA weights with 256 samples (noise seed 1000) at N = 1, 2, 4, 10, 50 network calls:
the flow model with Euler (N steps) and Heun (the most steps whose 2 steps - 1 calls fit in N); the diffusion
model with DDIM at eta 0 and 1 (x0 clipped) and DPM-Solver++(2M) (diffusers' DPMSolverMultistepScheduler on
the same betas, x0 thresholded to [-1, 1] as DDIM's is clipped: the field's standard few-step ODE solver). FD and KID in the shipped X-ray feature net
(data/pretrained/xray32_featurenet.pt, the X-ray study's), against the 624 test X-rays, with real vs real
(256 val X-rays against the test split).

    python benchmarks/flow_study.py train --seeds 0 1 2        # 6 runs in runs/flow_study/
    python benchmarks/flow_study.py score --seeds 0 1 2        # cached per (run, sampler, N)
    python benchmarks/flow_study.py table                      # -> benchmarks/results/flow_study.json

Every step skips what is on disk, so a stopped study continues where it stopped (a stopped training run
resumes from its last.pth).
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

OUT = Path("runs/flow_study")
RESULTS = Path(__file__).resolve().parent / "results" / "flow_study.json"
CALLS = (1, 2, 4, 10, 50)
N_SAMPLES, NOISE_SEED = 256, 1000
TRAIN = ["--data", "pneumoniamnist", "--image-size", "32", "--base", "32", "--epochs", "4", "--batch-size", "32",
         "--save-every", "100", "--precision", "fp32"]    # float32, as the results were made (precision_study's fp32 arm)


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def cmd_train(a) -> None:
    for seed in a.seeds:
        for arm, extra in (("diffusion", []), ("flow", ["--objective", "flow"])):
            folder = OUT / f"{arm}_seed{seed}"
            if (folder / "final_model.pth").exists():
                continue
            last = folder / "last.pth"
            t0 = time.time()
            args = ["train", *TRAIN, "--seed", str(seed), "--out", str(folder), *extra]
            status = cli(args + (["--resume", str(last)] if last.exists() else []))
            if status:
                raise SystemExit(f"{arm} seed {seed}: train exited {status}")
            (folder / "wall.json").write_text(json.dumps({"train_s": round(time.time() - t0, 1), "machine": machine(),
                                                          "command": "python -m diffgan_lib " + " ".join(args)}))


def dpm_solver(G, scheduler, n: int, steps: int, seed: int) -> torch.Tensor:
    """DPM-Solver++(2M) (diffusers) on our noise-predicting UNet, the same linear betas, ``steps`` calls; its x0
    predictions thresholded to [-1, 1] (diffusers' ``thresholding``), as DDIM's are clipped: unthresholded, a
    4-epoch model's x0 overshoots to +-100 at the first steps (FD 283 at 10 calls against 58 thresholded)."""
    from diffusers import DPMSolverMultistepScheduler
    dpm = DPMSolverMultistepScheduler(num_train_timesteps=scheduler.T, beta_schedule="linear",
                                      beta_start=float(scheduler.betas[0]), beta_end=float(scheduler.betas[-1]),
                                      algorithm_type="dpmsolver++", solver_order=2, prediction_type="epsilon",
                                      lower_order_final=True, thresholding=True, sample_max_value=1.0)
    dpm.set_timesteps(steps)
    x = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        for t in dpm.timesteps:
            x = dpm.step(G(x, torch.full((n,), int(t))), t, x).prev_sample
    return x.clamp(-1, 1)


def draw(G, sched, kind: str, how: str, calls: int) -> tuple[torch.Tensor, int]:
    """256 samples with sampler ``how`` within ``calls`` network calls; returns (images, calls used)."""
    kw = dict(n=N_SAMPLES, image_size=32, seed=NOISE_SEED, progress=False)
    if how == "euler":
        return sample(G, sched, sampler="euler", steps=calls, **kw), calls
    if how == "heun":
        steps = (calls + 1) // 2
        return sample(G, sched, sampler="heun", steps=steps, **kw), 2 * steps - 1
    if how.startswith("ddim"):
        return sample(G, sched, sampler="ddim", steps=calls, eta=float(how[-1]), clip_x0=True, **kw), calls
    return dpm_solver(G, sched, N_SAMPLES, calls, NOISE_SEED), calls


def cmd_score(a) -> None:
    net = load_feature_net(PRETRAINED_XRAY_FEATURES)
    test = ImageDataset("pneumoniamnist", 32, split="test").images
    f_test = extract_features(net, test)
    cache_path = OUT / "scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if "real_vs_real" not in cache:
        f_val = extract_features(net, ImageDataset("pneumoniamnist", 32, split="val").images[:N_SAMPLES])
        cache["real_vs_real"] = {"fd": frechet_distance(f_val, f_test), "kid": kid(f_val, f_test, seed=0)[0]}
    for seed in a.seeds:
        for arm, samplers in (("diffusion", ("ddim_eta0", "ddim_eta1", "dpm++2m")), ("flow", ("euler", "heun"))):
            run = f"{arm}_seed{seed}"
            G, _, sched = load_checkpoint(OUT / run / "final_model.pth", device="cpu")
            for how in samplers:
                for calls in CALLS:
                    key = f"{run}/{how}/{calls}"
                    if key in cache:
                        continue
                    t0 = time.time()
                    x, used = draw(G, sched, arm, how, calls)
                    f = extract_features(net, x.clamp(-1, 1))
                    cache[key] = {"fd": frechet_distance(f, f_test), "kid": kid(f, f_test, seed=0)[0], "calls": used,
                                  "sample_s": round(time.time() - t0, 1)}
                    print(key, cache[key], flush=True)
                    cache_path.write_text(json.dumps(cache, indent=1))
    cache_path.write_text(json.dumps(cache, indent=1))


def cmd_table(a) -> None:
    cache = json.loads((OUT / "scores.json").read_text())
    seeds = sorted({int(k.split("/")[0].split("seed")[1]) for k in cache if "/" in k})
    table = {}
    for arm, samplers in (("diffusion", ("ddim_eta0", "ddim_eta1", "dpm++2m")), ("flow", ("euler", "heun"))):
        for how in samplers:
            for calls in CALLS:
                rows = [cache[f"{arm}_seed{s}/{how}/{calls}"] for s in seeds if f"{arm}_seed{s}/{how}/{calls}" in cache]
                if not rows:
                    continue
                fd = [r["fd"] for r in rows]
                table[f"{arm}/{how}/{calls}"] = {
                    "calls": rows[0]["calls"], "fd": {"mean": statistics.fmean(fd), "sd": statistics.stdev(fd)
                                                      if len(fd) > 1 else None, "values": fd},
                    "kid": {"mean": statistics.fmean(r["kid"] for r in rows)}, "seeds": len(rows)}
    walls = {p.parent.name: json.loads(p.read_text()) for p in OUT.glob("*/wall.json")}
    RESULTS.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "machine": machine(), "seeds": seeds,
                                   "real_vs_real": cache["real_vs_real"], "table": table, "training": walls}, indent=1))
    print(f"wrote {RESULTS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("train", "score", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"train": cmd_train, "score": cmd_score, "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
