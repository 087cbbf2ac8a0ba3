"""Where does a GAN pay? An adversarial few-step generator against diffusion given the same extra compute.

Protocol (the yardstick of benchmarks/xray_study.py): 32 px PneumoniaMNIST, one SimCLR-CNN
FeatureNet trained once on the train split, 256 samples (noise seed 1000) scored by FD / KID in its
features and SWD (x 1e3) on 7x7 patches against the **test** split; diversity in features (real
test images: the same number for real images) and the memorisation ratio (median distance of each
sample to its nearest training image over the same for held-out val images; about 1 = no copying).

For each seed, from the *same* teacher (the seed's hybrid with the plain UNet, trained
4 epochs through train(), as
``xray_study.py train`` makes it, in runs/xray/seed{S}_e4/final_model.pth), three arms, all through
the command line (``diffgan_lib.cli.main``):
  * **continued_pure** : ``train --resume TEACHER --epochs 8 --adv-weight 0``: 4 more epochs of pure
    diffusion (more wall time than either fine-tune), sampled with DDIM-4 at eta 0 and 1, and DDIM-10
    and -50 at eta 1 (the better eta: benchmarks/xray_study.py); the control;
  * **continued**: the same with the default hybrid's adversarial term on x̂0 left on (for the record:
    on these X-rays it made the model worse, see the README);
  * **regression**: ``fewstep --init TEACHER --levels K --max-steps 300 --adv-weight 0``: the
    K-level fine-tune without a discriminator (what specialising to K levels alone buys);
  * **adversarial**: the same with ``--adv-weight 1`` (DDGAN-style pair discriminator);
and, since continuing made these models worse, the teacher itself sampled with DDIM-4.
The wall time of every arm is recorded (one thread per process; two processes share the 2 cores).

    python benchmarks/fewstep_study.py run --seeds 0 1 2 --levels 4 --threads 1
    python benchmarks/fewstep_study.py run --seeds 0 --levels 2 1 --threads 1
    python benchmarks/fewstep_study.py phantoms --threads 1     # teacher: data/pretrained/phantoms32_pure_10k.pth
    python benchmarks/fewstep_study.py score --threads 1
    python benchmarks/fewstep_study.py table --write benchmarks/results/fewstep_study.json

Every step skips what is already on disk under --out (default runs/fewstep), so the study can be
stopped and continued. The phantom arm has no "continued" control (the shipped teacher is a
sampling-only export without optimiser state); its DDIM rows are the teacher's own.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from diffgan_lib import PhantomDataset
from diffgan_lib import load_checkpoint
from diffgan_lib.cli import main as cli
from diffgan_lib.eval import extract_features, train_feature_net
from diffgan_lib.eval import diversity, memorisation
from diffgan_lib import sample

from recipe_study import stack, write_json
from xray_study import SIZE, feature_net, score, split

STEPS = 300
PHANTOM_TEACHER = Path(__file__).resolve().parents[1] / "data" / "pretrained" / "phantoms32_pure_10k.pth"
DDIM = [(4, 0.0), (4, 1.0), (10, 1.0), (50, 1.0)]   # 256 samples of DDIM-50 cost ~10 CPU-minutes here


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def timed_cli(args: list[str], log: Path) -> float:
    """Run the command line with its output in ``log``; returns the wall time. Exit status != 0 raises."""
    t0 = time.time()
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        status = cli(args)
    if status != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {status}; see {log}")
    return round(time.time() - t0, 1)


def arm(out: Path, name: str, args: list[str], meta: dict) -> None:
    """One training arm into out/name, skipped when its final_model.pth exists; writes out/name/arm.json."""
    run = out / name
    if (run / "final_model.pth").exists():
        print(f"{run}: done already")
        return
    run.mkdir(parents=True, exist_ok=True)
    wall = timed_cli(args + ["--out", str(run), "--device", "cpu"], run / "log.txt")
    write_json(run / "arm.json", {**meta, "wall_s": wall, "command": "python -m diffgan_lib " + " ".join(args),
                                  "machine": machine()})
    print(f"{run}: {wall:.0f} s", flush=True)


def fewstep_args(teacher: Path, data: str, levels: int, adv: float, seed: int) -> list[str]:
    return ["fewstep", "--init", str(teacher), "--data", data, "--levels", str(levels), "--max-steps", str(STEPS),
            "--batch-size", "32", "--adv-weight", f"{adv:g}", "--seed", str(seed)]


def cmd_run(a) -> None:
    for seed in a.seeds:
        teacher = a.teachers / f"seed{seed}_e4" / "final_model.pth"
        if not teacher.exists():
            raise SystemExit(f"{teacher} is missing: run `python benchmarks/xray_study.py train --seeds {seed}` first")
        if 4 in a.levels or a.continued:
            arm(a.out, f"xray_s{seed}_continued_pure",
                ["train", "--resume", str(teacher), "--data", "pneumoniamnist", "--epochs", "8", "--batch-size", "32",
                 "--adv-weight", "0"], {"arm": "continued_pure", "seed": seed, "data": "pneumoniamnist"})
            if not a.pure_only:
                arm(a.out, f"xray_s{seed}_continued",
                    ["train", "--resume", str(teacher), "--data", "pneumoniamnist", "--epochs", "8", "--batch-size", "32"],
                    {"arm": "continued", "seed": seed, "data": "pneumoniamnist"})
        if a.pure_only:
            continue
        for levels in a.levels:
            for adv, kind in ((0.0, "regression"), (1.0, "adversarial")):
                arm(a.out, f"xray_s{seed}_k{levels}_{kind}", fewstep_args(teacher, "pneumoniamnist", levels, adv, seed),
                    {"arm": kind, "seed": seed, "levels": levels, "data": "pneumoniamnist"})


def cmd_phantoms(a) -> None:
    for adv, kind in ((0.0, "regression"), (1.0, "adversarial")):
        arm(a.out, f"phantoms_s0_k4_{kind}", fewstep_args(PHANTOM_TEACHER, "phantoms", 4, adv, 0),
            {"arm": kind, "seed": 0, "levels": 4, "data": "phantoms"})


class Yardstick:
    """The reference sets and FeatureNet of one dataset, and scoring of a sample set against them."""

    def __init__(self, data: str, out: Path):
        if data == "pneumoniamnist":
            self.net = feature_net(out.parent / "xray")
            self.train, self.test, self.val = split("train"), split("test"), split("val")
        else:   # the recipe study's phantom yardstick (benchmarks/eval_pretrained.py)
            self.train = stack(PhantomDataset(n=2048, image_size=SIZE, seed=0), 2048)
            held = stack(PhantomDataset(n=512, image_size=SIZE, seed=123), 512)
            self.test, self.val = held[:256], held[256:]
            self.net = train_feature_net(self.train, seed=0, progress=False)
        self.f_test = extract_features(self.net, self.test)

    def score(self, x: torch.Tensor) -> dict:
        """xray_study's FD, KID and SWD against the test set, plus feature diversity and memorisation ratios."""
        mem = memorisation(x, self.train, self.val, net=self.net, k_closest=0)
        return {**score(x, self.test, self.net, self.f_test),
                "diversity_feature": diversity(extract_features(self.net, x)),
                "nn_ratio": mem["nn_ratio"], "feature_nn_ratio": mem["feature_nn_ratio"]}

    def real(self) -> dict:
        """The real-vs-real line: 256 val images scored like a sample set (diversity: the test set's own)."""
        return {**score(self.val[:256], self.test, self.net, self.f_test), "diversity_feature": diversity(self.f_test)}


def samplers_for(run: Path) -> dict:
    """name -> sample() keyword arguments: DDIM grid for a diffusion model, its own levels for a few-step one."""
    if "_continued" in run.name or run.name.startswith("teacher"):
        return {f"ddim{s}_eta{e:g}": dict(sampler="ddim", steps=s, eta=e, clip_x0=True) for s, e in DDIM}
    return {"own": {}}


def cmd_score(a) -> None:
    (a.out / "scores").mkdir(parents=True, exist_ok=True)
    sticks = {}
    runs = sorted(p.parent for p in a.out.glob("*/final_model.pth"))
    teachers = {"teacher_phantoms": PHANTOM_TEACHER}
    teachers.update({f"teacher_xray_s{s}": a.teachers / f"seed{s}_e4" / "final_model.pth" for s in (0, 1, 2)})
    for name, ckpt in list(teachers.items()) + [(r.name, r / "final_model.pth") for r in runs]:
        if not ckpt.exists():
            continue
        data = "phantoms" if "phantoms" in name else "pneumoniamnist"
        res_path = a.out / "scores" / f"{name}.json"
        done = json.loads(res_path.read_text()) if res_path.exists() else {}
        todo = {k: v for k, v in samplers_for(Path(name)).items() if k not in done
                and v.get("steps", 0) <= a.max_ddim_steps}
        if not todo:
            continue
        if data not in sticks:
            sticks[data] = Yardstick(data, a.out)
        G, _, sched = loaded = load_checkpoint(ckpt, device="cpu")
        for key, kw in todo.items():
            t0 = time.time()
            x = sample(G, sched, n=a.n, image_size=SIZE, seed=1000, progress=False, **kw).clamp(-1, 1)
            wall = time.time() - t0
            evals = G.n_levels if loaded.kind == "fewstep" else kw["steps"]
            done[key] = {**sticks[data].score(x), "evaluations": evals, "s_per_image": wall / a.n}
            write_json(res_path, done)
            print(f"{name} {key}: FD {done[key]['fd']:.3f} ({evals} evaluations, {wall:.1f} s)", flush=True)
    for data in ("pneumoniamnist", "phantoms"):
        path = a.out / "scores" / f"real_{data}.json"
        if not path.exists():
            stick = sticks.get(data) or Yardstick(data, a.out)
            write_json(path, stick.real())


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def cmd_table(a) -> None:
    scores = {p.stem: json.loads(p.read_text()) for p in (a.out / "scores").glob("*.json")}
    arms = {p.parent.name: json.loads(p.read_text()) for p in a.out.glob("*/arm.json")}
    ran_on = sorted({m["machine"] for m in arms.values()})
    res = {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "machine": "; ".join(ran_on) + " (this project's "
           "2-core CPU, shared by up to five jobs)", "steps": STEPS,
           "real_vs_real": {d: scores.get(f"real_{d}") for d in ("pneumoniamnist", "phantoms")},
           "arms": arms, "scores": {k: v for k, v in scores.items() if not k.startswith("real_")}}
    seeds = sorted({m["seed"] for n, m in arms.items() if n.startswith("xray") and m.get("levels", 4) == 4
                    and m["arm"] == "adversarial"})
    rows = {}     # row label -> list of per-seed score dicts (4 levels, X-rays)
    for s in seeds:
        for arm_name, label in (("continued_pure", "pure diffusion continued"), ("continued", "default hybrid continued")):
            for key, v in scores.get(f"xray_s{s}_{arm_name}", {}).items():
                rows.setdefault(f"{label}, {key}", []).append(v)
        for key, v in scores.get(f"teacher_xray_s{s}", {}).items():
            rows.setdefault(f"the teacher itself (4 epochs), {key}", []).append(v)
        for kind in ("regression", "adversarial"):
            if f"xray_s{s}_k4_{kind}" in scores:
                rows.setdefault(f"{kind}, 4 levels", []).append(scores[f"xray_s{s}_k4_{kind}"]["own"])
    res["headline"] = {label: {m: _mean_sd([v[m] for v in vs]) for m in ("fd", "kid", "swd", "diversity_feature",
                                                                           "nn_ratio", "s_per_image")} | {"n_seeds": len(vs)}
                       for label, vs in rows.items()}
    paired = []
    for s in seeds:
        adv, reg = (scores.get(f"xray_s{s}_k4_{k}", {}).get("own") for k in ("adversarial", "regression"))
        cont = scores.get(f"xray_s{s}_continued_pure", {})
        ddim4 = min((cont[k] for k in ("ddim4_eta0", "ddim4_eta1") if k in cont), key=lambda v: v["fd"], default=None)
        own = scores.get(f"teacher_xray_s{s}", {})
        teacher4 = min((own[k] for k in ("ddim4_eta0", "ddim4_eta1") if k in own), key=lambda v: v["fd"], default=None)
        if adv and reg and ddim4:
            paired.append({"seed": s, "adversarial_fd": adv["fd"], "regression_fd": reg["fd"], "ddim4_best_fd": ddim4["fd"],
                           "teacher_ddim4_best_fd": teacher4["fd"] if teacher4 else None,
                           "adv_over_ddim4": adv["fd"] / ddim4["fd"], "adv_beats_regression": adv["fd"] < reg["fd"],
                           "ddim10_eta1_fd": cont.get("ddim10_eta1", {}).get("fd")})
    res["paired"] = paired
    rr = (scores.get("real_pneumoniamnist") or {}).get("fd")
    print(f"real vs real FD (val 256 vs test): {rr}")
    print("| arm (X-rays, 4 levels unless said) | evaluations | FD ↓ | KID ↓ | SWD ↓ | diversity | NN ratio | ms / image |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in res["headline"].items():
        ev = "4" if "levels" in label else label.split("ddim")[1].split("_")[0]
        print(f"| {label} ({r['n_seeds']} seeds) | {ev} | {r['fd']['mean']:.2f} ± {r['fd']['sd']:.2f} | "
              f"{r['kid']['mean']:.4f} | {r['swd']['mean']:.2f} | {r['diversity_feature']['mean']:.3f} | "
              f"{r['nn_ratio']['mean']:.2f} | {1e3 * r['s_per_image']['mean']:.1f} |")
    for p in paired:
        print(f"seed {p['seed']}: adversarial FD {p['adversarial_fd']:.2f} = {p['adv_over_ddim4']:.2f}x the continued "
              f"pure model's best DDIM-4 ({p['ddim4_best_fd']:.2f}); regression {p['regression_fd']:.2f}")
    for name in sorted(scores):
        if name.startswith(("xray_s0_k2", "xray_s0_k1", "phantoms", "teacher_phantoms")):
            for key, v in scores[name].items():
                print(f"{name} {key}: FD {v['fd']:.3f}, KID {v['kid']:.4f}, SWD {v['swd']:.2f}")
    if a.write:
        write_json(Path(a.write), res)
        print("wrote", a.write)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "phantoms", "score", "table"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--levels", type=int, nargs="+", default=[4])
    p.add_argument("--continued", action="store_true", help="run: also the continued-diffusion arms when --levels lacks 4")
    p.add_argument("--pure-only", action="store_true", help="run: only the pure-diffusion continued arm")
    p.add_argument("--out", type=Path, default=Path("runs/fewstep"))
    p.add_argument("--teachers", type=Path, default=Path("runs/xray"), help="xray_study.py's --out (the teachers)")
    p.add_argument("--threads", type=int)
    p.add_argument("--n", type=int, default=256, help="samples per set (default 256)")
    p.add_argument("--max-ddim-steps", type=int, default=50, help="score: skip DDIM sets with more steps (time)")
    p.add_argument("--write", help="table: write the collected results as JSON here")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    {"run": cmd_run, "phantoms": cmd_phantoms, "score": cmd_score, "table": cmd_table}[a.command](a)


if __name__ == "__main__":
    main()
