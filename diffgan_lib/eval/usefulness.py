"""What synthetic images are for: train on synthetic, test on real (TSTR; Esteban et al. 2017).

A generator is useful for a task when a model trained on its images does that task on *real*
images. :func:`tstr` trains the same small CNN classifier three times, on

- ``"real"``: the real training images (the reference),
- ``"synthetic"``: the synthetic images only (TSTR proper),
- ``"real+synthetic"``: both (augmentation),

and tests every one on the same held-out *real* test split, for several seeds: accuracy, balanced
accuracy (the mean recall over classes, so a classifier that always says "pneumonia" on a 3:1 set
scores 0.5, not 0.75) and AUROC, each as mean and sd over the seeds. Synthetic close to real on
these numbers means the samples carry what tells the classes apart; far below means they do not
(or carry it only for some classes). :func:`synthetic_set` draws a synthetic set with the real
training labels' class balance from a class-conditional model (classifier-free guidance).

Images are (N, C, S, S) float in [-1, 1]; labels (N,) int64 class indices in [0, K).
AUROC (:func:`auroc`, from ``core.auroc``) is computed by ranks (Mann-Whitney U), ties counting one half, with no
scikit-learn: AUROC = P(score of a random positive > score of a random negative).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.auroc import auroc
from ..core.device import pick_device
from ..sampling import sample
from .features import as_images

__all__ = ["Classifier", "train_classifier", "predict_proba", "auroc", "balanced_accuracy", "classifier_scores",
           "matched_counts", "synthetic_set", "tstr", "tstr_table", "ARMS", "SCORES"]

ARMS = ("real", "synthetic", "real+synthetic")
SCORES = ("accuracy", "balanced_accuracy", "auroc")


# ------------------------------------------------------------------------------------------ scores
def balanced_accuracy(y_true, y_pred) -> float:
    """The mean over the classes present in ``y_true`` of the share of that class predicted right (recall)."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true ({y_true.size}) and y_pred ({y_pred.size}) must be equally long and not empty")
    return float(np.mean([(y_pred[y_true == k] == k).mean() for k in np.unique(y_true)]))


def classifier_scores(proba, y) -> dict:
    """Accuracy, balanced accuracy and AUROC of class probabilities ``proba`` (N, K) for labels ``y`` (N,).

    AUROC: binary (K = 2) from the positive class's probability proba[:, 1]; K > 2 one-vs-rest,
    the unweighted (macro) mean over the classes present in ``y``.
    """
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y).reshape(-1)
    pred = proba.argmax(axis=1)
    if proba.shape[1] == 2:
        area = auroc(proba[:, 1], y == 1)
    else:
        area = float(np.mean([auroc(proba[:, k], y == k) for k in np.unique(y)]))
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": balanced_accuracy(y, pred), "auroc": area}


# -------------------------------------------------------------------------------------- classifier
class Classifier(nn.Module):
    """x: (B, C, S, S) in [-1, 1] -> logits (B, K). S >= 8.

    Three blocks (3x3 conv, GroupNorm, SiLU, 2x2 max pooling) of ``width``, 2 ``width``, 4 ``width``
    channels, then the spatial mean and a linear layer: about 25 k parameters at width 16, small
    enough to train in seconds on a CPU at 32 px, so that differences come from the data.
    """

    def __init__(self, in_ch: int = 1, num_classes: int = 2, width: int = 16):
        super().__init__()
        chans = [in_ch, width, 2 * width, 4 * width]
        self.features = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.SiLU(),
                          nn.MaxPool2d(2)) for i in range(3)])
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _labels(y, n: int, name: str) -> torch.Tensor:
    y = torch.as_tensor(y).reshape(-1)
    if y.numel() != n or y.is_floating_point() or (n and int(y.min()) < 0):
        raise ValueError(f"{name} must hold {n} integer class indices >= 0 (one per image), got "
                         f"{y.numel()} of dtype {y.dtype}")
    return y.long()


def train_classifier(x, y, num_classes: int, epochs: int = 20, batch_size: int = 32, lr: float = 2e-3,
                     seed: int = 0, device=None) -> Classifier:
    """A :class:`Classifier` trained on images x (N, C, S, S) in [-1, 1] with labels y (N,) in [0, K).

    Adam on the cross-entropy, ``epochs`` passes in an order drawn from ``seed`` (which also seeds
    the weights, leaving the caller's global random state alone); returned in eval mode.
    """
    x = as_images(x, "x")
    y = _labels(y, len(x), "y")
    dev = pick_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Classifier(x.shape[1], num_classes).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(net(x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict_proba(net: nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K), float64 numpy, of images x (N, C, S, S) in [-1, 1] (softmax of the logits)."""
    x = as_images(x, "x")
    dev = next(net.parameters()).device
    return torch.cat([F.softmax(net(xb.to(dev)).float(), dim=1).cpu() for xb in x.split(batch_size)]).double().numpy()


# ------------------------------------------------------------------------------------ synthetic set
def matched_counts(real_y, n: int, num_classes: int | None = None) -> list[int]:
    """How many of ``n`` synthetic images each class gets so that they keep the class shares of ``real_y``.

    Largest remainder: class k gets floor(n p_k), and the images left over go to the largest
    fractional parts (ties to the lower class index); the counts sum to n exactly.
    """
    y = torch.as_tensor(real_y).reshape(-1)
    y = _labels(y, y.numel(), "real_y")
    K = num_classes or int(y.max()) + 1
    if not len(y) or int(y.max()) >= K or not isinstance(n, int) or n < 0:
        raise ValueError(f"real_y needs at least one label, all below num_classes={K}, and n={n!r} must be an int >= 0")
    share = np.bincount(y.numpy(), minlength=K)[:K] / len(y) * n
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def synthetic_set(G, scheduler, real_y, n: int, image_size: int, guidance_scale: float = 3.0, seed: int = 0,
                  steps: int = 50, eta: float = 1.0, batch_size: int | None = 64, device=None,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """n images from a class-conditional G with the class balance of ``real_y``: (x, y).

    x: (n, C, S, S) in [-1, 1] (clamped), y: (n,) int64, class k repeated ``matched_counts(real_y, n)[k]``
    times. One call of ``sampling.sample`` with those labels, classifier-free guidance ``guidance_scale``
    (0 unconditional, 1 conditional, 3 usual) and DDIM with ``steps`` and ``eta`` (the course's fast
    default: 50 steps, eta 1); the same ``seed`` gives the same set.
    """
    K = getattr(G, "num_classes", 0)
    if not K:
        raise ValueError("synthetic_set needs a class-conditional model (train --conditional, or "
                         "TrainConfig(class_names=...)); this one is unconditional")
    y = torch.repeat_interleave(torch.arange(K), torch.tensor(matched_counts(real_y, n, K)))
    x = sample(G, scheduler, n=n, image_size=image_size, device=device, sampler="ddim", steps=steps, eta=eta,
               seed=seed, labels=y, guidance_scale=guidance_scale, batch_size=batch_size, clip_x0=True,
               progress=progress)
    return x.clamp(-1, 1).float().cpu(), y


# ------------------------------------------------------------------------------------------- TSTR
def _summary(values: list[float]) -> dict:
    """mean, sd (sample sd, ddof 1; 0 for one value) and the values themselves."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "values": v.tolist()}


def tstr(real_train, real_train_y, synth, synth_y, real_test, real_test_y, seeds=(0, 1, 2), epochs: int = 20,
         batch_size: int = 32, lr: float = 2e-3, device=None, progress: bool = True) -> dict:
    """Train on real / synthetic / both, test on real: the usefulness of synthetic images for a classifier.

    Images (N, C, S, S) in [-1, 1], one shape for all three sets; labels (N,) int64 in [0, K),
    K = the largest label + 1. For each arm in ``ARMS`` and each seed, :func:`train_classifier` for
    ``epochs`` passes over that arm's own training set (so "real+synthetic" takes more steps), then
    :func:`classifier_scores` on (real_test, real_test_y). The same seed gives every arm the same
    initial weights. Returns {arm: {score: {"mean", "sd", "values"}, "n_train": int}} for the
    arms and SCORES, plus "n_test", "num_classes", "seeds", "epochs". :func:`tstr_table` prints it.
    """
    sets = {"real_train": real_train, "synth": synth, "real_test": real_test}
    x = {k: as_images(v, k) for k, v in sets.items()}
    if not x["real_train"].shape[1:] == x["synth"].shape[1:] == x["real_test"].shape[1:]:
        raise ValueError("real_train, synth and real_test must have one image shape, got "
                         + ", ".join(str(tuple(v.shape[1:])) for v in x.values()) + "; resize them")
    given = {"real_train": real_train_y, "synth": synth_y, "real_test": real_test_y}
    y = {k: _labels(v, len(x[k]), f"{k}_y") for k, v in given.items()}
    K = max(int(v.max()) for v in y.values()) + 1
    if len(torch.unique(y["real_test"])) < 2:
        raise ValueError("real_test_y holds one class only, so AUROC and balanced accuracy say nothing; "
                         "test on a split with every class")
    data = {"real": (x["real_train"], y["real_train"]), "synthetic": (x["synth"], y["synth"]),
            "real+synthetic": (torch.cat([x["real_train"], x["synth"]]), torch.cat([y["real_train"], y["synth"]]))}
    out = {"n_test": len(x["real_test"]), "num_classes": K, "seeds": list(seeds), "epochs": epochs}
    bar = tqdm(total=len(ARMS) * len(seeds), desc="TSTR classifiers", unit="net", leave=False, disable=not progress)
    for arm in ARMS:
        runs = []
        for seed in seeds:
            bar.update(1)
            net = train_classifier(*data[arm], K, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
            runs.append(classifier_scores(predict_proba(net, x["real_test"]), y["real_test"].numpy()))
        out[arm] = {s: _summary([r[s] for r in runs]) for s in SCORES} | {"n_train": len(data[arm][0])}
    bar.close()
    return out


def tstr_table(result: dict) -> str:
    """The result of :func:`tstr` as a Markdown table: one row per arm, "mean ± sd" per score, 3 decimals."""
    lines = ["| trained on | n train | " + " | ".join(SCORES) + " |", "|---|---|" + "---|" * len(SCORES)]
    for arm in ARMS:
        r = result[arm]
        lines.append(f"| {arm} | {r['n_train']} | "
                     + " | ".join(f"{r[s]['mean']:.3f} ± {r[s]['sd']:.3f}" for s in SCORES) + " |")
    return "\n".join(lines) + f"\n\ntested on {result['n_test']} real images, {len(result['seeds'])} seeds"
