"""What does the seed's UNet lose without the timestep? Notebook 02, section 5, for several seeds.

Two tiny UNets, identical except for the time embedding, trained on the noise MSE alone with the same
seed, batches, t and noise (notebook 02's CPU configuration: 32 px phantoms, 512 of them, base 8,
200 Adam steps of batch 32, lr 3e-3, T = 1000); then each one's noise MSE on 64 held-out phantoms at
fixed timesteps, with the same noise, and the ratio without t / with t. Notebook 02 trains one seed
live and loads the others from the results file this script writes:

    python benchmarks/unet_without_t.py --seeds 0 1 2 --write benchmarks/results/unet_without_t.json

About 20-40 s per seed on one CPU thread. Seed 0 must reproduce the notebook's own run (its printed
ratios), which checks that this script is the notebook's experiment.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from diffgan_lib import DiffusionScheduler, UNet, diffusion_loss
from diffgan_lib import PhantomDataset

IMAGE_SIZE, BASE, STEPS, BATCH, LR, TIMESTEPS = 32, 8, 200, 32, 3e-3, 1000
EVAL_T = [0, 10, 30, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]


def data():
    train_ds = PhantomDataset(n=512, image_size=IMAGE_SIZE, seed=0)
    val_ds = PhantomDataset(n=64, image_size=IMAGE_SIZE, seed=1)
    return (torch.stack([train_ds[i] for i in range(len(train_ds))]),
            torch.stack([val_ds[i] for i in range(len(val_ds))]))


def train_noise_predictor(G, X, sched, steps: int, seed: int) -> None:
    """Adam on the diffusion loss alone, the batches, t and noise drawn from ``seed`` (notebook 02's loop)."""
    opt = torch.optim.Adam(G.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(X), (BATCH,), generator=gen)
        t = torch.randint(0, TIMESTEPS, (BATCH,), generator=gen)
        noise = torch.randn((BATCH, *X.shape[1:]), generator=gen)
        loss = diffusion_loss(G, X[idx], t, sched, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def mse_at(G, X_val, sched, ts, seed: int = 1) -> list[float]:
    gen, out = torch.Generator().manual_seed(seed), []
    for t in ts:
        noise = torch.randn(X_val.shape, generator=gen)
        out.append(diffusion_loss(G, X_val, torch.full((len(X_val),), t), sched, noise).item())
    return out


def run(seed: int, X, X_val, sched) -> dict:
    mse = {}
    for use_t in (False, True):
        torch.manual_seed(seed)
        G = UNet(1, BASE, time_embedding=use_t)
        train_noise_predictor(G, X, sched, STEPS, seed)
        mse["with t" if use_t else "no t"] = mse_at(G, X_val, sched, EVAL_T)
    return {"mse": mse, "ratio": [a / b for a, b in zip(mse["no t"], mse["with t"])]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--write", type=Path, help="the results file (e.g. benchmarks/results/unet_without_t.json)")
    a = p.parse_args()
    torch.set_num_threads(1)      # the notebook's CPU setting; results are exact for a thread count
    sched = DiffusionScheduler(TIMESTEPS, device="cpu")
    X, X_val = data()
    res = {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "eval_t": EVAL_T,
           "config": dict(image_size=IMAGE_SIZE, base=BASE, steps=STEPS, batch=BATCH, lr=LR, timesteps=TIMESTEPS),
           "machine": f"{platform.machine()}, 1 thread, torch {torch.__version__}", "seeds": {}}
    for seed in a.seeds:
        r = run(seed, X, X_val, sched)
        res["seeds"][str(seed)] = r
        late = [x for t, x in zip(EVAL_T, r["ratio"]) if t >= 700]
        print(f"seed {seed}: ratio without t / with t from t = 700 on: {min(late):.4f} to {max(late):.4f}", flush=True)
    if a.write:
        a.write.write_text(json.dumps(res, indent=1))
        print("wrote", a.write)


if __name__ == "__main__":
    main()
