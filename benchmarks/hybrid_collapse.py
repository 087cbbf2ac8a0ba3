"""Why the seed's hybrid gets worse from 4 to 8 epochs on the X-rays, measured per epoch.

The seed's hybrid (``adv_weight=0.01``) adds a GAN term on x̂0: from step ``adv_warmup_steps`` = 500 on,
for the images of a batch drawn at t < ``adv_t_max`` = 500, D takes a step on (x0, x̂0 clamped to
[-1, 1], detached) and G a step on diff + 0.01 softplus(-D(x̂0)) (engine/step.py). With the UNet's mean
path it scores FD 11.6 after 4 epochs (588 steps) and 58.9 after 8 (1176), while pure diffusion with the
mean path improves from 14.7 to 9.0 (docs/results.md). This script trains both again and measures every
epoch's checkpoint.

Protocol: 32 px PneumoniaMNIST, batch 32, 147 steps an epoch, seed 0, 8 epochs, ``precision="fp32"``,
through ``train()`` exactly as ``xray_study.py train --arm mean`` (the hybrid + mean path) and
``--arm pure_mean`` (pure diffusion + mean path) do, a checkpoint kept after every epoch. Up to step 500
the two runs take the same steps (checked: their weights at epoch 3 are equal). Per checkpoint:
1. **samples**: 256 from the EMA weights, DDIM-50, eta 1, x̂0 clipped, noise seed 1000 (kept in the run's
   samples/ folder); FD and KID in the shipped X-ray FeatureNet against the 624 test X-rays; the samples'
   brightness mean and sd (over images, of each image's mean), contrast (mean of each image's pixel sd),
   high-frequency energy (mean squared difference of horizontally and vertically neighbouring pixels) and
   feature diversity, each against the test X-rays'; and, a diagnostic, FD and KID of the same samples
   with one constant added so that their mean brightness is the test X-rays';
2. **D** (the hybrid, from its first D step on): D's held-out AUROC, the 524 real **val** X-rays (never
   trained on) against the x̂0 (clamped, as the step clamps it) of the same images noised at
   t ~ U[0, adv_t_max) (the t whose x̂0 reach D in training; fixed seed), for x̂0 of the EMA and of the raw
   (optimiser) weights, which are the ones D judges in training; D's mean scores; the direction the GAN
   term pushes x̂0 (minus the gradient of softplus(-D(x̂0))): its per-image mean and that mean's share of
   the push's energy. D's loss and scores per step from the final checkpoint's history;
3. **x̂0** (both runs, EMA and raw weights): a fixed batch of 256 val X-rays noised at
   t = 100, 200, 300, 400, 500, 700 (fixed noise): the MSE of x̂0 (clamped) against the clean image, the
   brightness error mean(x̂0) - mean(x0) (its mean: the bias; its sd over images), and the high-frequency
   energy of x̂0 against the clean images'.
Also written: a/(1-a) per t (a = alpha_hat_t), the weight the diffusion loss gives an error of x̂0 at t
(||eps - eps_hat||^2 = a/(1-a) ||x0 - x̂0||^2).

    OMP_NUM_THREADS=1 nice python benchmarks/hybrid_collapse.py train      # both runs, runs/hybrid_collapse/
    OMP_NUM_THREADS=1 nice python benchmarks/hybrid_collapse.py measure    # -> benchmarks/results/hybrid_collapse.json
    python benchmarks/hybrid_collapse.py figure                             # -> benchmarks/figures/hybrid_collapse.png

Each subcommand skips what is on disk already (finished runs, measured checkpoints), so a stopped one
continues where it was; ``--threads`` (default 1) sets torch's threads.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffgan_lib import DiffusionScheduler, TrainConfig, load_checkpoint, make_dataloader, sample, train
from diffgan_lib.core.auroc import auroc
from diffgan_lib.course import PRETRAINED_XRAY_FEATURES
from diffgan_lib.data import ImageDataset
from diffgan_lib.eval import diversity, extract_features, frechet_distance, kid, load_feature_net

from recipe_study import write_json
from xray_study import ARMS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "hybrid_collapse"
RESULTS = ROOT / "benchmarks" / "results" / "hybrid_collapse.json"
FIGURE = ROOT / "benchmarks" / "figures" / "hybrid_collapse.png"
RUNS = {"hybrid": "mean", "pure": "pure_mean"}      # our name: xray_study's arm
LABELS = {"hybrid": "the seed's hybrid + mean path (adv_weight 0.01)", "pure": "pure diffusion + mean path"}
SEED, EPOCHS, SIZE = 0, 8, 32
LEVELS = (100, 200, 300, 400, 500, 700)     # t of the x̂0 probe
VERSION = 3                       # a measured row without this version is measured again
ARMS_ADV_T_MAX = TrainConfig().adv_t_max     # 500: the GAN term sees x̂0 of images drawn at t below it


def run_dir(name: str) -> Path:
    return OUT / f"{name}_seed{SEED}_e{EPOCHS}"


def cmd_train(a) -> None:
    """Both runs as xray_study.cmd_train trains its arms, fp32 pinned, every epoch's checkpoint kept."""
    for name, arm in RUNS.items():
        run = run_dir(name)
        if (run / "final_model.pth").exists():
            print(f"{run} done already", flush=True)
            continue
        cfg = TrainConfig.cpu_quick(seed=SEED, checkpoint_every=1, precision="fp32", **ARMS[arm][1])
        loader = make_dataloader("pneumoniamnist", SIZE, 32, seed=SEED)
        t0 = time.time()
        last = max(run.glob("epoch_*.pth"), default=None)
        train(loader, epochs=EPOCHS, save_dir=run, config=cfg, resume=last, progress=False)
        info = {"seed": SEED, "epochs": EPOCHS, "arm": arm, "precision": "fp32", "wall_s": round(time.time() - t0),
                "resumed_from": last.name if last else None,
                "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"}
        write_json(run / "train.json", info)
        print(f"{run}: {EPOCHS} epochs in {time.time() - t0:.0f} s", flush=True)


# ------------------------------------------------------------------------------------------- measure
def brightness_sd(x: torch.Tensor) -> float:
    """sd over images of each image's mean: x (N, C, S, S)."""
    return x.mean(dim=(1, 2, 3)).std().item()


def contrast(x: torch.Tensor) -> float:
    """Mean over images of each image's pixel sd: x (N, C, S, S)."""
    return x.flatten(1).std(dim=1).mean().item()


def hf_energy(x: torch.Tensor) -> float:
    """Mean squared difference of horizontally and vertically neighbouring pixels, averaged: x (N, C, S, S)."""
    return 0.5 * ((x[..., :, 1:] - x[..., :, :-1]).pow(2).mean() + (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()).item()


class Probe:
    """What every checkpoint is measured against: the FeatureNet, the test X-rays, and the fixed val batches."""

    def __init__(self):
        self.net = load_feature_net(PRETRAINED_XRAY_FEATURES)
        split = lambda s: ImageDataset("pneumoniamnist", SIZE, split=s).images          # noqa: E731
        self.test, self.val = split("test"), split("val")
        self.f_test = extract_features(self.net, self.test)
        g = torch.Generator().manual_seed(7)
        self.x0 = self.val[:256]
        self.noise = {t: torch.randn(self.x0.shape, generator=g) for t in LEVELS}
        # D's probe: every val image, noised at t ~ U[0, adv_t_max) (the t whose x̂0 reach D in training)
        self.d_t = torch.randint(0, ARMS_ADV_T_MAX, (len(self.val),), generator=g)
        self.d_noise = torch.randn(self.val.shape, generator=g)

    def reference(self) -> dict:
        ah = DiffusionScheduler(1000).alpha_hat      # the runs' schedule (linear, T = 1000)
        return {"test_brightness_sd": brightness_sd(self.test), "test_brightness_mean": self.test.mean().item(),
                "val_brightness_mean": self.val.mean().item(), "test_hf": hf_energy(self.test),
                "val256_hf": hf_energy(self.x0), "test_contrast": contrast(self.test),
                "test_diversity": diversity(self.f_test),
                # how much the diffusion loss weighs an error of x̂0 at t: ||eps - eps_hat||^2 = a/(1-a) ||x0 - x̂0||^2
                "x0_error_weight_in_diffusion_loss": {str(t): float(ah[t] / (1 - ah[t])) for t in (*LEVELS, 499)}, "n_test": len(self.test), "n_val": len(self.val)}

    def samples(self, G, sched, cache: Path) -> dict:
        """The 256 samples' scores; the samples are kept in ``cache`` (a .pt file) and read from it next time."""
        t0 = time.time()
        if cache.exists():
            x = torch.load(cache, weights_only=True)
        else:
            x = sample(G, sched, n=256, image_size=SIZE, seed=1000, sampler="ddim", steps=50, eta=1.0, clip_x0=True,
                       progress=False).clamp(-1, 1)
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(x, cache)
        out = {"sample_s": round(time.time() - t0, 1), **self.score(x)}
        # a diagnostic: the same samples with one constant added so their mean brightness is the test X-rays'
        shifted = (x + self.test.mean() - x.mean()).clamp(-1, 1)
        out["mean_matched"] = self.score(shifted)
        return out

    def score(self, x: torch.Tensor) -> dict:
        f = extract_features(self.net, x)
        k = kid(f, self.f_test, seed=0)
        return {"fd": frechet_distance(f, self.f_test), "kid": k[0], "kid_sd": k[1], "brightness_sd": brightness_sd(x),
                "brightness_mean": x.mean().item(), "hf": hf_energy(x), "contrast": contrast(x), "diversity": diversity(f)}

    @torch.no_grad()
    def x0_stats(self, G, sched) -> dict:
        out = {}
        for t in LEVELS:
            tt = torch.full((len(self.x0),), t, dtype=torch.long)
            x_t, _ = sched.add_noise(self.x0, tt, self.noise[t])
            x0_pred = sched.predict_x0(x_t, tt, G(x_t, tt)).clamp(-1, 1)     # as the step clamps it
            err = x0_pred.mean(dim=(1, 2, 3)) - self.x0.mean(dim=(1, 2, 3))
            out[str(t)] = {"mse": (x0_pred - self.x0).pow(2).mean().item(), "brightness_err_sd": err.std().item(),
                           "brightness_err_mean": err.mean().item(), "hf": hf_energy(x0_pred)}
        return out

    def discriminator(self, G, D, sched) -> dict:
        """D's held-out AUROC: real val X-rays (positives) against G's clamped x̂0 of the same images; and the
        direction the GAN term pushes x̂0: push = -grad of softplus(-D(x̂0)) (G descends it), its per-image
        mean (+ = brighter) and the share of its energy in that mean (1/1024 for a direction with no preference)."""
        with torch.no_grad():
            x_t, _ = sched.add_noise(self.val, self.d_t, self.d_noise)
            fake = sched.predict_x0(x_t, self.d_t, G(x_t, self.d_t)).clamp(-1, 1)
            s_real = D(self.val).mean(dim=(1, 2, 3))
        fake.requires_grad_(True)
        s_fake_map = D(fake)
        (grad,) = torch.autograd.grad(F.softplus(-s_fake_map.mean(dim=(1, 2, 3))).sum(), fake)
        s_fake, push = s_fake_map.detach().mean(dim=(1, 2, 3)), -grad
        m = push.mean(dim=(1, 2, 3))
        scores = torch.cat([s_real, s_fake]).numpy()
        labels = [1] * len(s_real) + [0] * len(s_fake)
        b_real = self.val.mean(dim=(1, 2, 3))
        return {"auroc": auroc(scores, labels), "score_real": s_real.mean().item(), "score_fake": s_fake.mean().item(),
                "loss": (F.softplus(-s_real).mean() + F.softplus(s_fake).mean()).item(),
                "fake_brightness_err_mean": (fake.detach().mean(dim=(1, 2, 3)) - b_real).mean().item(),
                "push_mean": m.mean().item(), "push_share_darker": (m < 0).float().mean().item(),
                "push_mean_energy_share": (m.pow(2) * push[0].numel()).sum().item() / push.pow(2).sum().item(),
                "corr_score_brightness_real": torch.corrcoef(torch.stack([s_real, b_real]))[0, 1].item()}


def checkpoints(name: str) -> list[Path]:
    return sorted(run_dir(name).glob("epoch_*.pth"))


def cmd_measure(a) -> None:
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    probe = Probe()
    res["protocol"] = __doc__.split("Protocol: ")[1].split("\n\n")[0].replace("\n", " ")
    res["machine"] = {"platform": platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    res["reference"] = probe.reference()
    res["levels"] = list(LEVELS)
    for name in RUNS:
        runs = res.setdefault("runs", {}).setdefault(name, {"label": LABELS[name], "epochs": {}})
        train_json = run_dir(name) / "train.json"
        if train_json.exists():
            runs["train"] = json.loads(train_json.read_text())
        for ckpt in checkpoints(name):
            epoch = str(int(ckpt.stem.split("_")[1]))
            if runs["epochs"].get(epoch, {}).get("version") == VERSION and not a.redo:
                continue
            t0 = time.time()
            ema = load_checkpoint(ckpt, device="cpu", which="ema")
            raw = load_checkpoint(ckpt, device="cpu", which="raw")
            G, D, sched = ema
            row = {"version": VERSION, "step": int(ema.step),
                   "samples": probe.samples(G, sched, run_dir(name) / "samples" / f"{ckpt.stem}.pt"),
                   "x0": {"ema": probe.x0_stats(G, sched), "raw": probe.x0_stats(raw[0], sched)}}
            hist_D = [v for v in ema.history.get("D", []) if math.isfinite(v)]
            if name == "hybrid" and hist_D:            # D has trained (its first step is adv_warmup_steps)
                row["D"] = {"ema": probe.discriminator(G, D, sched), "raw": probe.discriminator(raw[0], D, sched),
                            "d_steps": len(hist_D)}
            row["measure_s"] = round(time.time() - t0, 1)
            runs["epochs"][epoch] = row
            write_json(RESULTS, res)
            d = row.get("D", {}).get("raw", {})
            print(f"{name} epoch {epoch} (step {row['step']}): FD {row['samples']['fd']:.2f} KID {row['samples']['kid']:.4f} "
                  f"bright sd {row['samples']['brightness_sd']:.3f} | x̂0 MSE t=300 {row['x0']['ema']['300']['mse']:.4f} "
                  f"hf t=300 {row['x0']['ema']['300']['hf']:.4f}" + (f" | D AUROC (raw) {d['auroc']:.3f}" if d else ""),
                  flush=True)
        final = run_dir(name) / "final_model.pth"
        if final.exists():
            hist = load_checkpoint(final, device="cpu").history
            keys = ("step", "diff", "D", "D_real", "D_fake", "adv") if name == "hybrid" else ("step", "diff")
            runs["history"] = {k: [None if not math.isfinite(float(v)) else round(float(v), 6) for v in hist[k]]
                               for k in keys}
    # up to step adv_warmup_steps the hybrid's step is pure diffusion's (D never trains, same draws): same weights?
    e3 = [run_dir(n) / "epoch_0003.pth" for n in RUNS]
    if all(p.exists() for p in e3):
        g = [load_checkpoint(p, device="cpu", which="raw")[0].state_dict() for p in e3]
        res["epoch3_same_weights"] = all(torch.equal(g[0][k], g[1][k]) for k in g[0])
    write_json(RESULTS, res)
    print("wrote", RESULTS)


# -------------------------------------------------------------------------------------------- figure
def smooth(v: list, k: int = 25) -> tuple[list, list]:
    """(index, moving mean over k steps) of the finite values of v, as (x, y) lists."""
    import numpy as np
    pairs = [(i, x) for i, x in enumerate(v) if x is not None]
    if len(pairs) < k:
        return [], []
    i, x = map(np.asarray, zip(*pairs))
    return list(i[k - 1:]), list(np.convolve(x, np.ones(k) / k, mode="valid"))


LEGEND = {"the hybrid's D in training: 25-step means": "lower left", "x̂0 error, 256 noised val X-rays (EMA)": "lower left"}     # panel title -> legend location


def montage(ax, res, n: int = 16) -> None:
    """The first n samples (noise seed 1000) of some checkpoints, one row each, next to real test X-rays."""
    import numpy as np
    test = ImageDataset("pneumoniamnist", SIZE, split="test").images[:n]
    rows = [("real (test)", test)]
    for name, epoch in (("pure", 8), ("hybrid", 4), ("hybrid", 5), ("hybrid", 8)):
        path = run_dir(name) / "samples" / f"epoch_{epoch:04d}.pt"
        if path.exists():
            fd = res["runs"][name]["epochs"][str(epoch)]["samples"]["fd"]
            rows.append((f"{name}, epoch {epoch}: FD {fd:.1f}", torch.load(path, weights_only=True)[:n]))
    gap, side = 2, SIZE
    img = np.ones((len(rows) * (side + gap), n * (side + gap)))
    for r, (_, x) in enumerate(rows):
        for j in range(len(x)):
            img[r * (side + gap): r * (side + gap) + side, j * (side + gap): j * (side + gap) + side] = x[j, 0].numpy()
    ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
    ax.set_yticks([r * (side + gap) + side / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.set_title("the first samples of each (DDIM-50, eta 1, EMA, the same noise in each column), gray -1 .. 1",
                 fontsize=10)


def cmd_figure(a) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.loads(RESULTS.read_text())
    ref, warm = res["reference"], TrainConfig().adv_warmup_steps
    colours = {"hybrid": "tab:red", "pure": "tab:blue"}
    fig = plt.figure(figsize=(14, 16))
    grid = fig.add_gridspec(4, 3, height_ratios=(1, 1, 1, 1.05))
    axes = [[fig.add_subplot(grid[r, c]) for c in range(3)] for r in range(3)]
    (ax_fd, ax_dl, ax_auc), (ax_mse, ax_hf, ax_bias), (ax_br, ax_con, ax_shf) = axes
    montage(fig.add_subplot(grid[3, :]), res)

    def per_epoch(name, get):
        rows = res["runs"][name]["epochs"]
        pts = [(rows[e]["step"], get(rows[e])) for e in sorted(rows, key=int)]
        return [p for p, v in pts if v is not None], [v for p, v in pts if v is not None]

    def real(ax, value, text):
        ax.axhline(value, color="k", ls=":", lw=1, label=text)

    for name, c in colours.items():
        ax_fd.plot(*per_epoch(name, lambda r: r["samples"]["fd"]), "o-", color=c,
                   label=name + (" (the same weights as the hybrid to step 441)" if name == "pure" else ""))
        ax_br.plot(*per_epoch(name, lambda r: r["samples"]["brightness_mean"]), "o-", color=c, label=f"{name}, mean")
        ax_br.plot(*per_epoch(name, lambda r: r["samples"]["brightness_sd"]), "s--", color=c, ms=4, label=f"{name}, sd")
        ax_con.plot(*per_epoch(name, lambda r: r["samples"]["contrast"]), "o-", color=c, label=name)
        ax_shf.plot(*per_epoch(name, lambda r: r["samples"]["hf"]), "o-", color=c, label=name)
        for t, ls in (("300", "o-"), ("500", "s--")):
            kw = dict(color=c, ms=4, label=f"{name}, t = {t}")
            ax_mse.plot(*per_epoch(name, lambda r: r["x0"]["ema"][t]["mse"]), ls, **kw)
            ax_hf.plot(*per_epoch(name, lambda r: r["x0"]["ema"][t]["hf"]), ls, **kw)
        for t, ls in (("300", "o-"), ("400", "^:"), ("500", "s--")):
            ax_bias.plot(*per_epoch(name, lambda r: r["x0"]["ema"][t]["brightness_err_mean"]), ls, color=c, ms=4,
                         label=f"{name}, t = {t}")
    ax_fd.plot(*per_epoch("hybrid", lambda r: r["samples"]["mean_matched"]["fd"]), "o:", color="tab:orange",
               label="hybrid, samples shifted to the real mean brightness")
    ax_fd.set(title="FD of 256 samples vs the 624 test X-rays", ylabel="FD (lower is better)")
    ax_fd.set_ylim(0, 1.35 * max(r["samples"]["fd"] for run in res["runs"].values() for r in run["epochs"].values()))
    real(ax_br, ref["test_brightness_mean"], f"real test X-rays: mean {ref['test_brightness_mean']:.3f}, "
                                             f"sd {ref['test_brightness_sd']:.3f}")
    ax_br.axhline(ref["test_brightness_sd"], color="k", ls=":", lw=1)
    ax_br.set(title="samples' brightness: mean and sd over images", ylabel="brightness (pixels in [-1, 1])")
    real(ax_con, ref["test_contrast"], "real test X-rays")
    ax_con.set(title="samples' contrast", ylabel="mean over images of the pixel sd")
    real(ax_shf, ref["test_hf"], "real test X-rays")
    ax_shf.set(title="samples' high-frequency energy", ylabel="mean sq. neighbour difference")
    ax_mse.set(title="x̂0 error, 256 noised val X-rays (EMA)", ylabel="MSE of x̂0 against x0", yscale="log", ylim=(0.01, 0.35))
    real(ax_hf, ref["val256_hf"], "the clean val X-rays")
    ax_hf.set(title="x̂0 high-frequency energy (EMA)", ylabel="mean sq. neighbour difference", yscale="log")
    ax_bias.axhline(0, color="k", ls=":", lw=1)
    ax_bias.set(title="x̂0 brightness bias (EMA)", ylabel="mean of (mean x̂0 - mean x0)")

    hist = res["runs"]["hybrid"].get("history", {})
    if hist:
        for key, c, ls, lab in (("D", "tab:red", "-", "D loss"), ("D_real", "tab:green", "-", "D(real)"),
                                ("D_fake", "tab:purple", "-", "D(x̂0)")):
            x, y = smooth(hist[key])
            ax_dl.plot([hist["step"][i] for i in x], y, color=c, ls=ls, lw=1.2, label=lab)
    real(ax_dl, 2 * math.log(2), "chance, 2 ln 2")
    ax_dl.set(title="the hybrid's D in training: 25-step means", ylabel="D loss / D's mean score")
    for which, ls in (("raw", "o-"), ("ema", "s--")):
        ax_auc.plot(*per_epoch("hybrid", lambda r: r.get("D", {}).get(which, {}).get("auroc")), ls, color="tab:red",
                    label=f"x̂0 of the {'optimiser' if which == 'raw' else 'EMA'} weights")
    real(ax_auc, 0.5, "chance")
    ax_auc.set(title="D's held-out AUROC: val X-rays vs x̂0", ylabel="held-out AUROC", ylim=(0.4, 1.0))
    for ax in (ax for row in axes for ax in row):
        ax.axvline(warm, color="grey", lw=0.8)
        ax.set_xlabel("training step (147 an epoch; grey: GAN term starts)")
        ax.set_xlim(0, 147 * EPOCHS + 40)
        ax.legend(fontsize=7, loc=LEGEND.get(ax.get_title(), "best"), framealpha=0.9)
    fig.suptitle("The seed's hybrid (adv_weight 0.01) and pure diffusion, both with the mean path, seed 0, "
                 "PneumoniaMNIST 32 px: every epoch's checkpoint", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=80)
    print("wrote", FIGURE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("train", "measure", "figure"))
    p.add_argument("--redo", action="store_true", help="measure: measure every checkpoint again")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"train": cmd_train, "measure": cmd_measure, "figure": cmd_figure}[a.command](a)


if __name__ == "__main__":
    main()
