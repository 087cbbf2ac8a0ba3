"""The one-call generator against the teacher's own samplers and against the same fine-tune without its GAN term.

Protocol (the yardstick of benchmarks/flow_study.py, whose diffusion runs are the teachers): 32 px
PneumoniaMNIST; the teacher of seed S is ``runs/flow_study/diffusion_seed{S}/final_model.pth``, the course's
default recipe trained 4 epochs through the command line. For each seed, through the command line:
  * **onecall** (``--reg-weight 1``: the GAN term on the teacher's features + the regression of the 4x4-pooled
    layout onto the teacher's DDIM-25 image of the same latent, at weight 1): ``fewstep --init TEACHER --data
    pneumoniamnist --levels 1 --max-steps N --batch-size 32 --reg-weight 1 --lr 5e-6``, continued in chunks of 250 steps to
    1500 (a resume is exact), scored after every chunk: the FD curve;
  * **reg3** and **reg10** (``--reg-weight 3`` and ``10``): the regression weighted 3 and 10, the steps up found on
    the val tuning (``onecall_tune.py``), 1500 steps; weight 10 is the command's default weight because it beat
    3 and 1 on every seed here; **reg30** (``--reg-weight 30``), the next step up on val, 1500 steps (worse than weight 10
    on every test seed, so it got no control);
  * **reg10_lr2e-5** (``--reg-weight 10 --lr 2e-5``): G's learning rate 2e-5 instead of 5e-6 (the arms above pin
    ``--lr 5e-6``), chosen on the val X-rays over the three teachers (``onecall_tune.py run reg10_lr2e-5 --seeds 0 1
    2``: the runs here are copies of those, which are bit-identical to the command line's, so this arm records
    no wall time);
  * **reg10_lr4e-5** (``--reg-weight 10 --lr 4e-5``): the next step up, ahead of 2e-5 on val on every teacher;
    copies of the tuning runs like the arm above; the command's default;
  * **control**, **control3**, **control10**, **control10_lr2e-5** and **control10_lr4e-5** (``--adv-weight 0``
    at regression weight 1, 3 and 10, and at 10 with lr 2e-5 and 4e-5: the regression alone; D still trains and is
    measured but gives G no gradient): what the GAN term adds, 1500 steps;
  * **gan** (``--reg-weight 0 --lr 5e-6``: the GAN term alone), in chunks like onecall: what the regression adds;
  * **rangeonly** (``--adv-weight 0 --reg-weight 0 --lr 5e-6``: nothing moves G but the range penalty), 1500 steps;
the teacher pairs (2048 latents, about 3 min) are made once per seed and reused by its other arms;
  * **more calls** (``calls``): each seed's one-call generator at 1500 steps (and the control, the GAN alone and the
    teacher read once with no fine-tune), its image re-noised to t = 50 and finished by its own teacher in 1 or 3
    DDIM steps: 2 and 4 network calls (``sample --steps 2|4``);
the teacher's own samplers at 1, 2, 4 and 50 calls (DDIM at eta 0 and 1, DPM-Solver++(2M)) come from
``runs/flow_study/scores.json`` (same feature net, test split and noise seed). 256 samples (noise seed 1000),
EMA weights; FD and KID in data/pretrained/xray32_featurenet.pt against the 624 test X-rays, diversity in
those features (real test images for scale) and the memorisation ratio (median distance of each sample to
its nearest training image over the same for the val images: about 1 = no copying); D's held-out AUROC
(the run's history) beside every score.

    python benchmarks/onecall_study.py run --seeds 0 1 2 [--arms onecall control gan rangeonly]
    python benchmarks/onecall_study.py reads              # each teacher read once at t* = 400 before any fine-tune
    python benchmarks/onecall_study.py calls              # the one-call runs at 2 and 4 calls (the teacher finishes)
    python benchmarks/onecall_study.py cli                # `sample -n 256` at its defaults (noise seed 0): default arm, control, teacher
    python benchmarks/onecall_study.py shipped --cache scores_shipped.json   # the shipped xray32_onecall.pth (--freeze encoder), 1 and 2 calls, and its teacher
    python benchmarks/onecall_study.py table              # -> benchmarks/results/onecall_study.json

Every step skips what is on disk (``runs/onecall_study/``), so a stopped study continues.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from diffgan_lib import load_checkpoint, sample
from diffgan_lib.cli import main as cli
from diffgan_lib.course import PRETRAINED_XRAY_FEATURES
from diffgan_lib.data import ImageDataset
from diffgan_lib.engine.config import OneCallConfig
from diffgan_lib.engine.pairs import PAIRS_FILE
from diffgan_lib.eval import diversity, extract_features, frechet_distance, kid, load_feature_net, memorisation

OUT, TEACHERS = Path("runs/onecall_study"), Path("runs/flow_study")
RESULTS = Path(__file__).resolve().parent / "results" / "onecall_study.json"
CHUNK, STEPS = 250, 1500
CURVE = range(CHUNK, STEPS + 1, CHUNK)
LR0 = ["--lr", "5e-6"]      # G's learning rate of the arms measured first, pinned
ARMS = {"onecall": (["--reg-weight", "1", *LR0], CURVE),
        "control": (["--adv-weight", "0", "--reg-weight", "1", *LR0], [STEPS]),
        "gan": (["--reg-weight", "0", *LR0], CURVE), "rangeonly": (["--adv-weight", "0", "--reg-weight", "0", *LR0], [STEPS]),
        "reg3": (["--reg-weight", "3", *LR0], [STEPS]), "control3": (["--adv-weight", "0", "--reg-weight", "3", *LR0], [STEPS]),
        "reg10": (["--reg-weight", "10", *LR0], [STEPS]),
        "control10": (["--adv-weight", "0", "--reg-weight", "10", *LR0], [STEPS]),
        "reg30": (["--reg-weight", "30", *LR0], [STEPS]),
        "reg10_lr2e-5": (["--reg-weight", "10", "--lr", "2e-5"], [STEPS]),
        "control10_lr2e-5": (["--adv-weight", "0", "--reg-weight", "10", "--lr", "2e-5"], [STEPS]),
        "reg10_lr4e-5": (["--reg-weight", "10", "--lr", "4e-5"], [STEPS]),
        "control10_lr4e-5": (["--adv-weight", "0", "--reg-weight", "10", "--lr", "4e-5"], [STEPS])}
FT = ["--data", "pneumoniamnist", "--levels", "1", "--batch-size", "32"]
FINISHED = [arm for arm in ARMS if arm != "rangeonly"]     # arms also scored at 2 and 4 calls (the range penalty alone
                                                           # draws no image worth finishing)


def weight(args: list[str], name: str) -> float:
    """An arm's --adv-weight, --reg-weight or --lr (``name`` adv_weight / reg_weight / lr_G), else the command's
    default."""
    flag = "--lr" if name == "lr_G" else f"--{name.replace('_', '-')}"
    return float(args[args.index(flag) + 1]) if flag in args else getattr(OneCallConfig(), name)


def lr_text(lr: float) -> str:
    """5e-06 -> '5e-6', as the arms' flags write it."""
    return f"{lr:.0e}".replace("e-0", "e-")


def arm_label(arm: str) -> str:
    """What an arm runs, from its flags: e.g. "GAN + pooled regression at weight 10, G's lr 5e-6 (--reg-weight 10 ...)"."""
    args = ARMS[arm][0]
    adv, reg = weight(args, "adv_weight"), weight(args, "reg_weight")
    what = ("range penalty alone" if not (adv or reg) else "GAN alone" if not reg else
            f"{'GAN + pooled regression' if adv else 'control: regression alone'} at weight {reg:g}")
    return f"{what}, G's lr {lr_text(weight(args, 'lr_G'))} ({' '.join(args)})"


def is_default(arm: str) -> bool:
    """The arm runs the command's defaults (adv and reg weight, G's learning rate)."""
    return all(weight(ARMS[arm][0], w) == getattr(OneCallConfig(), w) for w in ("adv_weight", "reg_weight", "lr_G"))


class Yardstick:
    def __init__(self):
        self.net = load_feature_net(PRETRAINED_XRAY_FEATURES)
        split = lambda s: ImageDataset("pneumoniamnist", 32, split=s).images          # noqa: E731
        self.test, self.train, self.val = split("test"), split("train"), split("val")
        self.f_test = extract_features(self.net, self.test)

    def score(self, x: torch.Tensor) -> dict:
        f = extract_features(self.net, x)
        mem = memorisation(x, self.train, self.val)
        return {"fd": frechet_distance(f, self.f_test), "kid": kid(f, self.f_test, seed=0)[0],
                "diversity": diversity(f), "nn_ratio": mem["nn_ratio"]}


def scored(ys, cache: dict, key: str, ckpt: Path) -> None:
    if key in cache:
        return
    loaded = load_checkpoint(ckpt, device="cpu")
    G, _, sched = loaded
    t0 = time.time()
    x = sample(G, sched, n=256, image_size=32, seed=1000, progress=False).clamp(-1, 1)
    auc = [v for v in loaded.history.get("auroc", []) if v == v]
    cache[key] = {**ys.score(x), "step": loaded.step, "sample_s": round(time.time() - t0, 2),
                  "auroc_max": max(auc) if auc else None, "auroc_last": auc[-1] if auc else None}
    print(key, cache[key], flush=True)


def finetune(folder: Path, teacher: Path, steps: int, extra=()) -> float:
    """Run (or continue) the fine-tune in ``folder`` to ``steps`` in total; returns its wall time."""
    final = folder / "final_model.pth"
    resume = ["--resume", str(final)] if final.exists() else []
    t0 = time.time()
    status = cli(["fewstep", "--init", str(teacher), *FT, "--max-steps", str(steps), "--out", str(folder),
                  *resume, *extra])
    if status:
        raise SystemExit(f"fewstep exited {status} in {folder}")
    return time.time() - t0


def cmd_run(a) -> None:
    ys, cache_path = Yardstick(), OUT / (a.cache or "scores.json")
    OUT.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cache.setdefault("real_test_diversity", diversity(ys.f_test))
    walls = cache.setdefault("wall_s", {})
    for seed in a.seeds:
        teacher = TEACHERS / f"diffusion_seed{seed}" / "final_model.pth"
        for arm in a.arms:
            extra, steps = ARMS[arm]
            folder = OUT / f"{arm}_seed{seed}"
            made = OUT / f"onecall_seed{seed}" / PAIRS_FILE
            if weight(extra, "reg_weight") > 0 and made.exists() and not (folder / PAIRS_FILE).exists():
                folder.mkdir(parents=True, exist_ok=True)        # the same teacher, seed and settings: the same pairs
                shutil.copy(made, folder / PAIRS_FILE)
            for n in steps:
                key = f"{arm}_seed{seed}/{n}"
                if key not in cache:
                    walls[key] = round(finetune(folder, teacher, n, extra), 1)
                    scored(ys, cache, key, folder / "final_model.pth")
                    cache_path.write_text(json.dumps(cache, indent=1))
    cache_path.write_text(json.dumps(cache, indent=1))


def cmd_reads(a) -> None:
    """Each teacher read once at t* = 400 before any fine-tune (step 0): where the one-call runs start."""
    import copy
    from diffgan_lib.core.onecall import OneCallGenerator
    ys, cache_path = Yardstick(), OUT / (a.cache or "scores.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for seed in a.seeds:
        key = f"read_seed{seed}/0"
        if key not in cache:
            unet, _, sched = load_checkpoint(TEACHERS / f"diffusion_seed{seed}" / "final_model.pth", device="cpu")
            G = OneCallGenerator(copy.deepcopy(unet), sched, OneCallConfig().t_star).eval()
            x = sample(G, sched, n=256, image_size=32, seed=1000, progress=False).clamp(-1, 1)
            cache[key] = {**ys.score(x), "step": 0}
            print(key, cache[key], flush=True)
    cache_path.write_text(json.dumps(cache, indent=1))


def cmd_calls(a) -> None:
    """Each seed's generators at 2 and 4 network calls: G(z), re-noised to t = 50, finished by its teacher
    (``sample(..., steps=k, teacher=...)``), the same noise seed as every other row. G: the one-call run at 1500
    steps, the same with the regression alone (control) or the GAN term alone, and the teacher read once at
    t* = 400 with no fine-tune (what the teacher's finish does on its own)."""
    import copy
    from diffgan_lib.core.onecall import OneCallGenerator
    ys, cache_path = Yardstick(), OUT / (a.cache or "scores.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for seed in a.seeds:
        teacher, _, sched = load_checkpoint(TEACHERS / f"diffusion_seed{seed}" / "final_model.pth", device="cpu")
        for arm in (*FINISHED, "read"):
            ckpt = OUT / f"{arm}_seed{seed}" / "final_model.pth"
            if arm != "read" and not ckpt.exists():
                continue
            G = (OneCallGenerator(copy.deepcopy(teacher), sched, OneCallConfig().t_star).eval() if arm == "read"
                 else load_checkpoint(ckpt, device="cpu")[0])
            for calls in (2, 4):
                key = f"calls{calls}_{arm}_seed{seed}/{0 if arm == 'read' else STEPS}"
                if key not in cache:
                    t0 = time.time()
                    x = sample(G, sched, n=256, image_size=32, seed=1000, steps=calls, teacher=teacher, progress=False)
                    cache[key] = {**ys.score(x.clamp(-1, 1)), "sample_s": round(time.time() - t0, 2)}
                    print(key, cache[key], flush=True)
                    cache_path.write_text(json.dumps(cache, indent=1))


def cmd_cli(a) -> None:
    """The issue's test as a user runs it: ``sample --checkpoint CKPT -n 256`` with every other option at its
    default (noise seed 0, not the study's 1000) for each seed's teacher, its one-call generator with the command's
    defaults and that generator's control, scored like every other row."""
    import numpy as np
    default = next(arm for arm in ARMS if is_default(arm))
    control = next(arm for arm in ARMS if weight(ARMS[arm][0], "adv_weight") == 0 and all(
        weight(ARMS[arm][0], w) == weight(ARMS[default][0], w) for w in ("reg_weight", "lr_G")))
    ys, cache_path = Yardstick(), OUT / (a.cache or "scores_cli.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for seed in a.seeds:
        for who, ckpt in (("teacher", TEACHERS / f"diffusion_seed{seed}"), (default, OUT / f"{default}_seed{seed}"),
                          (control, OUT / f"{control}_seed{seed}")):
            key = f"cli_seed{seed}/{who}"
            if key not in cache:
                out = OUT / "cli_samples" / f"{who}_seed{seed}"
                if cli(["sample", "--checkpoint", str(ckpt / "final_model.pth"), "-n", "256", "--out", str(out)]):
                    raise SystemExit(f"sample failed for {ckpt}")
                x = torch.from_numpy(np.load(out / "samples.npy")) * 2 - 1            # [0, 1] -> [-1, 1]
                cache[key] = ys.score(x)
                print(key, cache[key], flush=True)
                cache_path.write_text(json.dumps(cache, indent=1))


def cmd_shipped(a) -> None:
    """Score the shipped one-call X-ray model (made from the shipped teacher with --freeze encoder) in one and two
    calls, and its teacher's own samplers."""
    from diffgan_lib.course import PRETRAINED_ONECALL_XRAY, PRETRAINED_XRAY
    from diffgan_lib.engine import load_teacher
    ys, cache_path = Yardstick(), OUT / (a.cache or "scores.json")
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    scored(ys, cache, "shipped/onecall", PRETRAINED_ONECALL_XRAY)
    if "shipped/onecall_2calls" not in cache:
        G, _, sched = load_checkpoint(PRETRAINED_ONECALL_XRAY, device="cpu")
        x = sample(G, sched, n=256, image_size=32, seed=1000, steps=2, teacher=load_teacher(PRETRAINED_ONECALL_XRAY),
                   progress=False)
        cache["shipped/onecall_2calls"] = ys.score(x.clamp(-1, 1))
        print("shipped/onecall_2calls", cache["shipped/onecall_2calls"], flush=True)
    G, _, sched = load_checkpoint(PRETRAINED_XRAY, device="cpu")
    for steps in (1, 4, 50):
        key = f"shipped/teacher_ddim{steps}_eta1"
        if key not in cache:
            x = sample(G, sched, n=256, image_size=32, seed=1000, sampler="ddim", steps=steps, eta=1.0, clip_x0=True,
                       progress=False)
            cache[key] = ys.score(x.clamp(-1, 1))
            print(key, cache[key], flush=True)
    cache_path.write_text(json.dumps(cache, indent=1))


def _ms(values):
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def cmd_table(a) -> None:
    cache = {}
    for path in sorted(OUT.glob("scores*.json")):        # one per process that ran seeds side by side
        part = json.loads(path.read_text())
        cache.update({k: v for k, v in part.items() if k != "wall_s"})
        cache.setdefault("wall_s", {}).update(part.get("wall_s", {}))
    teacher = json.loads((TEACHERS / "scores.json").read_text())
    seeds = sorted({int(k.split("_seed")[1].split("/")[0]) for k in cache
                    if k.split("_seed")[0] in ARMS and "/" in k})           # every seed any arm has
    rows = {}
    labels = {arm: arm_label(arm) for arm in ARMS}
    finished = {arm: labels[arm].split(" (--")[0] + f", {STEPS} steps" for arm in FINISHED} | {
                "read": "the teacher read once at t* = 400, 0 steps"}
    more = [(f"{what}, finished by the teacher from t = 50: {k} calls", f"calls{k}_{arm}_seed{{s}}/{0 if arm == 'read' else STEPS}", k)
            for arm, what in finished.items() for k in (2, 4)]
    for label, key, calls in [("the teacher read once at t* = 400, 0 steps", "read_seed{s}/0", 1)] + [
            (f"{labels[arm]}, {n} steps", f"{arm}_seed{{s}}/{n}", 1) for arm, (_, steps) in ARMS.items() for n in steps] + more:
        got = [cache[key.format(s=s)] for s in seeds if key.format(s=s) in cache]
        if got:
            rows[label] = {m: _ms([g[m] for g in got]) for m in ("fd", "kid", "diversity", "nn_ratio", "auroc_max")
                           if all(g.get(m) is not None for g in got)} | {
                "calls": calls, "seeds": len(got), "seed_list": [s for s in seeds if key.format(s=s) in cache]}
    for how in ("ddim_eta0", "ddim_eta1", "dpm++2m"):
        for n in (1, 2, 4, 50):
            got = [teacher[f"diffusion_seed{s}/{how}/{n}"] for s in seeds if f"diffusion_seed{s}/{how}/{n}" in teacher]
            if got:
                rows[f"teacher, {how}, {n} call{'s' * (n > 1)}"] = {"fd": _ms([g["fd"] for g in got]), "kid": _ms([g["kid"] for g in got]),
                                                      "calls": n, "seeds": len(got)}
    shipped = {k.split("/")[1]: v for k, v in cache.items() if k.startswith("shipped/")}
    by_cli = {k: v for k, v in cache.items() if k.startswith("cli_seed")}     # `sample -n 256` at its defaults
    arms = {}                               # arm -> its rows at 1, 2 and 4 calls, for readers of this file
    for arm in (*ARMS, "read"):
        keys = {"1": f"{labels[arm]}, {STEPS} steps" if arm in labels else finished[arm]} | {
            str(k): f"{finished.get(arm)}, finished by the teacher from t = 50: {k} calls" for k in (2, 4)}
        args = ARMS[arm][0] if arm in ARMS else []
        weights = {w: weight(args, w) for w in ("adv_weight", "reg_weight", "lr_G")} if arm in ARMS else {}
        default = arm in ARMS and is_default(arm)                                                    # the command's
        arms[arm] = {"label": labels[arm] if arm in labels else finished[arm], "args": " ".join(args) or None, **weights,
                     "default": default,
                     **{k: key for k, key in keys.items() if key in rows}}
    out = Path(a.out) if a.out else RESULTS
    out.write_text(json.dumps({"shipped": shipped, "cli": by_cli, "arms": arms,
        "protocol": __doc__.split("\n\n")[1], "seeds": seeds, "rows": rows, "real_vs_real": teacher["real_vs_real"],
        "real_test_diversity": cache["real_test_diversity"], "wall_s": cache.get("wall_s", {}),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"}, indent=1))
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "reads", "calls", "cli", "shipped", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arms", nargs="+", default=["onecall", "control"], choices=tuple(ARMS))
    p.add_argument("--out", help="table: the results file (default benchmarks/results/onecall_study.json)")
    p.add_argument("--cache", help="run: the scores file under runs/onecall_study/ (default scores.json); give each "
                   "of two processes running different seeds side by side its own, e.g. scores_seed2.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"run": cmd_run, "reads": cmd_reads, "calls": cmd_calls, "cli": cmd_cli, "shipped": cmd_shipped,
     "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
