"""Does the adversarial term earn its place? Train variants at equal steps and measure them.

Each variant trains on 32 px head phantoms (base 32, batch 32) for the same number of steps, then
samples with a full sampler (DDIM-50) and a few-step sampler (DDIM-4), and is scored with
diffgan_lib.metrics against the training phantoms (FD in SimCLR-CNN features, KID, SWD, diversity)
with one feature net for all (trained with seed 0, so every run is scored by the same net).
Writes runs/recipe/<variant>/seed<k>/ (checkpoint, sample grids, result.json) and prints a table
of every result found under --out, with the mean and spread over seeds. A study, not a test: it
takes minutes per variant and seed. Two processes with --threads 1 and different variants can
share one --out folder (each writes only its own result files).

    python benchmarks/recipe_study.py --steps 1500 pure as_written hybrid
    python benchmarks/recipe_study.py --steps 2500 --seeds 0 1 2 --threads 1 pure
    python benchmarks/recipe_study.py --steps 3000 --etas 0 1 --out runs/recipe_eta --threads 1 pure hybrid
    python benchmarks/recipe_study.py --out runs/recipe_eta --write benchmarks/results/recipe_eta.json

``--etas 0 1`` also samples with eta = 1 (DDIM-50 and DDIM-4, the same noise), the stochastic DDIM that
the course's default sampler uses; the course's first tables were made with eta = 0 only.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffgan_lib import PhantomDataset, make_dataloader
from diffgan_lib import TrainConfig
from diffgan_lib.eval import train_feature_net
from diffgan_lib import evaluate
from diffgan_lib.eval import real_vs_real_baseline
from diffgan_lib import sample, to_unit
from diffgan_lib.sampling import save_image_grid
from diffgan_lib import train

BASE = TrainConfig.cpu_quick(checkpoint_every=0, mean_path=False, adv_weight=0.01, precision="fp32")   # the plain
# UNet and the seed's hybrid these results were made with, in float32 (TrainConfig's default is pure diffusion)
VARIANTS = {
    "pure": BASE.replace(adv_weight=0.0),
    "as_written": TrainConfig.seed_as_written().replace(base=32, image_size=32, precision="fp32", checkpoint_every=0),
    "hybrid": BASE,   # the seed's hybrid as the course trains it: w 0.01, t < 500, after a 500-step warm-up
    "hybrid_w01_t500_wu500": BASE.replace(adv_weight=0.01, adv_t_max=500, adv_warmup_steps=500),
    # "hybrid_adapt01_t500_wu500" (w 0.1 scaled adaptively, VQGAN-style) left with TrainConfig's adaptive weight:
    # its row in results/recipe_eta.json was measured by an earlier version of this script
    "hybrid_w05_all": BASE.replace(adv_weight=0.05),
    "hybrid_w003": BASE.replace(adv_weight=0.003),                 # a third of the hybrid's weight
    "hybrid_w01_t250": BASE.replace(adv_t_max=250),                # only the least-noised quarter of t
}
SAMPLERS = {"ddim50": dict(sampler="ddim", steps=50, clip_x0=True), "ddim4": dict(sampler="ddim", steps=4, clip_x0=True)}
ETA_SAMPLERS = {"ddim50_eta1": dict(sampler="ddim", steps=50, eta=1.0, clip_x0=True),    # --etas 0 1 adds these:
                "ddim4_eta1": dict(sampler="ddim", steps=4, eta=1.0, clip_x0=True)}      # the course's default eta


def stack(ds, n):
    return torch.stack([ds[i] for i in range(n)])


def write_json(path, obj):
    """Write atomically, so a second process reading the folder never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def run_one(name, seed, steps, n_samples, out, net, train_x, held_x, samplers=SAMPLERS):
    cfg = VARIANTS[name].replace(seed=seed)
    run_dir = out / name / f"seed{seed}"
    loader = make_dataloader("phantoms", image_size=32, batch_size=32, n=steps * 32, seed=seed)
    t0 = time.time()
    G, D, sched = train(loader, epochs=1, save_dir=run_dir, config=cfg, max_steps=steps, progress=False,
                        overwrite=True)     # an unfinished run of this variant is redone from scratch
    row = {"variant": name, "seed": seed, "steps": steps, "train_s": round(time.time() - t0, 1),
           "config": cfg.to_dict()}
    for sname, kw in samplers.items():
        x = sample(G, sched, n=n_samples, image_size=32, seed=1000 + seed, progress=False, **kw)
        save_image_grid(to_unit(x[:64]), run_dir / f"grid_{sname}.png", nrow=8)
        m = evaluate(x.clamp(-1, 1), train_x, held_x[n_samples:], net=net)
        row[sname] = {k: v for k, v in m.items() if not k.startswith("closest")}
        row[sname]["mean"], row[sname]["std"] = x.mean().item(), x.std().item()
    write_json(run_dir / "result.json", row)
    return row


KEYS = ("fd", "kid", "swd", "diversity_pixel", "mean", "std")


def summarize(out):
    """Print every result under out: one line per run, then mean ± sd over seeds per variant."""
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed*/result.json"))]
    rr = json.loads((out / "real_vs_real.json").read_text())
    head = f"{'variant':28s} {'seed':>4s} {'steps':>5s} {'sampler':7s} " + " ".join(f"{k:>10s}" for k in KEYS)
    print(head)
    print(f"{'real_vs_real':28s} {'-':>4s} {'-':>5s} {'-':7s} "
          + " ".join(f"{rr.get(k, float('nan')):10.4f}" for k in KEYS[:4]))
    for r in rows:
        for sname in [k for k in {**SAMPLERS, **ETA_SAMPLERS} if k in r]:
            print(f"{r['variant']:28s} {r['seed']:4d} {r['steps']:5d} {sname:7s} "
                  + " ".join(f"{r[sname][k]:10.4f}" for k in KEYS))
    groups = {}
    for r in rows:
        groups.setdefault((r["variant"], r["steps"]), []).append(r)
    print("\nmean ± sd over seeds")
    for (name, steps), rs in sorted(groups.items()):
        for sname in [k for k in {**SAMPLERS, **ETA_SAMPLERS} if all(k in r for r in rs)]:
            cells = []
            for k in ("fd", "kid", "swd", "diversity_pixel"):
                v = torch.tensor([r[sname][k] for r in rs], dtype=torch.float64)
                sd = v.std().item() if len(v) > 1 else float("nan")
                cells.append(f"{k} {v.mean().item():.4g} ± {sd:.2g}")
            print(f"{name:28s} n={len(rs)} {steps:5d} {sname:7s} " + "  ".join(cells))


def figure(out, seed, path, variants=("pure", "hybrid")):
    """Save the first 16 samples of each variant's DDIM-50 and DDIM-4 grid (one training seed) side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    runs = [v for v in variants if (out / v / f"seed{seed}" / "grid_ddim4.png").exists()]
    fig, axes = plt.subplots(len(runs), len(SAMPLERS), figsize=(2.6 * len(SAMPLERS), 2.8 * len(runs)), squeeze=False)
    for row, name in zip(axes, runs):
        for ax, (sname, kw) in zip(row, SAMPLERS.items()):
            grid = Image.open(out / name / f"seed{seed}" / f"grid_{sname}.png").convert("L")
            ax.imshow(grid.crop((0, 0, grid.width // 2, grid.height // 2)), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{name}, DDIM-{kw['steps']}", fontsize=9)
            ax.axis("off")
    fig.suptitle(f"first 16 samples, same noise, training seed {seed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print("wrote", path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help=f"any of {', '.join(VARIANTS)}; none = only print the table of what --out holds")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    p.add_argument("--n-samples", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", default="runs/recipe")
    p.add_argument("--figure", metavar="PNG", help="also save pure vs hybrid sample grids of --figure-seed here")
    p.add_argument("--figure-seed", type=int, default=0)
    p.add_argument("--write", metavar="JSON", help="also write every result under --out (and real vs real) to this file")
    p.add_argument("--etas", type=float, nargs="+", default=[0.0], choices=[0.0, 1.0],
                   help="DDIM eta(s) to sample with: 0 (the first edition's tables), 1 (the course's default), or both")
    args = p.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:   # checked here: argparse rejects an empty list when nargs="*" has choices
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.variants:
        train_x = stack(PhantomDataset(n=2048, image_size=32, seed=0), 2048)
        held_x = stack(PhantomDataset(n=2 * args.n_samples, image_size=32, seed=123), 2 * args.n_samples)
        net = train_feature_net(train_x, seed=0, progress=False)
        rr = real_vs_real_baseline(train_x, held_x, n_samples=args.n_samples, net=net)
        rr = {k: v for k, v in rr.items() if not k.startswith("closest")}
        rr["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
        write_json(out / "real_vs_real.json", rr)
        for seed in args.seeds:
            for name in args.variants:
                samplers = {**(SAMPLERS if 0.0 in args.etas else {}), **(ETA_SAMPLERS if 1.0 in args.etas else {})}
                row = run_one(name, seed, args.steps, args.n_samples, out, net, train_x, held_x, samplers)
                print(f"{name} seed {seed}: {args.steps} steps in {row['train_s']} s", flush=True)
    summarize(out)
    if args.write:
        runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed*/result.json"))]
        write_json(Path(args.write), {"real_vs_real": json.loads((out / "real_vs_real.json").read_text()),
                                      "runs": [{k: v for k, v in r.items() if k != "config"} | {
                                          "adv_weight": r["config"]["adv_weight"]} for r in runs]})
        print("wrote", args.write)
    if args.figure:
        figure(out, args.figure_seed, args.figure)


if __name__ == "__main__":
    main()
