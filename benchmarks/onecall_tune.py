"""Tuning the one-call recipe on validation data: variants of ``OneCallConfig`` on flow_study's teachers, scored against
PneumoniaMNIST's **val** split (the test split is kept for the study's final table, benchmarks/onecall_study.py).

Each variant fine-tunes the teacher of seed S (``runs/flow_study/diffusion_seed{S}``, ``--seeds``, default 0)
exactly as ``fewstep --levels 1 --batch-size 32`` does (the same loader, held-out images and pairs: the runs are
bit-identical to the study's runs of the same settings), in chunks of 500 steps to 1500 (a resume is exact), and
scores its EMA generator after every chunk: FD and KID against the 524 val X-rays in
data/pretrained/xray32_featurenet.pt, diversity, D's best held-out AUROC so far. A variant the study already ran
through the command line (STUDY_ARM) is not run again: its 1500-step generator is scored on val.

    python benchmarks/onecall_tune.py run VARIANT [VARIANT ...] [--seeds 0 1 2]
    python benchmarks/onecall_tune.py finish [--arm reg10]   # the level t the teacher finishes a 2-call sample from
    python benchmarks/onecall_tune.py teacher      # each teacher's own DDIM-50 (eta 1) on the same val X-rays
    python benchmarks/onecall_tune.py splits       # real training X-rays against val and against test (no model)
    python benchmarks/onecall_tune.py table        # -> benchmarks/results/onecall_tune.json

``finish`` scores, on the same val X-rays, the one-call generators of ``benchmarks/onecall_study.py`` (seeds 0-2,
1500 steps) re-noised to t and finished by their teacher in one DDIM step (2 calls), for t in FINISH_T; and, at
t = 50 and 100, finished by the fine-tuned network itself instead (ADD's multi-step sampling re-noises and calls
the student again).

Every step skips what is on disk (``runs/onecall_tune/``), so a stopped run continues.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from diffgan_lib import load_checkpoint, sample
from diffgan_lib.cli.commands import _heldout
from diffgan_lib.course import PRETRAINED_XRAY_FEATURES
from diffgan_lib.data import ImageDataset
from diffgan_lib.data.loaders import make_dataloader
from diffgan_lib.engine.config import OneCallConfig
from diffgan_lib.engine.onecall import onecall_train
from diffgan_lib.engine.pairs import PAIRS_FILE
from diffgan_lib.eval import diversity, extract_features, frechet_distance, kid, load_feature_net

OUT, STUDY = Path("runs/onecall_tune"), Path("runs/onecall_study")
RESULTS = Path(__file__).resolve().parent / "results" / "onecall_tune.json"
CHUNKS = (500, 1000, 1500)
VARIANTS = {     # name: OneCallConfig overrides; the first round varied the recipe at regression weight 1 (seed 0)
    "reg1": {"reg_weight": 1.0, "lr_G": 5e-6},  # the regression at weight 1: the study's own run (onecall arm, seed 0)
    "lr1e-5": {"reg_weight": 1.0, "lr_G": 1e-5},
    "lr1e-5_freeze": {"reg_weight": 1.0, "lr_G": 1e-5, "freeze": "encoder"},
    "pairs_eta1": {"reg_weight": 1.0, "pairs_eta": 1.0, "lr_G": 5e-6},
    "reg3": {"reg_weight": 3.0, "lr_G": 5e-6},
    "smax100": {"reg_weight": 1.0, "s_max": 100, "lr_G": 5e-6},
    "freeze_most": {"reg_weight": 1.0, "freeze": "most", "lr_G": 5e-6},
    "denoise1": {"reg_weight": 1.0, "denoise_weight": 1.0, "lr_G": 5e-6},
    "denoise10": {"reg_weight": 1.0, "denoise_weight": 10.0, "lr_G": 5e-6},
    "reg10": {"reg_weight": 10.0, "lr_G": 5e-6},
    "reg30": {"reg_weight": 30.0, "lr_G": 5e-6},
    "reg3_pool2": {"reg_weight": 3.0, "reg_pool": 2, "lr_G": 5e-6},
    "reg3_denoise10": {"reg_weight": 3.0, "denoise_weight": 10.0, "lr_G": 5e-6},
    # the second round, at weight 10 and around it, on the three teachers (--seeds 0 1 2)
    "reg20": {"reg_weight": 20.0, "lr_G": 5e-6},
    "reg10_lr1e-5": {"reg_weight": 10.0, "lr_G": 1e-5},
    "reg10_lr2e-5": {"reg_weight": 10.0, "lr_G": 2e-5},
    "reg10_lr4e-5": {"reg_weight": 10.0, "lr_G": 4e-5},         # the next step up
}
STUDY_ARM = {"reg1": "onecall", "reg10": "reg10", "reg30": "reg30"}   # variant: the study's arm of the same settings


def val_features():
    """The X-ray feature net and its features of the 524 val X-rays (the tuning's yardstick)."""
    net = load_feature_net(PRETRAINED_XRAY_FEATURES)
    return net, extract_features(net, ImageDataset("pneumoniamnist", 32, split="val").images)


def score(net, f_val, ckpt: Path) -> dict:
    loaded = load_checkpoint(ckpt, device="cpu")
    G, _, sched = loaded
    x = sample(G, sched, n=256, image_size=32, seed=1000, progress=False).clamp(-1, 1)
    f = extract_features(net, x)
    auc = [v for v in loaded.history.get("auroc", []) if v == v]
    return {"fd": frechet_distance(f, f_val), "kid": kid(f, f_val, seed=0)[0], "diversity": diversity(f),
            "auroc_max": max(auc) if auc else None, "step": loaded.step}


def cmd_run(a) -> None:
    net, f_val = val_features()
    seeds = "" if a.seeds == [0] else "".join(f"_s{s}" for s in a.seeds)     # seed 0 alone: the first round's names
    cache_path = OUT / f"scores_{'_'.join(a.variants)}{seeds}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cache.setdefault("val_diversity", diversity(f_val))
    loader = make_dataloader("pneumoniamnist", 32, 32, seed=0)      # fewstep's defaults: --seed 0 for every teacher
    heldout = _heldout("pneumoniamnist", 32, 0, loader)
    for seed in a.seeds:
        teacher = Path(f"runs/flow_study/diffusion_seed{seed}/final_model.pth")
        pairs_from = STUDY / f"onecall_seed{seed}" / PAIRS_FILE      # the same teacher and settings: the same pairs
        for name in a.variants:
            run = name if seed == 0 else f"{name}_seed{seed}"      # seed 0's runs keep their first names
            study_run = STUDY / f"{STUDY_ARM.get(name, '-')}_seed{seed}" / "final_model.pth"
            # reuse the study's run, except where this script ran seed 0 itself in chunks (its FD after 500 and 1000)
            if study_run.exists() and (name == "reg1" or seed > 0):
                if f"{run}/1500" not in cache:        # the study's run of these settings, through the command line
                    cache[f"{run}/1500"] = score(net, f_val, study_run)
                    print(f"{run}/1500", cache[f"{run}/1500"], flush=True)
                    cache_path.write_text(json.dumps(cache, indent=1))
                continue
            folder = OUT / run
            cfg = OneCallConfig(seed=0, **VARIANTS[name])
            if pairs_from.exists() and not (folder / PAIRS_FILE).exists() and not cfg.pairs_eta:
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(pairs_from, folder / PAIRS_FILE)
            for n in CHUNKS:
                key = f"{run}/{n}"
                if key in cache:
                    continue
                final = folder / "final_model.pth"
                t0 = time.time()
                onecall_train(teacher, loader, None if final.exists() else cfg, n, folder, heldout,
                              resume=final if final.exists() else None, progress=False)
                cache[key] = {**score(net, f_val, final), "wall_s": round(time.time() - t0, 1)}
                print(key, cache[key], flush=True)
                cache_path.write_text(json.dumps(cache, indent=1))


FINISH_T = (10, 25, 35, 50, 100, 150, 200)


def cmd_teacher(a) -> None:
    net, f_val = val_features()
    cache_path = OUT / "scores_teacher.json"
    OUT.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for seed in a.seeds:
        key = "teacher/ddim50_eta1" if seed == 0 else f"teacher_seed{seed}/ddim50_eta1"
        if key not in cache:
            G, _, sched = load_checkpoint(f"runs/flow_study/diffusion_seed{seed}/final_model.pth", device="cpu")
            x = sample(G, sched, n=256, image_size=32, seed=1000, sampler="ddim", steps=50, eta=1.0, clip_x0=True,
                       progress=False)
            f = extract_features(net, x.clamp(-1, 1))
            cache[key] = {"fd": frechet_distance(f, f_val), "kid": kid(f, f_val, seed=0)[0], "diversity": diversity(f)}
            print(key, cache[key], flush=True)
            cache_path.write_text(json.dumps(cache, indent=1))


def cmd_splits(a) -> None:
    """Real training X-rays (3 disjoint draws of 600) scored against the val and the test split: how far apart the
    two yardsticks stand before any model is involved, and each split's share of pneumonia."""
    net, f_val = val_features()
    cache_path = OUT / "scores_splits.json"
    OUT.mkdir(parents=True, exist_ok=True)
    d = {s: ImageDataset("pneumoniamnist", 32, split=s, return_labels=True) for s in ("train", "val", "test")}
    f_test = extract_features(net, d["test"].images)
    order = torch.randperm(len(d["train"].images), generator=torch.Generator().manual_seed(0))
    rows = {f"splits/{s}_pneumonia_share": {"value": d[s].labels.float().mean().item()} for s in d}
    for k in range(3):
        f = extract_features(net, d["train"].images[order[k * 600:(k + 1) * 600]])
        rows[f"splits/train600_{k}"] = {"fd_val": frechet_distance(f, f_val), "fd_test": frechet_distance(f, f_test)}
    cache_path.write_text(json.dumps(rows, indent=1))
    print(cache_path.read_text())


def cmd_finish(a) -> None:
    from diffgan_lib.sampling import OneCall
    net, f_val = val_features()
    cache_path = OUT / "scores_finish.json"
    OUT.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    tag = "" if a.arm == "onecall" else f"_{a.arm}"         # the study's arm whose generators are finished
    for seed in a.seeds:
        G, _, sched = load_checkpoint(f"runs/onecall_study/{a.arm}_seed{seed}/final_model.pth", device="cpu")
        teacher = load_checkpoint(f"runs/flow_study/diffusion_seed{seed}/final_model.pth", device="cpu")[0]
        students = [("student", 50), ("student", 100)] if a.arm == "onecall" else []
        for who, t in [("teacher", t) for t in FINISH_T] + students:
            key = f"finish{tag}_seed{seed}/t{t}" if who == "teacher" else f"finish_student_seed{seed}/t{t}"
            if key not in cache:
                g = torch.Generator().manual_seed(1000)                  # as sample(..., seed=1000) draws
                z = torch.randn((256, 1, 32, 32), generator=g)
                x = OneCall(G, teacher if who == "teacher" else G.unet, calls=2, t_finish=t).sample(G, z, g)
                f = extract_features(net, x.clamp(-1, 1))
                cache[key] = {"fd": frechet_distance(f, f_val), "diversity": diversity(f)}
                print(key, cache[key], flush=True)
                cache_path.write_text(json.dumps(cache, indent=1))


def cmd_table(a) -> None:
    cache = {}
    for path in sorted(OUT.glob("scores_*.json")):
        cache.update(json.loads(path.read_text()))
    rows = {k: v for k, v in cache.items() if "/" in k and not k.startswith(("finish_", "splits/"))}  # (teacher/ too)
    finish = {k: v for k, v in cache.items() if k.startswith("finish_")}
    splits = {k.split("/")[1]: v for k, v in cache.items() if k.startswith("splits/")}
    RESULTS.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "variants": VARIANTS, "rows": rows,
                                   "finish": finish, "splits": splits, "val_diversity": cache.get("val_diversity"),
                                   "machine": f"{platform.machine()}, torch {torch.__version__}"}, indent=1))
    for k, v in rows.items():
        print(f"{k:28s} FD {v['fd']:6.2f}  KID {v['kid']:.4f}  div {v['diversity']:.3f}  AUROC {v.get('auroc_max', '-')}")
    for k, v in finish.items():
        print(f"{k:28s} FD {v['fd']:6.2f}  div {v['diversity']:.3f}")
    for k, v in splits.items():
        print(f"{k:28s} {v}")
    print(f"wrote {RESULTS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "finish", "teacher", "splits", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="the teachers' seeds (run: default 0; finish and teacher: default 0 1 2)")
    p.add_argument("--arm", default="onecall", help="finish: the study's arm (onecall = weight 1, reg10 = weight 10, "
                   "both at G's lr 5e-6)")
    p.add_argument("variants", nargs="*", default=[])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if a.seeds is None:
        a.seeds = [0] if a.command == "run" else [0, 1, 2]
    torch.set_num_threads(a.threads)
    {"run": cmd_run, "finish": cmd_finish, "teacher": cmd_teacher, "splits": cmd_splits, "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
