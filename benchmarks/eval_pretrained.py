"""Score shipped (or any) phantom checkpoints with the recipe study's protocol, and count contrasts.

Same yardstick as benchmarks/recipe_study.py, so the numbers compare with its table: one SimCLR-CNN
feature net (seed 0) trained on 2048 training phantoms (seed 0), 256 samples per sampler drawn from
noise seed 1000, FD / KID in those features and SWD on 7x7 patches against the training phantoms,
with the real-vs-real baseline of 256 held-out phantoms (seed 123). It also answers "does the model
cover all three contrasts?": each sample gets the contrast (CT, T1, T2) of its nearest labelled
training phantom in feature space, and the shares are printed (real phantoms: a third each).

    python benchmarks/eval_pretrained.py data/pretrained/phantoms32_pure_10k.pth data/pretrained/phantoms32_hybrid_10k.pth --out benchmarks/results/pretrained.json
    python benchmarks/eval_pretrained.py data/pretrained/phantoms32_pure_10k.pth data/pretrained/phantoms32_onecall.pth --out benchmarks/results/pretrained_onecall.json

A one-call generator is sampled in one call and in two (its image finished by its teacher from t = 50).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffgan_lib.data import CONTRASTS
from diffgan_lib import PhantomDataset
from diffgan_lib import load_checkpoint
from diffgan_lib.eval import extract_features, train_feature_net
from diffgan_lib import evaluate
from diffgan_lib.eval import real_vs_real_baseline
from diffgan_lib import sample, to_unit
from diffgan_lib.sampling import save_image_grid

from recipe_study import stack, write_json

SAMPLERS = {"ddim50": dict(sampler="ddim", steps=50), "ddim50_eta1": dict(sampler="ddim", steps=50, eta=1.0),
            "ddim4": dict(sampler="ddim", steps=4)}
KEYS = ("fd", "kid", "swd", "diversity_pixel")


def contrast_shares(x, net, train_x, train_contrast) -> dict:
    """Share of samples whose nearest training phantom (feature space) has each contrast."""
    f_s, f_t = extract_features(net, x), extract_features(net, train_x)
    nearest = torch.cdist(torch.as_tensor(f_s), torch.as_tensor(f_t)).argmin(dim=1)
    counts = torch.bincount(train_contrast[nearest], minlength=len(CONTRASTS)).double()
    return {c: round((counts[i] / len(x)).item(), 3) for i, c in enumerate(CONTRASTS)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint files of 32 px phantom models")
    p.add_argument("--n-samples", type=int, default=256)
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--grids", help="folder for each model's first 64 DDIM-50 samples as a PNG grid")
    a = p.parse_args()
    labelled = PhantomDataset(n=2048, image_size=32, seed=0, return_labels=True)
    train_x = stack(PhantomDataset(n=2048, image_size=32, seed=0), 2048)
    train_contrast = torch.tensor([labelled.labels(i)["contrast"] for i in range(2048)])
    held_x = stack(PhantomDataset(n=2 * a.n_samples, image_size=32, seed=123), 2 * a.n_samples)
    net = train_feature_net(train_x, seed=0, progress=False)
    rr = real_vs_real_baseline(train_x, held_x, n_samples=a.n_samples, net=net)
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"torch {torch.__version__}",
               "real_vs_real": {k: rr[k] for k in KEYS},
               "real_contrasts": contrast_shares(held_x[:a.n_samples], net, train_x, train_contrast)}
    print(f"{'model':34s} {'sampler':12s} " + " ".join(f"{k:>9s}" for k in KEYS) + "  contrasts ct/t1/t2")
    print(f"{'real vs real':34s} {'-':12s} " + " ".join(f"{rr[k]:9.3f}" for k in KEYS)
          + "  " + "/".join(f"{v:.2f}" for v in results["real_contrasts"].values()))
    for path in a.checkpoints:
        G, _, scheduler = ck = load_checkpoint(path, device="cpu")
        row = {"step": ck.step, "config": ck.config.to_dict() if ck.config else ck.onecall_config}
        samplers = {k: {**kw, "clip_x0": True} for k, kw in SAMPLERS.items()}
        if ck.kind == "onecall":                     # one call, and two: the teacher finishes from t = 50
            from diffgan_lib.engine import load_teacher
            samplers = {"one_call": {}, "two_calls": dict(steps=2, teacher=load_teacher(path))}
        for name, kw in samplers.items():
            t0 = time.time()
            x = sample(G, scheduler, n=a.n_samples, image_size=32, seed=1000, progress=False, **kw)
            m = evaluate(x.clamp(-1, 1), train_x, held_x[a.n_samples:], net=net)
            row[name] = {**{k: m[k] for k in KEYS}, "contrasts": contrast_shares(x, net, train_x, train_contrast),
                         "sample_s": round(time.time() - t0, 1)}
            print(f"{Path(path).name:34s} {name:12s} " + " ".join(f"{row[name][k]:9.3f}" for k in KEYS)
                  + "  " + "/".join(f"{v:.2f}" for v in row[name]["contrasts"].values()), flush=True)
            if a.grids and name in ("ddim50", "one_call"):
                save_image_grid(to_unit(x[:64]), Path(a.grids) / f"{Path(path).stem}_{name}.png", nrow=8)
        results[Path(path).name] = row
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(a.out), results)
        print("wrote", a.out)
    print(markdown(results))


def markdown(results: dict) -> str:
    """The results as a Markdown table (FD, KID, SWD as evaluate() reports them; contrasts) for data/pretrained/README.md."""
    rr = results["real_vs_real"]
    rows = ["| model | steps | sampler | FD ↓ | KID ↓ | SWD ↓ | CT / T1 / T2 |", "|---|---|---|---|---|---|---|",
            f"| real vs real (held-out phantoms) | — | — | {rr['fd']:.3g} | {rr['kid']:.3g} | "
            f"{rr['swd']:.3g} | " + " / ".join(f"{v:.2f}" for v in results["real_contrasts"].values()) + " |"]
    for name, row in results.items():
        if not isinstance(row, dict) or "step" not in row:
            continue
        for sname in (k for k, v in row.items() if isinstance(v, dict) and "fd" in v):
            r = row[sname]
            label = sname.replace('ddim', 'DDIM-').replace('_eta1', ', η 1').replace("_", " ")
            rows.append(f"| {name} | {row['step']} | {label} | "
                        f"{r['fd']:.3g} | {r['kid']:.3g} | {r['swd']:.3g} | "
                        + " / ".join(f"{v:.2f}" for v in r["contrasts"].values()) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
