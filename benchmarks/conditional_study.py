"""What are synthetic medical images for? Class control, usefulness and privacy of conditional models.

Four steps, all through the command line where a user would use it (``diffgan_lib.cli.main``):

* **guidance**: ``python -m diffgan_lib train --data phantoms --conditional --image-size 32 --base 32
  --batch-size 32 --max-steps 1500 --no-mean-path --adv-weight 0.01`` (plus ``--epochs 47``: 1024 phantoms / batch 32 = 32 steps an epoch,
  and the CLI's default 10 epochs would stop at step 320); an independent contrast classifier (the
  ``usefulness.Classifier``, 3 classes CT / T1 / T2) trained on 3072 real phantoms (seed 1) and tested
  on 1024 others (seed 2), where it must reach >= 98 %; then ``sample -n 64 --label L --guidance W``
  (the CLI's default sampler, ``FAST_SAMPLER``: DDIM-50, eta 1, x0 clipped, EMA weights, noise seed 0)
  for L in ct, t1, t2 and W in 0, 1, 3, 5, and the share of samples the classifier gives the requested
  contrast. Done when, at W = 3: >= 90 % on average and >= 80 % for each label.
* **tstr**: a conditional X-ray model (--checkpoint, default data/pretrained/xray32_conditional.pth),
  32 px PneumoniaMNIST. A synthetic set as large as the train split with its class balance
  (``usefulness.synthetic_set``, DDIM-50, eta 1, noise seed 0) for each guidance scale in
  --guidance-candidates (1 3); the scale whose synthetic-only classifier has the best balanced
  accuracy on the **val** split (mean over the seeds) is kept, then ``usefulness.tstr`` (real / synthetic /
  real + synthetic, seeds 0 1 2) on the **test** split. --guidance W skips the choice.
* **privacy**: the loss attack (``privacy.denoising_losses``: t = 20, 50, 100, 200, 4 fixed noises) on that
  model with the true class, on every image of the three splits (and with the "no class" token on val and
  a seeded 1048 of the members). Members = the images it was trained on (``training_members``: the train
  split, 4708); non-members = the val split (524), drawn like train (25.8 % normal in both), so that the
  two sets differ only in membership. Each loss is also standardised within its class
  (``membership.class_standardised``): the loss depends on the class, and a score that can see the class
  measures the class mix. AUROC and TPR at 1 % and 10 % FPR
  (524 non-members resolve down to 0.19 %), each with a 95 % bootstrap interval (1000 replicates,
  members and non-members resampled within each class; ``membership.membership_report``). Two controls:
  train vs test (the test split holds 37.5 % normal X-rays: the class mix differs) and val vs test (both
  non-members: any AUROC away from 0.5 is a difference between the splits, not membership). The positive
  control ``overfit_control`` (700 steps; --control-nonmembers unseen phantoms, 512 by default so that
  1 % FPR is resolved) must reach AUROC near 1. The per-image losses (true class) are kept in the file.
  The memorisation ratio (``metrics.memorisation``, pixels and xray_study's FeatureNet) of the synthetic set
  tstr kept (else 624 new samples at guidance 3) against all training images, held-out = the test split;
  closest_pairs.png shows the 8 closest samples (top) over their nearest training image (bottom);
  ``--memorisation-from FILE`` carries that block over from an earlier results file of the same model.
* **ship**: the two conditional models shipped in data/pretrained (float16 exports by
  ``python -m diffgan_lib.course export``, each <= 4.6 MB): phantoms for 3000 steps on fresh phantoms
  (--n-images 96000, one epoch), X-rays for 4 epochs (588 steps: the unconditional X-ray models scored best at
  4 epochs and got worse with longer training, see xray_study.py); last.pth every 250 steps.

    python benchmarks/conditional_study.py guidance --threads 1 --write benchmarks/results/guidance.json
    python benchmarks/conditional_study.py ship --threads 1 --models xray
    python benchmarks/conditional_study.py ship --threads 1 --models phantoms      # in parallel, on the other core
    python benchmarks/conditional_study.py tstr --threads 1 --write benchmarks/results/tstr.json
    python benchmarks/conditional_study.py privacy --threads 1 --write benchmarks/results/privacy.json

tstr and privacy need the X-ray model (ship --models xray, or --checkpoint); privacy reuses tstr's synthetic
set. Estimated on one thread of a busy 2-core CPU (0.5-1 s per training step, about 7 ms per image and network
evaluation when sampling): guidance 25-45 min (1500 steps, 12 x 64 samples in about 9 min, the classifier
75 s); ship 25-50 min for the phantom model (3000 steps), 5-10 min for the X-ray model (588); tstr 1.5-2 h (4708 samples at w = 1, 25 min, and at
w = 3, 50 min, which costs two evaluations each; 15 classifiers of 1-3.5 min); privacy about 20 min ((5856 + 1572) X-rays x 16 network evaluations).

Every step writes under --out (default runs/conditional) and skips what is on disk, so it can be stopped
and run again: a training run resumes from its newest interrupted.pth / last.pth / epoch_*.pth. Run again,
a finished step only prints its Markdown table. Smoke test (about 5 minutes on one busy core):

    python benchmarks/conditional_study.py guidance --max-steps 3 --n 4 --clf-n 256 --clf-epochs 1 --out /tmp/cs
    python benchmarks/conditional_study.py ship --ship-steps 3 --ship-epochs 1 --ship-n-images 64 \
        --ship-dir /tmp/cs/ship --out /tmp/cs
    python benchmarks/conditional_study.py tstr --checkpoint /tmp/cs/ship/xray32_conditional.pth --n-synth 64 \
        --clf-epochs 1 --out /tmp/cs
    python benchmarks/conditional_study.py privacy --checkpoint /tmp/cs/ship/xray32_conditional.pth \
        --control-steps 50 --control-nonmembers 64 --out /tmp/cs
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from diffgan_lib.data import CONTRASTS, ImageDataset
from diffgan_lib import PhantomDataset
from diffgan_lib import load_checkpoint
from diffgan_lib.engine import read_checkpoint, training_members
from diffgan_lib.eval import memorisation
from diffgan_lib.eval import auroc, denoising_losses, membership_inference, membership_report, overfit_control
from diffgan_lib.eval.privacy import attack_timesteps
from diffgan_lib.sampling import FAST_SAMPLER, save_image_grid
from diffgan_lib import to_unit
from diffgan_lib.eval.usefulness import Classifier, classifier_scores, predict_proba, train_classifier
from diffgan_lib.eval import synthetic_set, tstr, tstr_table

from fewstep_study import machine, timed_cli
from recipe_study import write_json
from xray_study import SIZE, feature_net

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "data" / "pretrained"
GUIDANCE = (0.0, 1.0, 3.0, 5.0)
LABELS = ("ct", "t1", "t2")                  # PHANTOM_CLASSES without a lesion; the classifier's CONTRASTS
MAX_MB = 4.6                                 # per shipped file, MiB (the 10k-step exports are 4.66 MiB)
FPRS = (0.01, 0.1)
warnings.filterwarnings("ignore", message="resized .* from their native size")   # PneumoniaMNIST: 28 -> 32 px


# ------------------------------------------------------------------------------------------ helpers
def resume_point(run: Path) -> Path | None:
    """The checkpoint of an unfinished run in ``run`` with the most steps, or None."""
    found = [p for p in (run / "interrupted.pth", run / "last.pth") if p.exists()] + sorted(run.glob("epoch_*.pth"))
    return max(found, key=lambda p: read_checkpoint(p)["step"], default=None)


def train_cli(run: Path, args: list[str], device: str | None) -> dict:
    """``python -m diffgan_lib ARGS --out RUN`` unless RUN/final_model.pth exists; continues an unfinished run.

    Returns RUN/train.json: the command, its wall time (summed over the pieces of a resumed run), steps.
    """
    record = run / "train.json"
    rec = json.loads(record.read_text()) if record.exists() else {"wall_s": 0.0, "pieces": 0}
    if not (run / "final_model.pth").exists():
        run.mkdir(parents=True, exist_ok=True)
        start = resume_point(run)
        extra = (["--resume", str(start)] if start else []) + (["--device", device] if device else [])
        print(f"{run}: training{f' from {start.name}' if start else ''} (log: {run / 'log.txt'})", flush=True)
        rec.update(command="python -m diffgan_lib " + " ".join(args + ["--out", str(run)]), machine=machine())
        t0 = time.time()
        try:                                          # an interrupted piece's time counts too
            timed_cli(args + ["--out", str(run)] + extra, run / "log.txt")
        finally:
            rec.update(wall_s=round(rec["wall_s"] + time.time() - t0, 1), pieces=rec["pieces"] + 1)
            write_json(record, rec)
    if "steps" not in rec:
        rec["steps"] = read_checkpoint(run / "final_model.pth")["step"]
        rec["s_per_step"] = round(rec["wall_s"] / rec["steps"], 3)
        write_json(record, rec)
    return rec


def settings(folder: Path, **values) -> None:
    """Record the settings of a step's cache in ``folder``; refuse to mix in results made with others."""
    path = folder / "settings.json"
    if path.exists() and json.loads(path.read_text()) != values:
        raise SystemExit(f"{folder} holds results made with {json.loads(path.read_text())}, not {values}: "
                         f"choose another --out or delete {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, values)


def model_id(path: Path) -> str:
    """The checkpoint's path and the start of its SHA-256: a cache made from another file is refused."""
    return f"{path.resolve()}#{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def phantoms(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real phantoms (n, 1, 32, 32) in [-1, 1] and their contrast (n,) int64, index into CONTRASTS."""
    ds = PhantomDataset(n=n, image_size=SIZE, seed=seed, return_labels=True)
    x, labels = zip(*(ds[i] for i in range(n)))
    return torch.stack(x), torch.tensor([lab["contrast"] for lab in labels])


def xray(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = ImageDataset("pneumoniamnist", SIZE, split=split, return_labels=True)
    return ds.images, ds.labels


def finish(res: dict, path: Path, write: str | None, table: str) -> None:
    write_json(path, res)
    if write:
        Path(write).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(write), res)
        print("wrote", write)
    print(table)


# ----------------------------------------------------------------------------------------- guidance
def contrast_classifier(out: Path, a) -> tuple[Classifier, dict]:
    """The CT / T1 / T2 classifier of real phantoms (seed 1), its accuracy on held-out ones (seed 2); cached."""
    path, rec_path = out / "contrast_classifier.pt", out / "contrast_classifier.json"
    if path.exists() and rec_path.exists():
        net = Classifier(1, len(CONTRASTS))
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval(), json.loads(rec_path.read_text())
    t0 = time.time()
    net = train_classifier(*phantoms(a.clf_n, seed=1), len(CONTRASTS), epochs=a.clf_epochs, seed=0)
    x, y = phantoms(a.clf_n // 3, seed=2)
    pred = predict_proba(net, x).argmax(1)
    rec = {"accuracy": float((pred == y.numpy()).mean()), "n_train": a.clf_n, "n_test": len(y),
           "per_class": {c: float((pred[y.numpy() == k] == k).mean()) for k, c in enumerate(CONTRASTS)},
           "epochs": a.clf_epochs, "train_s": round(time.time() - t0, 1),
           "data": "train: PhantomDataset(seed=1), test: PhantomDataset(seed=2); the generator saw seed 0"}
    torch.save(net.state_dict(), path)
    write_json(rec_path, rec)
    return net, rec


def cmd_guidance(a) -> None:
    out = a.out / "guidance"
    settings(out, max_steps=a.max_steps, n=a.n, clf_n=a.clf_n, clf_epochs=a.clf_epochs)
    epochs = -(-a.max_steps // (1024 // 32))        # the CLI's 1024 phantoms, batch 32: let --max-steps bind
    args = ["train", "--data", "phantoms", "--conditional", "--image-size", "32", "--base", "32", "--batch-size",
            "32", "--max-steps", str(a.max_steps), "--epochs", str(epochs), "--no-mean-path",
            "--adv-weight", "0.01"]   # as measured: the plain UNet and the hybrid, the defaults of the time
    trained = train_cli(out / "model", args, a.device)
    net, clf = contrast_classifier(out, a)
    if clf["accuracy"] < 0.98:
        print(f"WARNING: the contrast classifier reaches only {clf['accuracy']:.1%} < 98 % on held-out phantoms; "
              "its verdicts on samples are not to be trusted (raise --clf-n / --clf-epochs)")
    rates, predicted, walls = {}, {}, {}
    for w in GUIDANCE:
        for label in LABELS:
            d = out / "samples" / f"{label}_w{w:g}"
            if not (d / "samples.npy").exists():
                walls[f"{label}_w{w:g}"] = timed_cli(["sample", "--checkpoint", str(out / "model" / "final_model.pth"),
                                                      "-n", str(a.n), "--label", label, "--guidance", f"{w:g}",
                                                      "--out", str(d)] + (["--device", a.device] if a.device else []),
                                                     out / "sample_log.txt")
                write_json(d / "wall.json", {"sample_s": walls[f"{label}_w{w:g}"]})
            walls[f"{label}_w{w:g}"] = json.loads((d / "wall.json").read_text())["sample_s"]
            x = torch.from_numpy(np.load(d / "samples.npy")) * 2 - 1
            pred = predict_proba(net, x).argmax(1)
            rates.setdefault(f"{w:g}", {})[label] = float((pred == CONTRASTS.index(label)).mean())
            predicted.setdefault(f"{w:g}", {})[label] = {c: int((pred == k).sum()) for k, c in enumerate(CONTRASTS)}
        rates[f"{w:g}"]["mean"] = float(np.mean([rates[f"{w:g}"][lab] for lab in LABELS]))
    at3 = rates.get("3", {})
    res = {"protocol": __doc__.split("* **guidance**: ")[1].split("* **tstr**")[0].replace("\n ", ""),
           "machine": machine(), "train": trained, "classifier": clf, "n_per_label": a.n,
           "sampler": "CLI default: DDIM-50, eta 1, x0 clipped, EMA weights, noise seed 0", "rates": rates,
           "predicted_counts": predicted, "sample_s": walls,
           "done_when": {"mean_at_3": at3.get("mean"), "min_at_3": min(at3[lab] for lab in LABELS),
                         "passed": at3["mean"] >= 0.9 and min(at3[lab] for lab in LABELS) >= 0.8
                         and clf["accuracy"] >= 0.98}}
    rows = ["| guidance w | CT | T1 | T2 | mean |", "|---|---|---|---|---|"]
    rows += [f"| {w} | " + " | ".join(f"{r[k]:.1%}" for k in (*LABELS, "mean")) + " |" for w, r in rates.items()]
    rows.append(f"\nShare of {a.n} samples per label that the contrast classifier (accuracy {clf['accuracy']:.1%} on "
                f"{clf['n_test']} held-out real phantoms) gives the requested contrast; model: {trained['steps']} "
                f"steps in {trained['wall_s']:.0f} s. Done when (w = 3: mean >= 90 %, each >= 80 %): "
                f"{'passed' if res['done_when']['passed'] else 'NOT passed'}.")
    finish(res, out / "guidance.json", a.write, "\n".join(rows))


# --------------------------------------------------------------------------------------------- tstr
def xray_model(a):
    path = a.checkpoint or PRETRAINED / "xray32_conditional.pth"
    if not path.exists():
        raise SystemExit(f"{path} is missing: make it with `python benchmarks/conditional_study.py ship --models xray`"
                         " or pass --checkpoint")
    loaded = load_checkpoint(path, device=a.device)
    if not loaded.config or loaded.config.class_names != ("normal", "pneumonia"):
        raise SystemExit(f"{path} is not a conditional PneumoniaMNIST model (train --data pneumoniamnist "
                         "--conditional)")
    return path, loaded


def synthetic(out: Path, G, scheduler, real_y, n: int, w: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The guided synthetic set for scale w, cached as out/synthetic_w{w}.pt: (x, y, sampling seconds)."""
    path = out / f"synthetic_w{w:g}.pt"
    if not path.exists():
        t0 = time.time()
        x, y = synthetic_set(G, scheduler, real_y, n, SIZE, guidance_scale=w, seed=0, steps=FAST_SAMPLER["steps"],
                             eta=FAST_SAMPLER["eta"], batch_size=64)
        torch.save({"x": x, "y": y, "sample_s": round(time.time() - t0, 1), "guidance": w}, path)
    d = torch.load(path, weights_only=True)
    return d["x"], d["y"], d["sample_s"]


def cmd_tstr(a) -> None:
    out = a.out / "tstr"
    path, (G, _, scheduler) = xray_model(a)
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = xray("train"), xray("val"), xray("test")
    n = a.n_synth or len(y_tr)
    settings(out, checkpoint=model_id(path), n_synth=n, clf_epochs=a.clf_epochs, seeds=a.seeds)
    select_path = out / "select.json"
    select = json.loads(select_path.read_text()) if select_path.exists() else {}
    for w in ([a.guidance] if a.guidance is not None else a.guidance_candidates):
        if f"{w:g}" not in select:
            x_s, y_s, secs = synthetic(out, G, scheduler, y_tr, n, w)
            runs = [classifier_scores(predict_proba(train_classifier(x_s, y_s, 2, epochs=a.clf_epochs, seed=s), x_val),
                                      y_val.numpy()) for s in a.seeds]
            select[f"{w:g}"] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]} | {"sample_s": secs}
            write_json(select_path, select)
    chosen = a.guidance if a.guidance is not None else max(
        a.guidance_candidates, key=lambda w: (select[f"{w:g}"]["balanced_accuracy"], select[f"{w:g}"]["auroc"]))
    res_path = out / f"tstr_w{chosen:g}.json"
    if res_path.exists():
        res = json.loads(res_path.read_text())
    else:
        x_s, y_s, secs = synthetic(out, G, scheduler, y_tr, n, chosen)
        t0 = time.time()
        res = tstr(x_tr, y_tr, x_s, y_s, x_te, y_te, seeds=tuple(a.seeds), epochs=a.clf_epochs)
        res.update(guidance=chosen, selection_on_val=select, checkpoint=str(path), n_synthetic=n, sample_s=secs,
                   tstr_s=round(time.time() - t0, 1), machine=machine(),
                   class_counts={"real_train": torch.bincount(y_tr).tolist(), "synthetic": torch.bincount(y_s).tolist(),
                                 "test": torch.bincount(y_te).tolist()},
                   protocol=__doc__.split("* **tstr**: ")[1].split("* **privacy**")[0].replace("\n ", ""))
    write_json(out / "chosen.json", {"guidance": chosen, "checkpoint": model_id(path)})
    sel = ", ".join(f"w = {w}: {v['balanced_accuracy']:.3f}" for w, v in select.items())
    finish(res, res_path, a.write, tstr_table(res) + f" (PneumoniaMNIST test split); synthetic: {n} images at guidance "
           f"{chosen:g}, chosen by the synthetic-only balanced accuracy on val ({sel})")


# ------------------------------------------------------------------------------------------ privacy
def split_losses(out: Path, G, scheduler, splits: dict, no_class: bool) -> dict:
    """{split: (N,) denoising losses} of every image of each split, true class or "no class"; cached."""
    path = out / f"losses_{'no_class' if no_class else 'true_labels'}.json"
    got = json.loads(path.read_text()) if path.exists() else {}
    for name, (x, y) in splits.items():
        if name not in got:
            t0 = time.time()
            loss = denoising_losses(G, scheduler, x, labels=None if no_class else y)
            got[name] = {"loss": loss.tolist(), "seconds": round(time.time() - t0, 1)}
            write_json(path, got)
    return {name: np.array(v["loss"]) for name, v in got.items()}


def report(loss_in, loss_out, y_in=None, y_out=None) -> dict:
    return membership_report(loss_in, loss_out, y_in, y_out, fprs=FPRS, n_boot=1000, seed=0)


def memorisation_block(a, out: Path, G, scheduler, path: Path, pool_x, pool_y, idx, x_te) -> dict:
    """The nearest-neighbour check of the tstr step's synthetic set (or --memorisation-from an earlier file)."""
    if a.memorisation_from:
        prev = json.loads(Path(a.memorisation_from).read_text())
        kept = {k: v for k, v in prev["memorisation"].items() if k not in ("figure", "carried_from")}
        return kept | {"carried_from": f"{Path(a.memorisation_from).name}, made from the same checkpoint by this "
                                       "step's earlier protocol (its figure is not kept)"}
    chosen = a.out / "tstr" / "chosen.json"
    same = chosen.exists() and json.loads(chosen.read_text())["checkpoint"] == model_id(path)
    w = json.loads(chosen.read_text())["guidance"] if same else 3.0
    if same:
        x_s = torch.load(a.out / "tstr" / f"synthetic_w{w:g}.pt", weights_only=True)["x"]
        what = f"the tstr step's synthetic set ({len(x_s)} images, guidance {w:g})"
    else:
        x_s, _ = synthetic_set(G, scheduler, pool_y[idx], len(x_te), SIZE, guidance_scale=w, seed=0)
        what = f"{len(x_s)} new samples, guidance {w:g}, the training class balance"
    mem = memorisation(x_s, pool_x[idx], x_te, net=feature_net(a.xray_out), k_closest=8)
    pairs = torch.cat([x_s[mem["closest_sample"]], pool_x[idx][mem["closest_train"]]])
    save_image_grid(to_unit(pairs), out / "closest_pairs.png", nrow=len(mem["closest_sample"]))
    res = {k: mem[k] for k in ("nn_ratio", "feature_nn_ratio", "fraction_close", "feature_fraction_close",
                               "nn_sample_median", "nn_heldout_median")}
    return res | dict(samples=what, training_images=len(idx), heldout="test split (624)",
                      closest_distance=mem["closest_distance"], figure="closest_pairs.png in the step's --out folder")


def cmd_privacy(a) -> None:
    out = a.out / "privacy_val"
    path, (G, _, scheduler) = xray_model(a)
    settings(out, checkpoint=model_id(path), control_steps=a.control_steps, control_nonmembers=a.control_nonmembers)
    members = training_members(path)
    if members is None or members["source"] != "pneumoniamnist" or members.get("split", "train") != "train":
        raise SystemExit(f"{path} does not record PneumoniaMNIST's train split as its training images (members: "
                         f"{members}); train it with this diffgan_lib through `train --data pneumoniamnist`")
    pool_x, pool_y = xray("train")
    idx = torch.tensor(members["indices"])
    splits = {"train": (pool_x[idx], pool_y[idx]), "val": xray("val"), "test": xray("test")}
    y = {s: v[1].numpy() for s, v in splits.items()}
    res_path = out / "attack.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    t0 = time.time()
    loss = split_losses(out, G, scheduler, splits, no_class=False)
    pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:2 * len(splits["val"][1])]
    loss_nc = split_losses(out, G, scheduler, {"train": (pool_x[idx[pick]], pool_y[idx[pick]]), "val": splits["val"]},
                           no_class=True)
    res["attack_s"] = res.get("attack_s") or round(time.time() - t0, 1)
    res["members_vs_val"] = report(loss["train"], loss["val"], y["train"], y["val"])
    res["members_vs_val_no_class"] = report(loss_nc["train"], loss_nc["val"], y["train"][pick.numpy()], y["val"])
    res["members_vs_test"] = report(loss["train"], loss["test"], y["train"], y["test"])
    res["val_vs_test"] = report(loss["val"], loss["test"], y["val"], y["test"])
    every = np.concatenate([loss[s] for s in splits])
    every_y = np.concatenate([y[s] for s in splits])
    res["class_alone"] = {"auroc_normal_by_higher_loss": auroc(every, every_y == 0), "n": len(every),
                          "mean_loss": {s: {c: float(loss[s][y[s] == k].mean()) for k, c in enumerate(("normal", "pneumonia"))}
                                        for s in splits},
                          "share_normal": {s: float((y[s] == 0).mean()) for s in splits}}
    if "control" not in res:
        ctrl = overfit_control(steps=a.control_steps, n_nonmembers=a.control_nonmembers)
        r = membership_inference(ctrl.G, ctrl.scheduler, ctrl.members, ctrl.nonmembers)
        res["control"] = report(r["member_loss"], r["nonmember_loss"]) | {
            "train_s": round(ctrl.seconds, 1), "steps": a.control_steps, "timesteps": r["timesteps"],
            "setup": f"32 phantoms at 16 px over-fitted by a base-8 UNet (T = 50); {a.control_nonmembers} unseen phantoms"}
    if "memorisation" not in res:
        res["memorisation"] = memorisation_block(a, out, G, scheduler, path, pool_x, pool_y, idx, splits["test"][0])
    write_json(res_path, res)
    res.update(checkpoint=path.name, machine=machine(), timesteps=attack_timesteps(scheduler.T), n_noise=4,
               members_record={k: v for k, v in members.items() if k != "indices"},
               losses={s: {"loss": [round(float(v), 6) for v in loss[s]], "label": y[s].tolist()} for s in splits},
               protocol=__doc__.split("* **privacy**: ")[1].split("* **ship**")[0].replace("\n ", ""))
    finish(res, out / "privacy.json", a.write, privacy_table(res))


def privacy_table(res: dict) -> str:
    ci = lambda r, k: f"{r[k]['value']:.3f} [{r[k]['ci95'][0]:.3f}, {r[k]['ci95'][1]:.3f}]"
    rows = ["| attack | members | non-members | AUROC [95 % CI] | class-standardised AUROC | TPR at 1 % FPR | "
            "TPR at 10 % FPR |", "|---|---|---|---|---|---|---|"]
    for key, name in (("members_vs_val", "train vs val, true class"), ("members_vs_val_no_class", "train vs val, no class"),
                      ("members_vs_test", "train vs test (class mix differs)"),
                      ("val_vs_test", "val vs test (both non-members)"), ("control", "positive control (over-fitted)")):
        r = res[key]
        std = ci(r, "auroc_standardised") if "auroc_standardised" in r else "—"
        rows.append(f"| {name} | {r['n_members']} | {r['n_nonmembers']} | {ci(r, 'auroc')} | {std} | "
                    f"{ci(r, 'tpr_at_0.01')} | {ci(r, 'tpr_at_0.1')} |")
    m = res["memorisation"]
    rows.append(f"\nMemorisation ({m['samples']} vs {m['training_images']} training images, held-out: "
                f"{m['heldout']}): NN ratio {m['nn_ratio']:.3f} in pixels, {m['feature_nn_ratio']:.3f} in features "
                f"(about 1: no copying); share closer than the 5 % nearest held-out: {m['fraction_close']:.3f} / "
                f"{m['feature_fraction_close']:.3f} (about 0.05 for fresh samples).")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------- ship
def cmd_ship(a) -> None:
    from diffgan_lib.course import main as course
    base = ["train", "--conditional", "--image-size", "32", "--base", "32", "--batch-size", "32", "--save-every", "250",
            "--no-mean-path", "--adv-weight", "0.01"]   # the shipped files predate the mean path and pure default
    fresh = ["--n-images", str(32 * a.ship_steps), "--epochs", "1", "--max-steps", str(a.ship_steps)]
    recipes = {"phantoms": ("phantoms32_conditional", base + ["--data", "phantoms"] + fresh),
               "xray": ("xray32_conditional", base + ["--data", "pneumoniamnist", "--epochs", str(a.ship_epochs)]
                        + (["--n-images", str(a.ship_n_images)] if a.ship_n_images else []))}
    rows = ["| file | steps | wall | s / step | size | training command |", "|---|---|---|---|---|---|"]
    for key in a.models:
        name, args = recipes[key]
        run, dest = a.out / "ship" / name, a.ship_dir / f"{name}.pth"
        rec = train_cli(run, args, a.device)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            course(["export", str(run / "final_model.pth"), "--out", str(dest)])
        rec.update(export=f"python -m diffgan_lib.course export {run / 'final_model.pth'} --out {dest}",
                   bytes=dest.stat().st_size, mib=round(dest.stat().st_size / 2**20, 3))
        write_json(run / "train.json", rec)
        if rec["mib"] > MAX_MB:
            print(f"WARNING: {dest} is {rec['mib']} MiB, over the {MAX_MB} MiB budget")
        rows.append(f"| {dest.name} | {rec['steps']} | {rec['wall_s'] / 60:.1f} min | {rec['s_per_step']} | "
                    f"{rec['mib']} MiB | `{rec['command']}` |")
    print("\n".join(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("guidance", "tstr", "privacy", "ship"))
    p.add_argument("--out", type=Path, default=Path("runs/conditional"))
    p.add_argument("--write", help="also write the step's results JSON here (e.g. benchmarks/results/guidance.json)")
    p.add_argument("--threads", type=int, help="torch threads (1 when two jobs share a 2-core machine)")
    p.add_argument("--device", help="passed to train / sample (default: the best one here)")
    p.add_argument("--max-steps", type=int, default=1500, help="guidance: training steps (default 1500)")
    p.add_argument("--n", type=int, default=64, help="guidance: samples per label and scale (default 64)")
    p.add_argument("--clf-n", type=int, default=3072, help="guidance: real phantoms to train the contrast classifier "
                   "(a third as many test it; default 3072)")
    p.add_argument("--clf-epochs", type=int, default=20, help="epochs of every classifier (guidance, tstr; default 20)")
    p.add_argument("--checkpoint", type=Path, help="tstr, privacy: the conditional X-ray model "
                   "(default data/pretrained/xray32_conditional.pth)")
    p.add_argument("--guidance", type=float, help="tstr: use this scale instead of choosing on val")
    p.add_argument("--guidance-candidates", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--n-synth", type=int, help="tstr: synthetic images (default: as many as the train split, 4708)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="tstr: classifier seeds (default 0 1 2)")
    p.add_argument("--control-nonmembers", type=int, default=512, help="privacy: unseen phantoms of the positive "
                   "control (default 512: resolves 1 %% FPR)")
    p.add_argument("--memorisation-from", help="privacy: take the memorisation block from this earlier results file "
                   "of the same model (e.g. benchmarks/results/privacy.json) instead of recomputing it")
    p.add_argument("--control-steps", type=int, default=700, help="privacy: steps of the over-fitted control")
    p.add_argument("--xray-out", type=Path, default=ROOT / "runs" / "xray",
                   help="xray_study's --out, where its FeatureNet is cached (default: the repository's runs/xray)")
    p.add_argument("--models", nargs="+", default=["phantoms", "xray"], choices=("phantoms", "xray"))
    p.add_argument("--ship-steps", type=int, default=3000, help="ship: phantom model steps (default 3000)")
    p.add_argument("--ship-epochs", type=int, default=4, help="ship: X-ray model epochs (default 4)")
    p.add_argument("--ship-n-images", type=int, help="ship: keep the first N X-rays (smoke tests only)")
    p.add_argument("--ship-dir", type=Path, default=PRETRAINED, help="ship: where the exports go (data/pretrained)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    {"guidance": cmd_guidance, "tstr": cmd_tstr, "privacy": cmd_privacy, "ship": cmd_ship}[a.command](a)


if __name__ == "__main__":
    main()
