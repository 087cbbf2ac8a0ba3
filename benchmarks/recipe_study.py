"""Does the adversarial term earn its place? Train variants at equal steps and measure them.

Each variant trains on 32 px head phantoms (base 32, batch 32) for the same number of steps, then
samples with a full sampler (DDIM-50) and a few-step sampler (DDIM-4), and is scored with
diffgan_lib.metrics against the training phantoms (FD in SimCLR-CNN features, KID, SWD, diversity)
with one feature net for all. Writes runs/recipe/<variant>/ (checkpoints, sample grids) and
runs/recipe/results.json; prints a table. A study, not a test: it takes minutes per variant.

    python benchmarks/recipe_study.py --steps 1500 pure as_written hybrid
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffgan_lib import PhantomDataset, make_dataloader
from diffgan_lib.config import TrainConfig
from diffgan_lib.features import train_feature_net
from diffgan_lib.metrics import evaluate, real_vs_real_baseline
from diffgan_lib.sampling import sample, save_image_grid, to_unit
from diffgan_lib.training import train

BASE = TrainConfig.cpu_quick(checkpoint_every=0)
VARIANTS = {
    "pure": BASE.replace(adv_weight=0.0),
    "as_written": TrainConfig.seed_as_written().replace(base=32, image_size=32, amp="off", checkpoint_every=0),
    "hybrid": BASE,   # the library's default recipe, whatever it is now
    "hybrid_w01_t500_wu500": BASE.replace(adv_weight=0.01, adv_t_max=500, adv_warmup_steps=500),
    "hybrid_adapt01_t500_wu500": BASE.replace(adv_weight=0.1, adaptive_adv_weight=True, adv_t_max=500,
                                              adv_warmup_steps=500),
    "hybrid_w05_all": BASE.replace(adv_weight=0.05),
}
SAMPLERS = {"ddim50": dict(sampler="ddim", steps=50, clip_x0=True), "ddim4": dict(sampler="ddim", steps=4, clip_x0=True)}


def stack(ds, n):
    return torch.stack([ds[i] for i in range(n)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n-samples", type=int, default=256)
    p.add_argument("--out", default="runs/recipe")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_x = stack(PhantomDataset(n=2048, image_size=32, seed=0), 2048)
    held_x = stack(PhantomDataset(n=2 * args.n_samples, image_size=32, seed=123), 2 * args.n_samples)
    net = train_feature_net(train_x, seed=0, progress=False)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["_machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    results["real_vs_real"] = {k: v for k, v in real_vs_real_baseline(train_x, held_x, n_samples=args.n_samples,
                                                                     net=net).items() if not k.startswith("closest")}
    for name in args.variants:
        cfg = VARIANTS[name]
        loader = make_dataloader("phantoms", image_size=32, batch_size=32, n=args.steps * 32, seed=0)
        t0 = time.time()
        G, D, sched = train(loader, epochs=1, save_dir=out / name, config=cfg, max_steps=args.steps, progress=False)
        row = {"train_s": round(time.time() - t0, 1), "config": cfg.to_dict()}
        for sname, kw in SAMPLERS.items():
            x = sample(G, sched, n=args.n_samples, image_size=32, seed=1, progress=False, **kw)
            save_image_grid(to_unit(x[:64]), out / name / f"grid_{sname}.png", nrow=8)
            m = evaluate(x.clamp(-1, 1), train_x, held_x[args.n_samples:], net=net)
            row[sname] = {k: v for k, v in m.items() if not k.startswith("closest")}
            row[sname]["mean"], row[sname]["std"] = x.mean().item(), x.std().item()
        results[name] = row
        results_path.write_text(json.dumps(results, indent=1))
        print(name, "done in", row["train_s"], "s", flush=True)
    keys = ("fd", "kid", "swd", "diversity_pixel", "mean", "std")
    print(f"{'variant':28s} {'sampler':7s} " + " ".join(f"{k:>10s}" for k in keys))
    rr = results["real_vs_real"]
    print(f"{'real_vs_real':28s} {'-':7s} " + " ".join(f"{rr.get(k, float('nan')):10.4f}" for k in keys[:4]))
    for name, row in results.items():
        if name.startswith("_") or name == "real_vs_real":
            continue
        for sname in SAMPLERS:
            print(f"{name:28s} {sname:7s} " + " ".join(f"{row[sname][k]:10.4f}" for k in keys))


if __name__ == "__main__":
    main()
