"""Which sampling defaults keep what a model learned? Measured on real chest X-rays (PneumoniaMNIST).

Protocol: 32 px PneumoniaMNIST, one SimCLR-CNN FeatureNet trained once on the train
split (seed 0, cached in --out); every sample set has 256 images and is scored by FD and KID in
those features and SWD (x 1e3) on 7x7 patches, against the **test** split (624 images) for reporting and
against the **val** split (524) for choosing; the real-vs-real line is 256 val images against test.
The models are ``TrainConfig.cpu_quick()`` (base 32, batch 32) with each arm's changes (ARMS: the first
default, the hybrid with the plain UNet; pure diffusion; each with the mean path; ``pure_mean`` is today's
default) trained through ``train()`` as the command line does, with checkpoints after given epochs.

    python benchmarks/xray_study.py train --seeds 0 1 2 --epochs 4          # 588 steps each (the seed's hybrid, plain UNet)
    python benchmarks/xray_study.py train --seeds 0 --epochs 20 --keep 1 20  # the 1- and 20-epoch models
    python benchmarks/xray_study.py train --arm pure --seeds 0 1 2          # the same without the GAN term (pure_seed<S>_e4)
    python benchmarks/xray_study.py train --arm pure --seeds 0 --epochs 20 --keep 1 4 8
    python benchmarks/xray_study.py train --arm mean --seeds 0 --epochs 8 --keep 4    # and --seeds 1 2 (4 epochs)
    python benchmarks/xray_study.py train --arm pure_mean --seeds 0 --epochs 8 --keep 4   # and --seeds 1 2 (the course's default recipe)
    python benchmarks/xray_study.py sweep                                    # EMA: eta {0,1} x steps {10,25,50,100}; raw: DDIM-50, eta 1
    python benchmarks/xray_study.py baselines --seeds 0                      # the seed as written and a bare UNet, DDPM-1000
    python benchmarks/xray_study.py cli                                      # the command line trains the same model; its default sample scored
    python benchmarks/xray_study.py featurenet                               # ship the FeatureNet (float16) for notebook 10
    python benchmarks/xray_study.py table --write benchmarks/results/xray_sampling.json

Each step writes its results under --out (default runs/xray) and skips what is already there, so
the study can be stopped and continued; run two processes with --threads 1 on different seeds.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from diffgan_lib.data import ImageDataset
from diffgan_lib import TrainConfig, make_dataloader, train
from diffgan_lib import load_checkpoint
from diffgan_lib.eval import FeatureNet, extract_features, train_feature_net
from diffgan_lib.eval import frechet_distance, kid, sliced_wasserstein
from diffgan_lib import sample
from diffgan_lib.course.seed_loop import train_step_as_written

from recipe_study import write_json

SIZE = 32


def split(name: str) -> torch.Tensor:
    return ImageDataset("pneumoniamnist", SIZE, split=name).images


def feature_net(out: Path) -> FeatureNet:
    """The study's one FeatureNet, trained on the train split once and cached as a state dict."""
    path = out / "featurenet.pt"
    if path.exists():
        net = FeatureNet()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    net = train_feature_net(split("train"), seed=0, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net


def score(x: torch.Tensor, ref: torch.Tensor, net, f_ref=None) -> dict:
    """FD, KID and SWD (x 1e3, as diffgan_lib.metrics reports it) of images x (n, 1, S, S) in [-1, 1] against ref."""
    f_x = extract_features(net, x)
    f_ref = extract_features(net, ref) if f_ref is None else f_ref
    return {"fd": frechet_distance(f_x, f_ref), "kid": kid(f_x, f_ref, seed=0)[0],
            "swd": sliced_wasserstein(x, ref, seed=0)}


ARMS = {   # train: run-folder prefix and TrainConfig changes of each arm
    # the plain UNet (no mean path) with the hybrid's GAN term: the seed's hybrid
    "plain": ("", {"adv_weight": 0.01, "mean_path": False}),           # the hybrid: GAN term on x0 after 500 steps
    "pure": ("pure_", {"adv_weight": 0.0, "mean_path": False}),        # the same without the GAN term
    "mean": ("mean_", {"adv_weight": 0.01, "mean_path": True}),        # the hybrid + mean path
    "pure_mean": ("pure_mean_", {"adv_weight": 0.0, "mean_path": True}),   # pure diffusion + mean path: the default now
}


def cmd_train(a) -> None:
    for seed in a.seeds:
        run = a.out / f"{ARMS[a.arm][0]}seed{seed}_e{a.epochs}"
        if (run / "final_model.pth").exists():
            print(f"{run} done already")
            continue
        cfg = TrainConfig.cpu_quick(seed=seed, checkpoint_every=1, **ARMS[a.arm][1])
        loader = make_dataloader("pneumoniamnist", SIZE, 32, seed=seed)
        t0 = time.time()
        last = max(run.glob("epoch_*.pth"), default=None)
        train(loader, epochs=a.epochs, save_dir=run, config=cfg, resume=last, progress=False)
        for p in run.glob("epoch_*.pth"):                       # keep only the epochs the study samples
            if int(p.stem.split("_")[1]) not in a.keep or int(p.stem.split("_")[1]) == a.epochs:   # = final
                p.unlink()
        write_json(run / "train.json", {"seed": seed, "epochs": a.epochs, "wall_s": round(time.time() - t0),
                                        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"})
        print(f"{run}: {a.epochs} epochs in {time.time() - t0:.0f} s", flush=True)


def cmd_sweep(a) -> None:
    net = feature_net(a.out)
    test, val = split("test"), split("val")
    f_test, f_val = extract_features(net, test), extract_features(net, val)
    for ckpt in sorted(a.out.glob("*/epoch_*.pth")) + sorted(a.out.glob("*/final_model.pth")):
        if ckpt.parent.name.startswith(tuple(BASELINES)):       # sampled with DDPM-1000 by cmd_baselines
            continue
        if a.only and not any(ckpt.match(f"*/{pattern}") for pattern in a.only):
            continue
        res_path = ckpt.with_suffix(".sweep.json")
        done = json.loads(res_path.read_text()) if res_path.exists() else {}
        for which in a.which:
            G, _, sched = load_checkpoint(ckpt, device="cpu", which=which)
            for eta in (a.etas if which == "ema" else a.raw_etas):
                for steps in (a.steps if which == "ema" else a.raw_steps):
                    key = f"{which}_eta{eta:g}_ddim{steps}"
                    if key in done:
                        continue
                    t0 = time.time()
                    x = sample(G, sched, n=a.n, image_size=SIZE, sampler="ddim", steps=steps, eta=eta, seed=1000,
                               clip_x0=True, progress=False).clamp(-1, 1)
                    done[key] = {"val": score(x, val, net, f_val), "test": score(x, test, net, f_test),
                                 "sample_s": round(time.time() - t0, 1)}
                    write_json(res_path, done)
                    print(f"{ckpt.parent.name}/{ckpt.stem} {key}: FD val {done[key]['val']['fd']:.2f} "
                          f"test {done[key]['test']['fd']:.2f}", flush=True)


SEED_LOOP = {"seed_as_written": train_step_as_written}     # baselines trained by the seed's loop as written
BASELINES = {   # for scale: trained as long as the 4-epoch default, sampled with DDPM-1000
    # name: (TrainConfig changes, {result key: clip x0 in DDPM-1000})
    "seed_as_written": (dict(time_embedding=False, mean_path=False, ema_decay=0.0),   # the seed's UNet, trained by
                        {"raw_ddpm1000": False}),                  # its loop as written (SEED_LOOP); its sampler as written
    # a time-conditioned UNet, no EMA, no GAN; unclipped (the seed's sampler) its young raw weights
    # diverge to +-17 in most samples, so it is also sampled with x0 clipped (DDPM's reference code)
    "bare_unet": (dict(adv_weight=0.0, ema_decay=0.0, mean_path=False), {"raw_ddpm1000": False, "raw_ddpm1000_clip": True}),
}


def cmd_baselines(a) -> None:
    """The seed's loop as written and a bare UNet (base 32, batch 32) for as many steps as the 4-epoch
    default took, each sampled with DDPM-1000 and scored like the sweep."""
    net = feature_net(a.out)
    test, val = split("test"), split("val")
    f_test, f_val = extract_features(net, test), extract_features(net, val)
    for seed in a.seeds:
        steps = int(load_checkpoint(a.out / f"seed{seed}_e4" / "final_model.pth", device="cpu").step)
        for name, (changes, samplers) in BASELINES.items():
            run = a.out / f"{name}_seed{seed}"
            res_path = run / "final_model.sweep.json"
            done = json.loads(res_path.read_text()) if res_path.exists() else {}
            if all(key in done for key in samplers):
                print(f"{run} done already")
                continue
            t0 = time.time()
            if not (run / "final_model.pth").exists():
                cfg = TrainConfig.cpu_quick(seed=seed, **changes)
                train(make_dataloader("pneumoniamnist", SIZE, 32, seed=seed), epochs=100, max_steps=steps,
                      save_dir=run, config=cfg, progress=False, step=SEED_LOOP.get(name))
            train_s = time.time() - t0
            G, _, sched = load_checkpoint(run / "final_model.pth", device="cpu", which="raw")
            for key, clip in samplers.items():
                if key in done:
                    continue
                t0 = time.time()
                x = sample(G, sched, n=a.n, image_size=SIZE, sampler="ddpm", seed=1000, clip_x0=clip,
                           progress=False).clamp(-1, 1)
                on_test = score(x, test, net, f_test)
                done[key] = {"val": score(x, val, net, f_val), "test": on_test, "clip_x0": clip,
                             "sample_s": round(time.time() - t0, 1), "train_steps": steps,
                             "train_s": done.get("raw_ddpm1000", {}).get("train_s", round(train_s)), "config": changes}
                write_json(res_path, done)
                print(f"{run} {key}: {steps} steps, DDPM-1000 FD test {on_test['fd']:.2f}", flush=True)


def cmd_cli(a) -> None:
    """The command line's own path: ``train --data pneumoniamnist`` for 1 epoch must give the very weights
    of seed 0's first epoch here (so the study's models are what the CLI trains), and the *default*
    ``sample -n 256`` of seed 0's 4-epoch model is scored like the sweep; then the course's default recipe (pure
    diffusion, the mean path) is trained 4 epochs and sampled through the command line, as a user would."""
    import numpy as np

    from diffgan_lib.engine import read_checkpoint
    from diffgan_lib.cli import main as cli
    net = feature_net(a.out)
    test, val = split("test"), split("val")
    ref = a.out / "seed0_e20" / "epoch_0001.pth"
    out = a.out / "cli_check"
    if not (out / "e1" / "final_model.pth").exists():
        assert cli(["train", "--data", "pneumoniamnist", "--image-size", "32", "--base", "32", "--epochs", "1",
                    "--batch-size", "32", "--no-mean-path", "--adv-weight", "0.01", "--out", str(out / "e1"),
                    "--device", "cpu"]) == 0

    def sample_and_score(checkpoint: Path, folder: Path) -> dict:
        """The default ``sample -n N`` through the command line, scored like the sweep."""
        t0 = time.time()
        assert cli(["sample", "--checkpoint", str(checkpoint), "-n", str(a.n), "--out", str(folder),
                    "--device", "cpu"]) == 0
        x = torch.from_numpy(np.load(folder / "samples.npy")) * 2 - 1
        return {"test": score(x, test, net), "val": score(x, val, net), "sample_s": round(time.time() - t0, 1)}

    mine, theirs = read_checkpoint(out / "e1" / "final_model.pth"), read_checkpoint(ref)
    diff = max((mine["G"][k].float() - theirs["G"][k].float()).abs().max().item() for k in theirs["G"])
    res = json.loads((out / "cli.json").read_text()) if (out / "cli.json").exists() else {}
    res.update(train_1_epoch_equals_study_seed0=diff == 0, max_abs_weight_difference=diff)
    if "default_sample" not in res:
        res["default_sample"] = {**sample_and_score(a.out / "seed0_e4" / "final_model.pth", out / "samples"),
                                 "command": f"python -m diffgan_lib sample --checkpoint seed0_e4/final_model.pth -n {a.n}"}
    # the course's default recipe (pure diffusion + the UNet's mean path): train 4 epochs and
    # sample, both exactly as a user types them, no flags beyond the README's. The hybrid with the mean path
    # was measured the same way (folder default_e4, key "hybrid_mean_default").
    run = out / "default_pure_e4"
    train_cmd = ["train", "--data", "pneumoniamnist", "--image-size", "32", "--base", "32", "--epochs", "4",
                 "--batch-size", "32", "--out", str(run), "--device", "cpu"]
    if not (run / "final_model.pth").exists():
        t0 = time.time()
        assert cli(train_cmd) == 0
        write_json(run / "train.json", {"wall_s": round(time.time() - t0), "command": train_cmd})
    default, saved = TrainConfig.cpu_quick(), read_checkpoint(run / "final_model.pth")
    if (saved["config"]["adv_weight"], saved["config"]["mean_path"]) != (default.adv_weight, default.mean_path):
        sys.exit(f"{run} was trained with another default (adv_weight {saved['config']['adv_weight']}, mean_path "
                 f"{saved['config']['mean_path']}); move it aside and run again")
    if res.get("today_default", {}).get("adv_weight", default.adv_weight) != default.adv_weight:
        del res["today_default"]                                 # scored when the default was another recipe
    twin = a.out / "pure_mean_seed0_e8" / "epoch_0004.pth"      # cmd_train's run of the same recipe, epoch 4
    if twin.exists():
        theirs = read_checkpoint(twin)
        res["today_default_equals_study_pure_mean_seed0_epoch4"] = all(
            torch.equal(saved[key][k], theirs[key][k]) for key in ("G", "G_ema") for k in theirs[key])
    if "today_default" not in res:
        res["today_default"] = {
            **sample_and_score(run / "final_model.pth", run / "samples"),
            "mean_path": bool(saved["model"].get("mean_path", False)), "adv_weight": saved["config"]["adv_weight"],
            "command": "python -m diffgan_lib " + " ".join(train_cmd[:-4]) +
                       f" && python -m diffgan_lib sample --checkpoint .../final_model.pth -n {a.n}"}
    write_json(out / "cli.json", res)
    print(f"CLI 1 epoch == study seed 0 epoch 1: {diff == 0} (max |dw| {diff:.2e}); default sample -n {a.n}: "
          f"FD test {res['default_sample']['test']['fd']:.3f}; the course's default recipe trained and sampled through the "
          f"command line: FD test {res['today_default']['test']['fd']:.3f}")


def cmd_featurenet(a) -> None:
    """Ship the study's FeatureNet (float16) as data/pretrained/xray32_featurenet.pt, for notebook 10."""
    from diffgan_lib.eval.features import save_feature_net
    out = Path(__file__).resolve().parents[1] / "data" / "pretrained" / "xray32_featurenet.pt"
    print(save_feature_net(feature_net(a.out), out), f"{out.stat().st_size / 2**20:.2f} MiB")


def cmd_table(a) -> None:
    net = feature_net(a.out)
    test, val = split("test"), split("val")
    results = {"real_vs_real": score(val[:a.n], test, net),
               "protocol": "FD/KID in a SimCLR-CNN trained on the train split; SWD (x1e3) on 7x7 patches; "
                           f"{a.n} samples (noise seed 1000) against the test split",
               "runs": {}, "arms": {}}
    for res_path in sorted(a.out.glob("*/*.sweep.json")):
        # the plain default's runs and the baselines under "runs" (notebooks 06 and 07 read them); the other
        # arms (pure_, mean_, pure_mean_: ARMS) under "arms"
        where = "arms" if res_path.parent.name.startswith(tuple(p for p, _ in ARMS.values() if p)) else "runs"
        results[where][f"{res_path.parent.name}/{res_path.name.split('.')[0]}"] = json.loads(res_path.read_text())
    if (a.out / "cli_check" / "cli.json").exists():
        results["cli"] = json.loads((a.out / "cli_check" / "cli.json").read_text())
    results["train"] = {p.parent.relative_to(a.out).as_posix(): json.loads(p.read_text())
                        for p in sorted([*a.out.glob("*/train.json"), *a.out.glob("cli_check/*/train.json")])}
    print(f"real vs real (val 256 vs test): FD {results['real_vs_real']['fd']:.3f}")
    for name, sweep in results["runs"].items():
        best = min(sweep, key=lambda k: sweep[k]["val"]["fd"])
        row = " ".join(f"{k}:{v['test']['fd']:.2f}" for k, v in sweep.items() if k.startswith("ema"))
        print(f"{name}: best on val {best} (test FD {sweep[best]['test']['fd']:.2f}) | EMA test FD {row}")
    if a.write:
        Path(a.write).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(a.write), results)
        print("wrote", a.write)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("train", "sweep", "baselines", "cli", "featurenet", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--arm", choices=tuple(ARMS), default="plain",
                   help="train: plain (default: the study's original models, the seed's hybrid), pure, mean or "
                        "pure_mean (the course's default recipe); runs are named <prefix>seed<S>_e<E>")
    p.add_argument("--keep", type=int, nargs="*", default=[], help="also keep these epochs' checkpoints")
    p.add_argument("--out", type=Path, default=Path("runs/xray"))
    p.add_argument("--threads", type=int)
    p.add_argument("--write", help="table: write the collected results as JSON here")
    p.add_argument("--n", type=int, default=256, help="samples per set (default 256)")
    p.add_argument("--etas", type=float, nargs="+", default=[0.0, 1.0], help="sweep: DDIM etas (default 0 1)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100], help="sweep: DDIM steps")
    p.add_argument("--only", nargs="+", help="sweep: only these checkpoints, e.g. seed0_e4/final_model.pth")
    p.add_argument("--which", nargs="+", default=["ema", "raw"], choices=("ema", "raw"), help="sweep: weights")
    p.add_argument("--raw-etas", type=float, nargs="+", default=[1.0], help="sweep: etas for the raw weights (default 1)")
    p.add_argument("--raw-steps", type=int, nargs="+", default=[50], help="sweep: DDIM steps for the raw weights (default 50)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    {"train": cmd_train, "sweep": cmd_sweep, "baselines": cmd_baselines, "cli": cmd_cli,
     "featurenet": cmd_featurenet, "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
