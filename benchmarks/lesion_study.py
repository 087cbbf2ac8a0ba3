"""Has the shipped conditional phantom model learned lesions? A lesion detector reads its samples.

The phantoms know where their lesions are (``PhantomDataset.lesion_mask``), so a detector is easy to
train and to validate on phantoms it never saw:

1. **detector**: the small CNN of ``usefulness.Classifier`` (2 classes: no lesion / lesion) trained on
   --n-train real 32 px phantoms (``PhantomDataset(seed=11)``, half with a lesion) and tested on
   --n-test others (seed 12); its accuracy, sensitivity and specificity per contrast are recorded.
   A contrast classifier (3 classes, the same CNN and data) checks that each sample has the contrast
   asked for.
2. **samples**: ``data/pretrained/phantoms32_conditional.pth`` sampled with the command line's default
   (``sample(..., sampler="ddim", steps=50, eta=1, clip_x0=True, seed=0, batch_size=256)``, what
   ``python -m diffgan_lib sample --label L --guidance W -n N`` draws), --n samples for each of the six
   classes at each guidance scale in --guidance, all from the same noise (seed 0).
3. **rates**: the share of samples in which the detector finds a lesion, per requested class; for the
   three ``+lesion`` requests that is the rate at which a requested lesion appears, for ``ct``, ``t1``,
   ``t2`` the rate of an unrequested one. Target: >= 80 % requested, <= 10 % unrequested.
4. **same noise**: the mean |difference| between the samples of two requests from the same noise
   (``ct`` vs ``ct+lesion``, against ``ct`` vs ``t2``): how much the lesion token changes an image.
5. **variety**: the mean pairwise RMS distance among the samples of one request (``metrics.diversity``,
   in pixels and in a SimCLR feature net trained on --n-train real phantoms), next to the same for
   real phantoms of that class (seed 13): what guidance costs in variety.

    python benchmarks/lesion_study.py --threads 1 --write benchmarks/results/lesions.json

About 15-30 minutes on one thread of a busy 2-core CPU (28 min here, beside three other jobs: the two
classifiers and the feature net about 2 min, the 6 x 4 x 64 samples at DDIM-50 the rest). Everything is cached under --out
(default runs/lesions); run again, it only rebuilds the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffgan_lib import load_checkpoint, sample
from diffgan_lib.data import CONTRASTS, PHANTOM_CLASSES, PhantomDataset
from diffgan_lib.eval import diversity, train_feature_net
from diffgan_lib.eval.features import load_feature_net, save_feature_net
from diffgan_lib.eval.usefulness import Classifier, predict_proba, train_classifier

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data" / "pretrained" / "phantoms32_conditional.pth"
CLI_SAMPLER = dict(sampler="ddim", steps=50, eta=1.0, clip_x0=True, batch_size=256)   # `sample`'s defaults
TARGET = {"requested_min": 0.8, "unrequested_max": 0.1}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def machine() -> str:
    import platform
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def phantoms(n: int, seed: int):
    """n real 32 px phantoms (n, 1, 32, 32) in [-1, 1], their contrast (n,) and lesion (n,) labels."""
    ds = PhantomDataset(n=n, image_size=32, seed=seed, return_labels=True)
    x, lab = zip(*(ds[i] for i in range(n)))
    return (torch.stack(x), torch.tensor([d["contrast"] for d in lab]), torch.tensor([d["lesion"] for d in lab]))


def classifiers(out: Path, a) -> tuple[dict, dict]:
    """The lesion detector and the contrast classifier (cached), and their scores on held-out phantoms."""
    rec_path = out / "classifiers.json"
    nets = {"lesion": Classifier(1, 2), "contrast": Classifier(1, len(CONTRASTS))}
    if rec_path.exists():
        for name, net in nets.items():
            net.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True))
            net.eval()
        return nets, json.loads(rec_path.read_text())
    x, contrast, lesion = phantoms(a.n_train, seed=11)
    xt, ct, lt = phantoms(a.n_test, seed=12)
    rec = {"data": f"train: PhantomDataset(seed=11), {a.n_train} phantoms; test: PhantomDataset(seed=12), "
                   f"{a.n_test} phantoms; the generator was trained on seed 0", "epochs": a.epochs}
    for name, y, yt, k in (("lesion", lesion, lt, 2), ("contrast", contrast, ct, len(CONTRASTS))):
        t0 = time.time()
        nets[name] = train_classifier(x, y, k, epochs=a.epochs, seed=0)
        pred = torch.from_numpy(predict_proba(nets[name], xt).argmax(1))
        rec[name] = {"accuracy": float((pred == yt).float().mean()), "train_s": round(time.time() - t0, 1)}
        torch.save(nets[name].state_dict(), out / f"{name}.pt")
    pred = torch.from_numpy(predict_proba(nets["lesion"], xt).argmax(1))
    for k, c in enumerate(CONTRASTS):
        has, hasnt = (ct == k) & (lt == 1), (ct == k) & (lt == 0)
        rec["lesion"][c] = {"sensitivity": float((pred[has] == 1).float().mean()), "n_lesion": int(has.sum()),
                            "specificity": float((pred[hasnt] == 0).float().mean()), "n_clean": int(hasnt.sum())}
    write_json(rec_path, rec)
    return nets, rec


def feature_net(out: Path, a):
    path = out / "featurenet.pt"
    if path.exists():
        return load_feature_net(path)
    net = train_feature_net(phantoms(a.n_train, seed=11)[0], seed=0)
    save_feature_net(net, path, half=False)
    return net


def samples(out: Path, G, scheduler, k: int, w: float, n: int) -> torch.Tensor:
    """n samples of class k at guidance w (cached): (n, 1, 32, 32) in [-1, 1]."""
    path = out / "samples" / f"{PHANTOM_CLASSES[k]}_w{w:g}.pt"
    if not path.exists():
        t0 = time.time()
        x = sample(G, scheduler, n=n, image_size=32, labels=k, guidance_scale=w, seed=0, progress=False,
                   **CLI_SAMPLER).clamp(-1, 1).cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"x": x, "seconds": round(time.time() - t0, 1)}, path)
    return torch.load(path, weights_only=True)["x"]


def real_diversity(a, feats) -> dict:
    """The variety of real phantoms of each class (seed 13, --n per class), in pixels and features."""
    x, contrast, lesion = phantoms(max(12 * a.n, 256), seed=13)      # about twice --n of each class
    res = {}
    for k, name in enumerate(PHANTOM_CLASSES):
        xs = x[(2 * contrast + lesion) == k][: a.n]
        res[name] = {"pixels": diversity(xs), "features": diversity(xs, net=feats), "n": len(xs)}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/lesions"))
    p.add_argument("--write", help="also write the results JSON here (benchmarks/results/lesions.json)")
    p.add_argument("--threads", type=int, help="torch threads (1 when two jobs share a 2-core machine)")
    p.add_argument("--checkpoint", type=Path, default=MODEL, help="the conditional phantom model")
    p.add_argument("--n", type=int, default=64, help="samples per class and guidance scale (default 64)")
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0, 5.0])
    p.add_argument("--n-train", type=int, default=6144, help="real phantoms to train the classifiers (default 6144)")
    p.add_argument("--n-test", type=int, default=2048, help="held-out real phantoms to test them (default 2048)")
    p.add_argument("--epochs", type=int, default=15, help="epochs of each classifier (default 15)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    nets, clf = classifiers(a.out, a)
    feats = feature_net(a.out, a)
    G, _, scheduler = load_checkpoint(a.checkpoint)
    rates, contrast_ok, variety, changes = {}, {}, {}, {}
    for w in a.guidance:
        xs = {name: samples(a.out, G, scheduler, k, w, a.n) for k, name in enumerate(PHANTOM_CLASSES)}
        key = f"{w:g}"
        rates[key], contrast_ok[key], variety[key] = {}, {}, {}
        for k, (name, x) in enumerate(xs.items()):
            rates[key][name] = float((predict_proba(nets["lesion"], x).argmax(1) == 1).mean())
            contrast_ok[key][name] = float((predict_proba(nets["contrast"], x).argmax(1) == k // 2).mean())
            variety[key][name] = {"pixels": diversity(x), "features": diversity(x, net=feats)}
        lesion_req = [rates[key][n] for n in PHANTOM_CLASSES if n.endswith("+lesion")]
        clean_req = [rates[key][n] for n in PHANTOM_CLASSES if not n.endswith("+lesion")]
        rates[key]["requested"], rates[key]["unrequested"] = float(np.mean(lesion_req)), float(np.mean(clean_req))
        changes[key] = {f"{c} vs {c}+lesion": float((xs[c] - xs[f"{c}+lesion"]).abs().mean()) for c in CONTRASTS}
        changes[key]["ct vs t2"] = float((xs["ct"] - xs["t2"]).abs().mean())
    model = load_checkpoint(a.checkpoint)
    res = {"protocol": __doc__.split("    python benchmarks")[0].strip(), "machine": machine(),
           "checkpoint": str(a.checkpoint.resolve().relative_to(ROOT)) if a.checkpoint.resolve().is_relative_to(ROOT)
           else a.checkpoint.name, "model_steps": model.step,
           "model_recipe": {"adv_weight": model.config.adv_weight, "mean_path": model.config.mean_path},
           "sampler": "the command line's default: DDIM-50, eta 1, x0 clipped, EMA weights, noise seed 0",
           "n_per_class": a.n, "classifiers": clf, "lesion_rate": rates, "contrast_rate": contrast_ok,
           "mean_abs_change_same_noise": changes, "variety": variety, "real_variety": real_diversity(a, feats),
           "target": TARGET}
    res["target"]["passed"] = {w: r["requested"] >= TARGET["requested_min"] and r["unrequested"] <= TARGET["unrequested_max"]
                               for w, r in rates.items()}
    write_json(a.out / "lesions.json", res)
    if a.write:
        write_json(Path(a.write), res)
        print("wrote", a.write)
    print(f"detector: accuracy {clf['lesion']['accuracy']:.1%} on {a.n_test} held-out phantoms; contrast classifier "
          f"{clf['contrast']['accuracy']:.1%}")
    print("| w | " + " | ".join(PHANTOM_CLASSES) + " | requested | unrequested |\n|" + "---|" * 9)
    for w, r in rates.items():
        print(f"| {w} | " + " | ".join(f"{r[n]:.1%}" for n in (*PHANTOM_CLASSES, "requested", "unrequested")) + " |")


if __name__ == "__main__":
    main()
