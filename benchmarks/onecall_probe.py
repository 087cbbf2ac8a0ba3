"""One-call X-ray generator probe: distil the diffusion UNet into G(z) with a GAN whose
discriminator is built on the FROZEN teacher encoder, and measure whether D learns and what FD it buys.

Research probe, not library code (the library's recipe is diffgan_lib.engine.onecall; this probe adds the
pooled-regression term that the one-call study's next run should port). Everything is CPU, one thread, 32 px PneumoniaMNIST.

Pieces
- Teacher: data/pretrained/xray32_pure_4ep.pth (EMA UNet, base 32, mean path, T = 1000 linear).
- G(z): a trainable copy of the teacher UNet called ONCE at t = T-1 on z ~ N(0, I);
  x̂0 = softclamp((z - sqrt(1-ᾱ) eps(z)) / sqrt(ᾱ)), ᾱ = ᾱ_{T-1} (1/sqrt(ᾱ) ≈ 160); softclamp is the
  identity on [-0.95, 0.95] and saturates smoothly at ±1. ``--freeze`` picks which G blocks train.
- D(x, s): x re-noised to x_s = add_noise(x, s), s ~ U[s_lo, s_hi) per sample; the FROZEN teacher
  encoder (down1, down2, down3, mid, time embedding of s) gives 4 feature maps; per scale a small
  trainable head (conv3x3 -> GroupNorm -> LeakyReLU -> per-position logit = conv1x1 + projection on a
  learned embedding of s), averaged over positions, summed over scales. Non-saturating softplus
  losses; optional R1 on the heads' input features (cheap; ``--r1``). G's gradient goes through the
  frozen encoder.
- Regression: N pairs (z, x_teacher) from the teacher's DDIM (eta 0, x0 clipped), fixed seed; loss
  ``--reg-weight`` * mean((G(z) - x_teacher)^2). ``--adv-weight 0`` is the regression-only control
  (its D still trains as a *monitor* that gives G no gradient, so its AUROC says how separable those
  fakes are).
- Measured: every ``--auc-every`` steps D's held-out AUROC (real = val[:256], never used to train
  D; fake = G on 256 fixed latents never used in training; the same fixed s draws for both), overall
  and per s-bucket; every ``--fd-every`` steps FD / KID / diversity (feature net
  data/pretrained/xray32_featurenet.pt) of G (raw and EMA) on the 256 latents of seed 1000 (the
  same noise as the teacher baselines' x_T) against the test split.

Usage (from the repository root):
    PY=python
    $PY benchmarks/onecall_probe.py baselines                 # teacher DDIM-1/4/25/50 FD etc. -> runs/onecall/baselines.json
    $PY benchmarks/onecall_probe.py pairs --n 2048 --steps 25  # teacher ODE pairs -> runs/onecall/pairs_n2048_s25.pt
    $PY benchmarks/onecall_probe.py train --run NAME --max-steps 1500 [recipe flags]
    $PY benchmarks/onecall_probe.py train --run NAME --max-steps 1500 --resume   # continue a stopped run
    $PY benchmarks/onecall_probe.py summary                   # rewrite runs/onecall/SUMMARY.md
The train defaults ARE the best measured recipe (runs f1/f4 in runs/onecall/SUMMARY.md):
    $PY benchmarks/onecall_probe.py train --run best --max-steps 1500
    (= --t-star 400 --adv-weight 1 --reg-weight 1 --reg-pool 4 --lr-g 5e-6 --lr-d 1e-3 --beta1 0.5 --beta2 0.99
       --freeze none --s-lo 0 --s-hi 350 --head-norm 0 --stats-head 1 --width 64 --d-steps 2 --r1 0
       --range-weight 1 --ema 0.99 --pairs-n 2048 --pairs-steps 25 --z-source pairs --batch 32 --seed 0)
    the controls: add --adv-weight 0 (regression only; add --reg-pool 1 for pixel MSE), or
    --reg-weight 0 --z-source fresh (GAN only).
Outputs per run: runs/onecall/<run>/{history.json, ckpt.pt (atomic, every --fd-every steps and at the
end), samples.png}. A resumed run reloads its saved flags (only --max-steps may change) and per-step
randomness is seeded by (seed, step), so it continues as the straight run would.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffgan_lib.engine.models import load_checkpoint
from diffgan_lib.data.loaders import ImageDataset
from diffgan_lib.core.ema import EMA
from diffgan_lib.eval.features import extract_features, load_feature_net
from diffgan_lib.eval.metrics import diversity, frechet_distance, kid
from diffgan_lib.sampling.samplers import sample
from diffgan_lib.sampling.images import save_image_grid
from diffgan_lib.core.unet import timestep_embedding

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "onecall"
TEACHER = ROOT / "data" / "pretrained" / "xray32_pure_4ep.pth"
FEATNET = ROOT / "data" / "pretrained" / "xray32_featurenet.pt"
SIZE, N_EVAL, EVAL_SEED = 32, 256, 1000


# ------------------------------------------------------------------------------------------ utilities
def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def atomic_save(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def split(name: str) -> torch.Tensor:
    return ImageDataset(ROOT / "data" / "pneumoniamnist_28.npz", SIZE, split=name).images


def eval_latents(seed: int = EVAL_SEED, n: int = N_EVAL) -> torch.Tensor:
    """The x_T that diffgan_lib.sampling.sample(seed=seed) draws first (same noise as the baselines)."""
    return torch.randn((n, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):   # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


class Yardstick:
    """FD / KID / diversity in the shipped feature net, against the test split (xray_study's protocol)."""

    def __init__(self):
        self.net = load_feature_net(FEATNET)
        self.test = split("test")
        self.f_test = extract_features(self.net, self.test)

    def score(self, x: torch.Tensor) -> dict:
        f = extract_features(self.net, x.clamp(-1, 1))
        return {"fd": frechet_distance(f, self.f_test), "kid": kid(f, self.f_test, seed=0)[0],
                "div": diversity(f)}


# ------------------------------------------------------------------------------------------ models
def softclamp(x: torch.Tensor, knee: float = 0.95) -> torch.Tensor:
    """Identity on [-knee, knee], then knee + (1 - knee) tanh((|x| - knee) / (1 - knee)): smooth, in (-1, 1)."""
    w = 1.0 - knee
    over = knee + w * torch.tanh((x.abs() - knee) / w)
    return torch.where(x.abs() <= knee, x, torch.sign(x) * over)


FREEZE = {   # which UNet children stay frozen in G
    "none": (),
    "enc": ("time_mlp", "down1", "down2", "down3", "mid"),                       # ~61 % of weights frozen
    "dec12": ("time_mlp", "down1", "down2", "down3", "mid", "up3"),              # ~90 % frozen (D2O-like)
}


class OneCall(nn.Module):
    """G(z) = softclamp(x̂0 of the UNet at t = T-1): one network call per image."""

    def __init__(self, unet: nn.Module, scheduler, freeze: str = "none", t_star: int | None = None):
        super().__init__()
        self.unet = copy.deepcopy(unet).train()
        self.t = scheduler.T - 1 if t_star is None else int(t_star)
        a = float(scheduler.alpha_hat[self.t])
        self.s0, self.s1 = math.sqrt(a), math.sqrt(1 - a)
        self.unet.requires_grad_(True)
        for name in FREEZE[freeze]:
            getattr(self.unet, name).requires_grad_(False)

    def raw(self, z: torch.Tensor) -> torch.Tensor:
        """x̂0 before the clamp. The UNet sees x = sqrt(1 - ᾱ_t*) z at t = t*, i.e. pure noise read as a
        level-t* input with no signal: x̂0 = (x - sqrt(1 - ᾱ) eps) / sqrt(ᾱ). t* = T-1 is the textbook
        one-call read (amplification 1/sqrt(ᾱ) ≈ 157: the teacher's eps error becomes +-78 noise);
        t* = 400 amplifies 2.3x and already gives FD ≈ 58 from the teacher (measured, see SUMMARY.md)."""
        x = self.s1 * z
        eps = self.unet(x, torch.full((z.shape[0],), self.t, dtype=torch.long))
        return (x - self.s1 * eps) / self.s0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return softclamp(self.raw(z))


class FrozenEncoder(nn.Module):
    """The teacher UNet's encoder at a re-noised input: x_s, s -> [d1, d2, d3, mid] feature maps."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.u = copy.deepcopy(unet).eval().requires_grad_(False)
        for name in ("up3", "up2", "up1", "final"):
            delattr(self.u, name)

    def forward(self, x_s: torch.Tensor, s: torch.Tensor) -> list[torch.Tensor]:
        u = self.u
        emb = u.time_mlp(timestep_embedding(s, u.base).to(x_s.dtype))
        d1 = u.down1(x_s, emb)
        d2 = u.down2(u.pool(d1), emb)
        d3 = u.down3(u.pool(d2), emb)
        mid = u.mid(u.pool(d3), emb)
        return [d1, d2, d3, mid]


class Head(nn.Module):
    """conv3x3 (stride 2 above 8 px) [-> GroupNorm] -> LReLU -> per-position logit (conv1x1 + <h, e(s)>) -> mean."""

    def __init__(self, c_in: int, size: int, width: int, sdim: int, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, width, 3, stride=2 if size > 8 else 1, padding=1)
        self.norm = nn.GroupNorm(8, width) if norm else nn.Identity()
        self.out = nn.Conv2d(width, 1, 1)
        self.proj = nn.Linear(sdim, width)
        self.width = width

    def forward(self, f: torch.Tensor, s_emb: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm(self.conv(f)), 0.2)
        logit = self.out(h) + (h * self.proj(s_emb)[:, :, None, None]).sum(1, keepdim=True) / math.sqrt(self.width)
        return logit.mean((1, 2, 3))


def pixel_stats(x_s: torch.Tensor) -> torch.Tensor:
    """What the GroupNorm-ed encoder cannot see: per-image mean and std, and the 4x4 average-pooled image (B, 18)."""
    return torch.cat([x_s.mean((1, 2, 3))[:, None], x_s.std((1, 2, 3))[:, None],
                      F.adaptive_avg_pool2d(x_s, 4).flatten(1)], 1)


class StatsHead(nn.Module):
    """MLP on pixel_stats(x_s) with a projection on e(s): global brightness / contrast / layout."""

    def __init__(self, width: int, sdim: int, n_in: int = 18):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_in, width), nn.LeakyReLU(0.2), nn.Linear(width, width), nn.LeakyReLU(0.2))
        self.out = nn.Linear(width, 1)
        self.proj = nn.Linear(sdim, width)
        self.width = width

    def forward(self, x_s: torch.Tensor, s_emb: torch.Tensor) -> torch.Tensor:
        h = self.mlp(pixel_stats(x_s))
        return (self.out(h) + (h * self.proj(s_emb)).sum(1, keepdim=True) / math.sqrt(self.width))[:, 0]


class Heads(nn.Module):
    """One Head per encoder scale (+ an optional StatsHead on x_s itself); D's logit is their sum."""

    def __init__(self, base: int, width: int = 64, sdim: int = 64, norm: bool = True, stats: bool = False):
        super().__init__()
        self.sdim = sdim
        self.s_mlp = nn.Sequential(nn.Linear(sdim, sdim), nn.SiLU(), nn.Linear(sdim, sdim))
        self.heads = nn.ModuleList([Head(base, 32, width, sdim, norm), Head(2 * base, 16, width, sdim, norm),
                                    Head(4 * base, 8, width, sdim, norm), Head(8 * base, 4, width, sdim, norm)])
        self.stats = StatsHead(width, sdim) if stats else None

    def forward(self, feats: list[torch.Tensor], s: torch.Tensor, x_s: torch.Tensor | None = None,
                per_scale: bool = False):
        e = self.s_mlp(timestep_embedding(s, self.sdim))
        logits = [h(f, e) for h, f in zip(self.heads, feats)]
        if self.stats is not None:
            logits.append(self.stats(x_s, e))
        return torch.stack(logits, 1) if per_scale else sum(logits)


# ------------------------------------------------------------------------------------------ baselines, pairs
def teacher():
    G, _, sched = load_checkpoint(TEACHER, device="cpu")
    return G.eval(), sched


def cmd_baselines(a) -> None:
    torch.set_num_threads(1)
    path = OUT / "baselines.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    ys = Yardstick()
    if "real_vs_real" not in done:
        val = split("val")[:N_EVAL]
        done["real_vs_real"] = {**ys.score(val), "what": "val[:256] vs test (624)"}
        write_json(path, done)
    G, sched = teacher()
    for steps, eta in ((1, 0.0), (1, 1.0), (4, 0.0), (4, 1.0), (25, 0.0), (50, 0.0), (50, 1.0)):
        key = f"ddim{steps}_eta{eta:g}"
        if key in done:
            continue
        t0 = time.time()
        x = sample(G, sched, n=N_EVAL, image_size=SIZE, sampler="ddim", steps=steps, eta=eta, seed=EVAL_SEED,
                   clip_x0=True, progress=False, batch_size=128).clamp(-1, 1)
        done[key] = {**ys.score(x), "calls": steps, "sample_s": round(time.time() - t0, 1)}
        write_json(path, done)
        save_image_grid(x[:64], OUT / f"teacher_{key}.png")
        print(key, {k: round(v, 4) if isinstance(v, float) else v for k, v in done[key].items()}, flush=True)
    print(json.dumps(done, indent=1))


def pairs_path(n: int, steps: int) -> Path:
    return OUT / f"pairs_n{n}_s{steps}.pt"


def cmd_pairs(a) -> None:
    torch.set_num_threads(1)
    path = pairs_path(a.n, a.steps)
    if path.exists():
        print(f"{path} exists")
        return
    G, sched = teacher()
    t0 = time.time()
    z = torch.randn((a.n, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(a.seed))
    gen = torch.Generator().manual_seed(a.seed)
    x = sample(G, sched, n=a.n, image_size=SIZE, sampler="ddim", steps=a.steps, eta=0.0, generator=gen,
               clip_x0=True, progress=False, batch_size=256).clamp(-1, 1)
    atomic_save(path, {"z": z, "x": x, "steps": a.steps, "seed": a.seed, "wall_s": time.time() - t0})
    print(f"{a.n} pairs with DDIM-{a.steps} eta 0 in {time.time() - t0:.0f} s -> {path}")


# ------------------------------------------------------------------------------------------ training
RECIPE_KEYS = ("adv_weight", "reg_weight", "lr_g", "lr_d", "beta1", "beta2", "freeze", "s_lo", "s_hi", "r1",
               "ema", "width", "range_weight", "t_star", "head_norm", "stats_head", "d_steps", "reg_pool", "ema2", "pairs_n", "pairs_steps", "z_source", "batch", "seed", "auc_every", "fd_every")


def mix(*ints) -> int:
    h = 1469598103934665603
    for i in ints:
        h = ((h ^ (int(i) + 0x9E3779B9)) * 1099511628211) % (1 << 61)
    return h


def build(cfg: dict):
    T_unet, sched = teacher()
    torch.manual_seed(cfg["seed"])
    G = OneCall(T_unet, sched, cfg["freeze"], cfg.get("t_star", sched.T - 1))
    enc = FrozenEncoder(T_unet)
    D = Heads(T_unet.base, cfg["width"], norm=cfg.get("head_norm", True), stats=cfg.get("stats_head", False))
    opt_G = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=cfg["lr_g"],
                             betas=(cfg["beta1"], cfg["beta2"]))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"], betas=(cfg["beta1"], cfg["beta2"]))
    ema = EMA(G, cfg["ema"]) if cfg["ema"] > 0 else None
    ema2 = EMA(G, cfg["ema2"]) if cfg.get("ema2", 0) > 0 else None
    return G, enc, D, opt_G, opt_D, ema, ema2, sched


@torch.no_grad()
def measure_auc(G, enc, D, sched, real_val, z_auc, s_auc, n_real, n_fake) -> dict:
    G.eval()
    fake = G(z_auc)
    G.train()
    xr, _ = sched.add_noise(real_val, s_auc, n_real)
    xf, _ = sched.add_noise(fake, s_auc, n_fake)
    lr_ = D(enc(xr, s_auc), s_auc, xr, per_scale=True)
    lf_ = D(enc(xf, s_auc), s_auc, xf, per_scale=True)
    lr, lf = lr_.sum(1).numpy(), lf_.sum(1).numpy()
    out = {"auc": auroc(lr, lf), "D_real_mean": float(lr.mean()), "D_fake_mean": float(lf.mean()),
           "heldout_D_loss": float(F.softplus(-lr_.sum(1)).mean() + F.softplus(lf_.sum(1)).mean())}
    s = s_auc.numpy()
    edges = np.linspace(int(s_auc.min()), int(s_auc.max()) + 1, 5)      # 4 equal buckets of the s range
    out["bucket_edges"] = edges.round().astype(int).tolist()
    out["auc_bucket"] = [auroc(lr[(s >= lo) & (s < hi)], lf[(s >= lo) & (s < hi)]) for lo, hi in zip(edges, edges[1:])]
    out["auc_scale"] = [auroc(lr_[:, k].numpy(), lf_[:, k].numpy()) for k in range(lr_.shape[1])]
    return out


@torch.no_grad()
def gen_eval(G, z: torch.Tensor) -> torch.Tensor:
    was = G.training
    G.eval()
    x = torch.cat([G(zb) for zb in z.split(128)])
    G.train(was)
    return x


def cmd_train(a) -> None:
    torch.set_num_threads(1)
    run = OUT / a.run
    run.mkdir(parents=True, exist_ok=True)
    ck_path = run / "ckpt.pt"
    cfg = {k: getattr(a, k) for k in RECIPE_KEYS}
    state = None
    if a.resume:
        if not ck_path.exists():
            raise SystemExit(f"--resume: no {ck_path}")
        state = torch.load(ck_path, map_location="cpu", weights_only=True)
        cfg = json.loads(state["cfg_json"])
    elif ck_path.exists() and not a.overwrite:
        raise SystemExit(f"{ck_path} exists: pass --resume to continue or --overwrite to start again")
    G, enc, D, opt_G, opt_D, ema, ema2, sched = build(cfg)
    step, hist = 0, {"cfg": cfg, "steps": [], "auc": [], "fd": [], "wall": {"train_s": 0.0, "eval_s": 0.0}}
    if state is not None:
        G.load_state_dict(state["G"]); D.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"]); opt_D.load_state_dict(state["opt_D"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if ema2 is not None:
            ema2.load_state_dict(state["ema2"])
        step = int(state["step"])
        hist = json.loads((run / "history.json").read_text())
        # drop records written after the checkpoint (a run killed between the two)
        hist["steps"] = [r for r in hist["steps"] if r["step"] <= step]
        hist["auc"] = [r for r in hist["auc"] if r["step"] <= step]
        hist["fd"] = [r for r in hist["fd"] if r["step"] <= step]
        hist["wall"] = state.get("wall", hist["wall"]) if isinstance(state.get("wall"), dict) else hist["wall"]
        print(f"resumed {run} at step {step}", flush=True)
    hist["cfg"] = cfg
    hist["max_steps"] = a.max_steps
    hist["threads"] = torch.get_num_threads()

    train_x = split("train")
    real_val = split("val")[:N_EVAL]
    pairs = None
    if cfg["reg_weight"] > 0 or cfg["z_source"] == "pairs":
        p = pairs_path(cfg["pairs_n"], cfg["pairs_steps"])
        if not p.exists():
            raise SystemExit(f"{p} missing: run `pairs --n {cfg['pairs_n']} --steps {cfg['pairs_steps']}` first")
        pairs = torch.load(p, weights_only=True)
    ys = Yardstick()
    z_fd = eval_latents()
    z_auc = eval_latents(seed=2)
    g = torch.Generator().manual_seed(3)
    s_auc = torch.randint(cfg["s_lo"], cfg["s_hi"], (N_EVAL,), generator=g)
    n_real = torch.randn((N_EVAL, 1, SIZE, SIZE), generator=g)
    n_fake = torch.randn((N_EVAL, 1, SIZE, SIZE), generator=g)
    B = cfg["batch"]

    def save():
        t_s = time.time()
        atomic_save(ck_path, {"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                              "opt_D": opt_D.state_dict(), "ema": ema.state_dict() if ema is not None else {},
                              "ema2": ema2.state_dict() if ema2 is not None else {},
                              "step": torch.tensor(step), "cfg_json": json.dumps(cfg)})
        write_json(run / "history.json", hist)
        return time.time() - t_s

    def evaluate(fd: bool):
        t_e = time.time()
        rec = {"step": step, **measure_auc(G, enc, D, sched, real_val, z_auc, s_auc, n_real, n_fake)}
        hist["auc"].append(rec)
        msg = f"[{a.run}] step {step}: AUROC {rec['auc']:.3f} buckets " + " ".join(f"{v:.2f}" for v in rec["auc_bucket"])
        if fd:
            x = gen_eval(G, z_fd)
            frec = {"step": step, "raw": ys.score(x)}
            if ema is not None:
                frec["ema"] = ys.score(gen_eval(ema.module, z_fd))
            if ema2 is not None:
                frec["ema2"] = ys.score(gen_eval(ema2.module, z_fd))
            hist["fd"].append(frec)
            msg += f" | FD raw {frec['raw']['fd']:.2f} kid {frec['raw']['kid']:.4f} div {frec['raw']['div']:.3f}"
            if ema is not None:
                msg += f" | FD ema {frec['ema']['fd']:.2f} div {frec['ema']['div']:.3f}"
            if ema2 is not None:
                msg += f" | FD ema2 {frec['ema2']['fd']:.2f} div {frec['ema2']['div']:.3f}"
        hist["wall"]["eval_s"] += time.time() - t_e
        print(msg, flush=True)

    if step == 0:
        evaluate(fd=True)
        save()
    acc = {}
    while step < a.max_steps:
        t0 = time.time()
        gen = torch.Generator().manual_seed(mix(cfg["seed"], step))
        real = train_x[torch.randint(0, len(train_x), (B,), generator=gen)]
        if pairs is not None:
            idx = torch.randint(0, len(pairs["z"]), (B,), generator=gen)
            z, x_tgt = pairs["z"][idx], pairs["x"][idx]
        else:
            z, x_tgt = torch.randn((B, 1, SIZE, SIZE), generator=gen), None
        s_r = torch.randint(cfg["s_lo"], cfg["s_hi"], (B,), generator=gen)
        s_f = torch.randint(cfg["s_lo"], cfg["s_hi"], (B,), generator=gen)
        nz_r = torch.randn((B, 1, SIZE, SIZE), generator=gen)
        nz_f = torch.randn((B, 1, SIZE, SIZE), generator=gen)
        raw = G.raw(z)
        fake = softclamp(raw)
        adv_on = cfg["adv_weight"] > 0
        xs_f = sched.add_noise(fake if adv_on else fake.detach(), s_f, nz_f)[0]
        if adv_on:
            f_fake = enc(xs_f, s_f)
        else:
            with torch.no_grad():
                f_fake = enc(xs_f, s_f)
        # --- D step(s) (heads only; the encoder is frozen). Extra steps: a new real batch, the same
        # fakes re-noised at new s (encoder forward only, cheap)
        D.requires_grad_(True)
        for k in range(cfg["d_steps"]):
            if k > 0:
                real = train_x[torch.randint(0, len(train_x), (B,), generator=gen)]
                s_r = torch.randint(cfg["s_lo"], cfg["s_hi"], (B,), generator=gen)
                s_k = torch.randint(cfg["s_lo"], cfg["s_hi"], (B,), generator=gen)
                nz_r = torch.randn((B, 1, SIZE, SIZE), generator=gen)
                xs_fk = sched.add_noise(fake.detach(), s_k, torch.randn((B, 1, SIZE, SIZE), generator=gen))[0]
                with torch.no_grad():
                    f_fk = enc(xs_fk, s_k)
            else:
                s_k, xs_fk, f_fk = s_f, xs_f.detach(), [f.detach() for f in f_fake]
            xs_r = sched.add_noise(real, s_r, nz_r)[0]
            with torch.no_grad():
                f_real = enc(xs_r, s_r)
            if cfg["r1"] > 0:
                f_real = [f.requires_grad_(True) for f in f_real]
                xs_r = xs_r.requires_grad_(True)
            l_r = D(f_real, s_r, xs_r)
            l_f = D(f_fk, s_k, xs_fk)
            d_loss = F.softplus(-l_r).mean() + F.softplus(l_f).mean()
            r1 = torch.zeros(())
            if cfg["r1"] > 0:
                grads = torch.autograd.grad(l_r.sum(), [*f_real, xs_r], create_graph=True, allow_unused=True)
                r1 = sum(gr.pow(2).flatten(1).sum(1) for gr in grads if gr is not None).mean()
            opt_D.zero_grad(set_to_none=True)
            (d_loss + 0.5 * cfg["r1"] * r1).backward()
            opt_D.step()
        # --- G step
        g_loss = torch.zeros(())
        adv = torch.tensor(float("nan"))
        if adv_on:
            D.requires_grad_(False)
            adv = F.softplus(-D(f_fake, s_f, xs_f)).mean()
            g_loss = g_loss + cfg["adv_weight"] * adv
        reg = torch.tensor(float("nan"))
        if x_tgt is not None:
            k = cfg.get("reg_pool", 1)            # >1: match only the k x k average-pooled layout, not the speckle
            reg = (F.avg_pool2d(raw, k) - F.avg_pool2d(x_tgt, k)).pow(2).mean() if k > 1 else \
                (raw - x_tgt).pow(2).mean()       # on the unclamped x̂0: no vanishing gradient
            if cfg["reg_weight"] > 0:
                g_loss = g_loss + cfg["reg_weight"] * reg
        rng = F.relu(raw.abs() - 1).pow(2).mean()  # keeps x̂0 where softclamp still passes gradient
        if cfg["range_weight"] > 0:
            g_loss = g_loss + cfg["range_weight"] * rng
        opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_G.step()
        if ema is not None:
            ema.update(G, step)
        if ema2 is not None:
            ema2.update(G, step)
        step += 1
        dt = time.time() - t0
        hist["wall"]["train_s"] += dt
        vals = {"d_loss": float(d_loss.detach()), "adv": float(adv.detach()), "reg": float(reg.detach()), "r1": float(r1.detach()), "range": float(rng),
                "raw_absmax_mean": float(raw.detach().abs().amax((1, 2, 3)).mean()),
                "D_real": float(l_r.mean()), "D_fake": float(l_f.mean()), "step_s": dt}
        if not all(math.isfinite(v) for k, v in vals.items() if k not in ("adv", "reg")):
            raise FloatingPointError(f"step {step}: {vals}")
        for k, v in vals.items():
            acc.setdefault(k, []).append(v)
        if step % 10 == 0 or step == a.max_steps:
            hist["steps"].append({"step": step, **{k: float(np.nanmean(v)) if not all(map(math.isnan, v)) else None
                                                   for k, v in acc.items()}})
            acc = {}
        if step % 50 == 0:
            last = hist["steps"][-1]
            print(f"[{a.run}] step {step} d_loss {last['d_loss']:.3f} adv {last['adv']} reg {last['reg']} "
                  f"{last['step_s']:.2f} s/step", flush=True)
        fd_now = step % cfg["fd_every"] == 0 or step == a.max_steps
        if step % cfg["auc_every"] == 0 or fd_now:
            evaluate(fd=fd_now)
        if fd_now:
            save()
    hist["done"] = step >= a.max_steps
    save()
    x = gen_eval(ema.module if ema is not None else G, z_fd)
    save_image_grid(x[:64], run / "samples.png")
    save_image_grid(gen_eval(G, z_fd)[:64], run / "samples_raw.png")
    print(f"[{a.run}] done: {step} steps, train {hist['wall']['train_s']:.0f} s "
          f"({hist['wall']['train_s'] / max(step, 1):.3f} s/step), eval {hist['wall']['eval_s']:.0f} s", flush=True)
    cmd_summary(a)


def cmd_memo(a) -> None:
    """Memorisation check of a finished run's EMA generator (256 samples, seed-1000 latents) vs the train
    split, held-out = val: diffgan_lib.eval.metrics.memorisation (ratio ~1 generalises, ~0 copies)."""
    from diffgan_lib.eval.metrics import memorisation
    torch.set_num_threads(1)
    run = OUT / a.run
    state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(state["cfg_json"])
    G = build(cfg)[0]
    G.load_state_dict(state[a.which] if a.which != "raw" else state["G"])
    x = gen_eval(G, eval_latents())
    m = memorisation(x, split("train"), split("val")[:N_EVAL], net=load_feature_net(FEATNET))
    keep = {k: v for k, v in m.items() if isinstance(v, (int, float))}
    write_json(run / f"memorisation_{a.which}.json", keep)
    print(a.run, a.which, keep)


# ------------------------------------------------------------------------------------------ summary
def fmt(v, nd=2):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def cmd_summary(a) -> None:
    lines = ["# One-call probe: results (written by benchmarks/onecall_probe.py summary)", "",
             "All numbers: 256 samples (latents = the x_T of seed 1000), FD / KID (diffgan_lib.eval.metrics.kid mean, as returned) / "
             "diversity in the shipped feature net (data/pretrained/xray32_featurenet.pt) against the PneumoniaMNIST "
             "test split (624). AUROC: D's held-out real (val[:256]) vs fake (256 latents of seed 2) with fixed s draws. "
             "Wall time: 1 torch thread on a 2-core machine shared with other work.", ""]
    bp = OUT / "baselines.json"
    if bp.exists():
        b = json.loads(bp.read_text())
        lines += ["## Teacher baselines (x0 clipped)", "",
                  "| sampler | calls | FD | KID | diversity |", "|---|---|---|---|---|"]
        for k, v in b.items():
            lines.append(f"| {k} | {v.get('calls', '-')} | {fmt(v['fd'])} | {fmt(v['kid'], 4)} | {fmt(v['div'], 3)} |")
        lines.append("")
    lines += ["## Runs", "",
              "| run | steps | s/step | adv | reg (pool) | lr_G | D | s range | FD raw | FD ema | FD ema2 | KID ema2 | div ema2 | best FD (which@step) | AUROC max / mean last 5 / last | last per s-bucket |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    details = []
    for h_path in sorted(OUT.glob("*/history.json")):
        h = json.loads(h_path.read_text())
        c, fds, aucs = h["cfg"], h["fd"], h["auc"]
        if not fds:
            continue
        st = h["steps"][-1]["step"] if h["steps"] else 0
        sps = h["wall"]["train_s"] / max(st, 1)
        last = fds[-1]
        e1, e2 = last.get("ema", {}), last.get("ema2", {})
        best = min(((r[w]["fd"], w, r["step"]) for r in fds for w in ("raw", "ema", "ema2") if w in r))
        a_vals = [r["auc"] for r in aucs]
        dcfg = (f"{'GN' if c.get('head_norm', 1) else 'noGN'}{'+stats' if c.get('stats_head', 0) else ''} "
                f"lr {c['lr_d']} x{c.get('d_steps', 1)}")
        lines.append(f"| {h_path.parent.name}{'' if h.get('done') else ' (stopped)'} | {st} | {sps:.3f} | "
                     f"{c['adv_weight']} | {c['reg_weight']} ({c.get('reg_pool', 1)}) | {c['lr_g']} | {dcfg} | "
                     f"[{c['s_lo']},{c['s_hi']}) | {fmt(last['raw']['fd'])} | {fmt(e1.get('fd'))} | {fmt(e2.get('fd'))} | "
                     f"{fmt(e2.get('kid'), 4)} | {fmt(e2.get('div'), 3)} | {best[0]:.2f} ({best[1]}@{best[2]}) | "
                     f"{fmt(max(a_vals), 3)} / {fmt(float(np.mean(a_vals[-5:])), 3)} / {fmt(a_vals[-1], 3)} | "
                     + " ".join(fmt(v) for v in aucs[-1]["auc_bucket"]) + " |")
        details += [f"### {h_path.parent.name}", "", "cfg: `" + json.dumps(c) + "`", "",
                    "FD curve (step: raw / ema / ema2 FD; ema2 KID, div): " + "; ".join(
                        f"{r['step']}: {fmt(r['raw']['fd'])} / {fmt(r.get('ema', {}).get('fd'))} / "
                        f"{fmt(r.get('ema2', {}).get('fd'))}; {fmt(r.get('ema2', {}).get('kid'), 4)}, "
                        f"{fmt(r.get('ema2', {}).get('div'), 3)}" for r in fds), "",
                    "AUROC curve (step: overall): " + ", ".join(f"{r['step']}: {r['auc']:.2f}" for r in aucs), "",
                    "D loss (train, mean of 10 steps) every 100 steps: " + ", ".join(
                        f"{r['step']}: {r['d_loss']:.3f}" for r in h["steps"] if r["step"] % 100 == 0), "",
                    f"wall: train {h['wall']['train_s']:.0f} s ({sps:.3f} s/step), eval {h['wall']['eval_s']:.0f} s", ""]
    notes = OUT / "NOTES.md"
    extra = ["", notes.read_text()] if notes.exists() else []
    (OUT / "SUMMARY.md").write_text("\n".join(lines + extra + ["", "## Per-run curves", ""] + details) + "\n")
    print(f"wrote {OUT / 'SUMMARY.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("baselines")
    q = sub.add_parser("pairs")
    q.add_argument("--n", type=int, default=2048)
    q.add_argument("--steps", type=int, default=25)
    q.add_argument("--seed", type=int, default=7)
    sub.add_parser("summary")
    mm = sub.add_parser("memo")
    mm.add_argument("--run", required=True)
    mm.add_argument("--which", choices=("ema", "ema2", "raw"), default="ema")
    t = sub.add_parser("train")
    t.add_argument("--run", required=True)
    t.add_argument("--max-steps", type=int, default=300)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--adv-weight", type=float, default=1.0)
    t.add_argument("--reg-weight", type=float, default=1.0)
    t.add_argument("--lr-g", type=float, default=5e-6)
    t.add_argument("--t-star", type=int, default=400,
                   help="the level G reads z at (999 = x_T read; 400 is far better conditioned, see raw())")
    t.add_argument("--lr-d", type=float, default=1e-3)
    t.add_argument("--beta1", type=float, default=0.5)
    t.add_argument("--beta2", type=float, default=0.99)
    t.add_argument("--freeze", choices=tuple(FREEZE), default="none")
    t.add_argument("--s-lo", type=int, default=0)
    t.add_argument("--s-hi", type=int, default=350)
    t.add_argument("--r1", type=float, default=0.0)
    t.add_argument("--ema", type=float, default=0.99)
    t.add_argument("--width", type=int, default=64)
    t.add_argument("--head-norm", type=int, default=0, help="1: GroupNorm in the conv heads; 0: none")
    t.add_argument("--stats-head", type=int, default=1, help="1: add the StatsHead on pixel statistics of x_s")
    t.add_argument("--d-steps", type=int, default=2, help="D updates per G update")
    t.add_argument("--reg-pool", type=int, default=4, help="regress avg_pool2d(., k) of G and target (1 = pixels)")
    t.add_argument("--ema2", type=float, default=0.999, help="a second, slower EMA that is also scored (0 = none)")
    t.add_argument("--range-weight", type=float, default=1.0,
                   help="weight of mean(relu(|raw x̂0| - 1)^2): pixels far outside [-1, 1] get no gradient through softclamp")
    t.add_argument("--pairs-n", type=int, default=2048)
    t.add_argument("--pairs-steps", type=int, default=25)
    t.add_argument("--z-source", choices=("pairs", "fresh"), default="pairs",
                   help="latents for G's batch: the regression pairs' z (default) or fresh N(0, I) draws "
                        "(fresh only without regression)")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--auc-every", type=int, default=50)
    t.add_argument("--fd-every", type=int, default=250)
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    {"baselines": cmd_baselines, "pairs": cmd_pairs, "train": cmd_train, "summary": cmd_summary, "memo": cmd_memo}[a.cmd](a)


if __name__ == "__main__":
    main()
