"""A peer benchmark: the Hugging Face diffusion course's recipe against ours, same wall time, real X-rays.

Both train at the same time for ``--wall-s`` seconds each, in two processes with one thread each,
on 32 px PneumoniaMNIST (train split, 4708 images in [-1, 1], batch 32, the same seeded loader),
then draw ``--n`` samples (noise seed 1000) with each library's sampler at <= 100 network
evaluations, scored with xray_study.py's yardstick: FD and KID in its FeatureNet (trained once on
the train split, cached as --out/featurenet.pt), SWD (x 1e3) on 7x7 patches, against the **test**
split; the real-vs-real line is ``--n`` val images against test. Where the peer has two samplers,
its best is the one with the lower FD against the **val** split.

- The peer: unit 1 of the course ("Introduction to Diffusers"), one grayscale channel instead of
  three. ``UNet2DModel(sample_size=32, in_channels=1, out_channels=1, layers_per_block=2,
  block_out_channels=(32, 64, 64, 128), down_block_types=(Down, Down, AttnDown, AttnDown),
  up_block_types=(AttnUp, AttnUp, Up, Up))``, ``DDPMScheduler(num_train_timesteps=1000,
  beta_schedule="squaredcos_cap_v2")``, ``AdamW(lr=4e-4)``, MSE between the noise and its
  prediction; no EMA, no learning-rate schedule, as in the course. The course's widths are (64, 128,
  128, 256) (about 18 M parameters for RGB); we halve them to (32, 64, 64, 128), 4.64 M parameters
  with the same attention blocks, near our UNet's 2.1 M. No horizontal flips (the course flips
  butterflies; a flipped chest X-ray puts the heart on the wrong side). Sampled with diffusers'
  ``DDIMPipeline`` and ``DDIMScheduler.from_config`` of the training scheduler (x0 clipped to
  [-1, 1], as the DDPM config says), 50 steps (the pipeline's default) at eta 0 (its default) and 1.
- Ours: the course's default as the command line trains it, ``TrainConfig.cpu_quick(seed=...)``
  (pure diffusion with the UNet's mean path, base 32) through ``train()`` on
  ``make_dataloader("pneumoniamnist", 32, 32, seed=...)``, stopped on time by a callback; sampled from
  the EMA weights with ``sampling.FAST_SAMPLER`` (DDIM-50, eta 1, x0 clipped). ``--ours-adv-weight 0.01``
  trains the seed's hybrid instead, ``--ours-plain`` the UNet without the
  mean path.

Each clock starts once the data are loaded (model building included) and stops after the first step
that ends past ``--wall-s``. The default, 360 s, is what one 4-epoch run of ``xray_study.py train``
(588 steps) takes on the project's 2-core machine with two such runs side by side.

    python benchmarks/peer_diffusers.py --seeds 0 1 2 --write benchmarks/results/peer_diffusers.json   # ~20 min a seed
    python benchmarks/peer_diffusers.py --seeds 0 1 2 --ours-adv-weight 0.01 --write benchmarks/results/peer_diffusers_hybrid.json
    python benchmarks/peer_diffusers.py --wall-s 20 --n 32 --out /tmp/peer_smoke          # a smoke test

Seeds run one after the other (each pair needs both cores to itself while it trains); a seed whose two
sides have finished is not run again, so an interrupted study continues where it stopped. The summary
pairs the seeds: each seed's FD ratio ours / peer (each side's best sampler, chosen on val), and the
ratio of the two sides' mean FDs.

Needs diffusers (``pip install diffusers``), which the course itself does not. Writes its runs,
logs and samples under --out/peer_diffusers/seed<S>/ and prints a Markdown table and the FD ratio ours / peer.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffgan_lib import TrainConfig, make_dataloader, train
from diffgan_lib.core import count_parameters
from diffgan_lib import load_checkpoint
from diffgan_lib.eval import extract_features
from diffgan_lib.sampling import FAST_SAMPLER, save_image_grid
from diffgan_lib import sample, to_unit

from recipe_study import write_json
from xray_study import SIZE, feature_net, score, split

SEED_NOISE = 1000          # the sampling noise, as in xray_study.py
ATTN_DOWN = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
ATTN_UP = ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")


def mean_last(values: list, k: int = 100) -> float:
    tail = [v for v in values[-k:] if v == v]
    return round(sum(tail) / max(len(tail), 1), 5)


def save_samples(folder: Path, key: str, x: torch.Tensor) -> None:
    """x (n, 1, S, S) in [-1, 1] as a tensor file (for scoring) and a 4x4 PNG grid (for the eye)."""
    torch.save(x, folder / f"samples_{key}.pt")
    save_image_grid(to_unit(x[:16]), folder / f"samples_{key}.png", nrow=4)


# ---------------------------------------------------------------------------------------- the peer
def run_peer(a, folder: Path) -> dict:
    """The HF course, unit 1: train UNet2DModel + DDPMScheduler for a.wall_s, then sample with DDIM."""
    import torch.nn.functional as F
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel

    torch.manual_seed(a.seed)
    loader = make_dataloader("pneumoniamnist", SIZE, 32, seed=a.seed)
    t0 = time.time()
    model = UNet2DModel(sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=2,
                        block_out_channels=tuple(a.peer_channels), down_block_types=ATTN_DOWN,
                        up_block_types=ATTN_UP)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4)
    losses, wall = [], 0.0
    while wall < a.wall_s:
        for x0 in loader:
            eps = torch.randn_like(x0)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x0.shape[0],)).long()
            x_t = noise_scheduler.add_noise(x0, eps, t)                  # q(x_t | x0), DDPM eq. 4
            eps_pred = model(x_t, t, return_dict=False)[0]
            loss = F.mse_loss(eps_pred, eps)                             # DDPM eq. 14
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            wall = time.time() - t0
            if wall >= a.wall_s:
                break
    model.eval().save_pretrained(folder / "unet")
    info = {"recipe": f"HF diffusion course unit 1: UNet2DModel{tuple(a.peer_channels)} with attention at 8 and "
                      "4 px, DDPMScheduler(1000, squaredcos_cap_v2), AdamW lr 4e-4, MSE on the noise, no EMA",
            "params": count_parameters(model), "steps": len(losses), "wall_s": round(wall, 1),
            "loss_last100": mean_last(losses), "samplers": {}}
    ddim = DDIMScheduler.from_config(noise_scheduler.config)
    pipe = DDIMPipeline(unet=model, scheduler=ddim)
    pipe.set_progress_bar_config(disable=True)
    for steps in a.peer_steps:
        for eta in (0.0, 1.0):
            key = f"ddim{steps}_eta{eta:g}"
            t1 = time.time()
            x = pipe(batch_size=a.n, generator=torch.Generator().manual_seed(SEED_NOISE), eta=eta,
                     num_inference_steps=steps, output_type="pt").images * 2 - 1     # [0, 1] -> [-1, 1]
            save_samples(folder, key, x.float())
            info["samplers"][key] = {"label": f"DDIM-{steps} eta {eta:g} (diffusers DDIMPipeline)", "nfe": steps,
                                     "sample_s": round(time.time() - t1, 1)}
    return info


# ---------------------------------------------------------------------------------------- ours
def ours_config(a, seed: int) -> TrainConfig:
    """Ours: the course's default, with --ours-plain / --ours-adv-weight applied."""
    return TrainConfig.cpu_quick(seed=seed, **({"mean_path": False} if a.ours_plain else {}),
                                 **({} if a.ours_adv_weight is None else {"adv_weight": a.ours_adv_weight}))


def check_done_seed(a, seed: int) -> None:
    """A finished seed is reused only if ours was trained with the settings asked for now (the folder is
    named after the flags, and the default may have changed since): else exit, naming the fix."""
    info = json.loads((seed_dir(a, seed) / "ours" / "info.json").read_text())
    had = (info.get("adv_weight"), info.get("mean_path"))
    want = ours_config(a, seed)
    if had != (want.adv_weight, want.mean_path):
        sys.exit(f"{seed_dir(a, seed)} holds ours trained with adv_weight {had[0]}, mean_path {had[1]}; asked for "
                 f"adv_weight {want.adv_weight}, mean_path {want.mean_path}. Move that folder aside (or pass "
                 f"--ours-adv-weight / --ours-plain to match it) and run again.")


def run_ours(a, folder: Path) -> dict:
    """The course's default (cpu_quick; --ours-plain / --ours-adv-weight change it) through train(), stopped
    on time; FAST_SAMPLER from the EMA weights."""
    loader = make_dataloader("pneumoniamnist", SIZE, 32, seed=a.seed)
    cfg = ours_config(a, a.seed)
    t0, clock = time.time(), {}

    def stop_on_time(info):                        # train() stops after a step whose callback raises this
        clock["wall"] = time.time() - t0
        if clock["wall"] >= a.wall_s:
            raise KeyboardInterrupt

    result = train(loader, epochs=10**6, save_dir=folder / "run", config=cfg, callback=stop_on_time,
                   progress=False, overwrite=True)
    G, D, sched = load_checkpoint(result.checkpoint, device="cpu", which="ema")
    info = {"recipe": "diffgan_lib TrainConfig.cpu_quick(): UNet base 32 with t"
                      f"{', mean path' if cfg.mean_path else ''}, "
                      f"{'hybrid diffusion + GAN' if cfg.adv_weight else 'pure diffusion'} "
                      f"(adv_weight {cfg.adv_weight}), EMA {cfg.ema_decay}", "mean_path": cfg.mean_path, "adv_weight": cfg.adv_weight,
            "checkpoint": str(result.checkpoint),
            "params": count_parameters(G), "params_D": count_parameters(D), "steps": result.run.step,
            "wall_s": round(clock["wall"], 1), "loss_last100": mean_last(result.history["diff"]), "samplers": {}}
    key = f"ddim{FAST_SAMPLER['steps']}_eta{FAST_SAMPLER['eta']:g}"
    t1 = time.time()
    x = sample(G, sched, n=a.n, image_size=SIZE, **FAST_SAMPLER, seed=SEED_NOISE, clip_x0=True,
               progress=False).clamp(-1, 1)
    save_samples(folder, key, x)
    info["samplers"][key] = {"label": f"DDIM-{FAST_SAMPLER['steps']} eta {FAST_SAMPLER['eta']:g}, x0 clipped, EMA "
                                      "(FAST_SAMPLER)", "nfe": FAST_SAMPLER["steps"], "sample_s": round(time.time() - t1, 1)}
    return info


def run_role(a) -> None:
    """One side, in its own process: train, sample, write <role>/info.json."""
    torch.set_num_threads(a.threads)
    folder = seed_dir(a, a.seed) / a.role
    folder.mkdir(parents=True, exist_ok=True)
    info = (run_peer if a.role == "peer" else run_ours)(a, folder)
    info["machine"] = f"{platform.platform()}, {platform.machine()}, {torch.get_num_threads()} thread(s) of {os.cpu_count()} CPUs"
    write_json(folder / "info.json", info)
    print(f"{a.role}: {info['steps']} steps in {info['wall_s']} s; samples written", flush=True)


# ---------------------------------------------------------------------------------------- both
def seed_dir(a, seed: int) -> Path:
    name = "peer_diffusers" + ("_plain" if a.ours_plain else "") + (
        "" if a.ours_adv_weight is None else f"_adv{a.ours_adv_weight:g}")
    return a.out / name / f"seed{seed}"


def launch_both(a, seed: int) -> None:
    """Start the two sides at once, each its own process with a.threads threads; wait for both."""
    base = Path(__file__).resolve()
    args = ["--wall-s", str(a.wall_s), "--n", str(a.n), "--seed", str(seed), "--out", str(a.out),
            "--threads", str(a.threads), "--peer-channels", *map(str, a.peer_channels),
            "--peer-steps", *map(str, a.peer_steps), *(["--ours-plain"] if a.ours_plain else []),
            *([] if a.ours_adv_weight is None else ["--ours-adv-weight", str(a.ours_adv_weight)])]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    logs = {role: seed_dir(a, seed) / f"{role}.log" for role in ("peer", "ours")}
    procs = {}
    for role, log in logs.items():
        log.parent.mkdir(parents=True, exist_ok=True)
        procs[role] = subprocess.Popen([sys.executable, str(base), "--role", role, *args], env=env,
                                       stdout=log.open("w"), stderr=subprocess.STDOUT)
    print(f"seed {seed}: training the peer and ours for {a.wall_s:g} s each, {a.threads} thread(s) each; "
          f"logs in {logs['peer'].parent}", flush=True)
    failed = [role for role, p in procs.items() if p.wait() != 0]
    for role in failed:
        print(f"--- {role} failed; the end of {logs[role]}:\n" + "\n".join(logs[role].read_text().splitlines()[-20:]))
    if failed:
        sys.exit(1)


def score_seed(a, seed: int, net, test, val, f_test, f_val) -> dict:
    """Score one seed's two sides against test (report) and val (choose each side's best sampler)."""
    res = {}
    for role in ("peer", "ours"):
        folder = seed_dir(a, seed) / role
        side = json.loads((folder / "info.json").read_text())
        for key, s in side["samplers"].items():
            x = torch.load(folder / f"samples_{key}.pt", weights_only=True)
            s.update(val=score(x, val, net, f_val), test=score(x, test, net, f_test))
        side["best"] = min(side["samplers"], key=lambda k: side["samplers"][k]["val"]["fd"])
        res[role] = side
    res["fd_ratio_ours_over_peer"] = round(best_fd(res, "ours") / best_fd(res, "peer"), 4)
    return res


def best_fd(one_seed: dict, role: str, split_name: str = "test") -> float:
    side = one_seed[role]
    return side["samplers"][side["best"]][split_name]["fd"]


def mean_sd(values: list) -> tuple:
    t = torch.tensor(values, dtype=torch.float64)
    return round(t.mean().item(), 3), round(t.std().item(), 3) if len(values) > 1 else 0.0


def table(a) -> dict:
    """Score every seed's samples, print a Markdown table per seed and the paired summary."""
    net = feature_net(a.out)
    test, val = split("test"), split("val")
    f_test, f_val = extract_features(net, test), extract_features(net, val)
    res = {"protocol": f"32 px PneumoniaMNIST; each side trains {a.wall_s:g} s in its own process with "
                       f"{a.threads} thread(s), both at once, batch 32; {a.n} samples (noise seed {SEED_NOISE}); FD/KID "
                       "in xray_study's FeatureNet (train split, seed 0), SWD (x1e3) on 7x7 patches, against the test "
                       "split; a side's best sampler has the lowest FD against val; seeds run one after the other",
           "wall_s_budget": a.wall_s, "seeds": a.seeds, "n": a.n, "ours_mean_path": not a.ours_plain,
           "ours_adv_weight": a.ours_adv_weight,
           "real_vs_real": score(val[:a.n], test, net, f_test), "per_seed": {}}
    for seed in a.seeds:
        res["per_seed"][str(seed)] = score_seed(a, seed, net, test, val, f_test, f_val)
    runs = list(res["per_seed"].values())
    summary = {}
    for split_name in ("test", "val"):
        fds = {role: [best_fd(r, role, split_name) for r in runs] for role in ("peer", "ours")}
        summary[split_name] = {
            "fd_peer": fds["peer"], "fd_ours": fds["ours"],
            "fd_peer_mean_sd": mean_sd(fds["peer"]), "fd_ours_mean_sd": mean_sd(fds["ours"]),
            "ratio_per_seed": [round(o / p, 4) for o, p in zip(fds["ours"], fds["peer"])],
            "ratio_of_means": round(sum(fds["ours"]) / sum(fds["peer"]), 4),
            "seeds_ours_ahead": sum(o < p for o, p in zip(fds["ours"], fds["peer"]))}
    res["summary"] = summary
    res["machine"] = runs[0]["ours"]["machine"]

    print(f"\n{res['protocol']}.\nmachine: {res['machine']}\n")
    print(f"| seed | model | parameters | steps in {a.wall_s:g} s | sampler | FD ↓ test (val) | KID ↓ | SWD ↓ |")
    print("|---|---|---|---|---|---|---|---|")
    r = res["real_vs_real"]
    print(f"| | real vs real (val {a.n} vs test) | — | — | — | {r['fd']:.2f} | {r['kid']:.4g} | {r['swd']:.1f} |")
    names = {"peer": "peer: HF course unit 1 (diffusers)",
             "ours": "ours: `TrainConfig.cpu_quick(" + ", ".join(
                 (["mean_path=False"] if a.ours_plain else []) +
                 ([] if a.ours_adv_weight is None else [f"adv_weight={a.ours_adv_weight:g}"])) + ")`"}
    for seed, one in res["per_seed"].items():
        for role in ("peer", "ours"):
            side = one[role]
            params = f"{side['params'] / 1e6:.2f} M" + (f" (+ D {side['params_D'] / 1e6:.2f} M)" if "params_D" in side else "")
            for key, s in side["samplers"].items():
                t, star = s["test"], " (best on val)" if key == side["best"] and len(side["samplers"]) > 1 else ""
                print(f"| {seed} | {names[role]} | {params} | {side['steps']} ({side['wall_s']:g} s) | {s['label']}{star} | "
                      f"{t['fd']:.2f} ({s['val']['fd']:.2f}) | {t['kid']:.4g} | {t['swd']:.1f} |")
    for split_name, sm in summary.items():
        (pm, ps), (om, os_) = sm["fd_peer_mean_sd"], sm["fd_ours_mean_sd"]
        print(f"\n{split_name}: FD peer {pm:.2f} ± {ps:.2f}, ours {om:.2f} ± {os_:.2f} (mean ± sd over {len(runs)} seeds); "
              f"ratio ours / peer per seed {' / '.join(f'{x:.3f}' for x in sm['ratio_per_seed'])}, "
              f"of the means {sm['ratio_of_means']:.3f}; ours ahead in {sm['seeds_ours_ahead']} of {len(runs)} "
              "(below 1: ours is closer to the real X-rays)")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wall-s", type=float, default=360.0, help="training seconds for each side (default 360)")
    p.add_argument("--n", type=int, default=256, help="samples per sampler (default 256)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds, both sides each, one seed after the other (default 0)")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)   # a child process's one seed
    p.add_argument("--out", type=Path, default=Path("runs/xray"),
                   help="study folder: featurenet.pt is shared with xray_study.py; runs go to OUT/peer_diffusers/seed<S>")
    p.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    p.add_argument("--peer-channels", type=int, nargs=4, default=[32, 64, 64, 128],
                   help="the peer's block_out_channels (default 32 64 64 128: 4.64 M parameters)")
    p.add_argument("--peer-steps", type=int, nargs="+", default=[50],
                   help="the peer's DDIM steps, each at eta 0 and 1 (default 50; at most 100)")
    p.add_argument("--ours-plain", action="store_true",
                   help="train ours without the UNet's mean path (mean_path=False, the seed's "
                        "plain UNet); runs go to OUT/peer_diffusers_plain/seed<S>")
    p.add_argument("--ours-adv-weight", type=float, help="ours with this adversarial weight instead of the "
                   "default's (0, pure diffusion; 0.01: the hybrid); runs go to OUT/peer_diffusers_adv<W>/seed<S>")
    p.add_argument("--write", type=Path, help="also write the results as JSON here")
    p.add_argument("--role", choices=("peer", "ours"), help=argparse.SUPPRESS)   # a child process: one side
    a = p.parse_args()
    if importlib.util.find_spec("diffusers") is None:
        sys.exit("this benchmark needs diffusers, which the course does not: pip install diffusers "
                 "(optional, only for benchmarks/peer_diffusers.py)")
    if max(a.peer_steps) > 100:
        sys.exit(f"--peer-steps {max(a.peer_steps)}: the comparison allows at most 100 network evaluations")
    if a.role:
        return run_role(a)
    torch.set_num_threads(a.threads)
    feature_net(a.out)                             # trained (and cached) before the clocks start
    for seed in a.seeds:
        if all((seed_dir(a, seed) / role / "info.json").exists() for role in ("peer", "ours")):
            check_done_seed(a, seed)
            print(f"seed {seed}: both sides done already ({seed_dir(a, seed)})")
            continue
        launch_both(a, seed)
    res = table(a)
    write_json(seed_dir(a, a.seeds[0]).parent / "result.json", res)
    if a.write:
        a.write.parent.mkdir(parents=True, exist_ok=True)
        write_json(a.write, res)
        print("wrote", a.write)


if __name__ == "__main__":
    main()
