"""Quality measures for generated images that work offline: FD, KID, SWD, diversity, memorisation.

All images are (N, C, H, W) float in [-1, 1], the course's one convention; values far outside
(uint8, [0, 255]) raise ValueError. Features come from :mod:`diffgan_lib.features`: a small CNN
trained on the training images themselves (no download), so we say "FD in SimCLR-CNN features",
never "FID". :func:`evaluate` returns every number below in one dict; :func:`real_vs_real_baseline`
returns the same dict for held-out *real* images in place of samples: the floor a model can reach.

| key                   | what it measures                                  | units              | better    |
|-----------------------|---------------------------------------------------|--------------------|-----------|
| ``fd``                | Fréchet distance of Gaussians fitted to features  | standardised feat² | lower     |
| ``kid`` (``kid_std``) | unbiased MMD² with a cubic kernel, over subsets   | kernel units       | lower, ~0 |
| ``swd``               | sliced Wasserstein distance of 7x7 pixel patches  | intensity x 1e3    | lower     |
| ``diversity_pixel``   | mean pairwise RMS pixel distance of the samples   | intensity          | near real |
| ``diversity_feature`` | the same in features (per dimension)              | standardised feat  | near real |
| ``nn_ratio``          | median NN distance to train: samples / held-out   | ratio              | near 1    |
| ``fraction_close``    | samples as near to train as the 5 % nearest reals | fraction           | near 0.05 |

Reading them: FD and KID compare the samples' feature distribution with the training images'
(KID is unbiased, so it can be slightly negative; FD is biased upwards by small N, so compare
at equal N). SWD compares local texture and contrast at two scales of a Laplacian pyramid. A
diversity far below the reals' (``*_real`` keys) means mode collapse. ``nn_ratio`` well below 1
and ``fraction_close`` well above 0.05 mean the model copies training images; ``closest_*`` give
the nearest pairs to look at. Numbers are comparable only within one feature net (``feature_net``
key: same seed, same training data), one image size and one number of samples.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .features import FeatureNet, as_images, extract_features, train_feature_net

__all__ = ["frechet_distance", "kid", "sliced_wasserstein", "laplacian_pyramid", "diversity",
           "memorisation", "evaluate", "real_vs_real_baseline"]


def _as_features(f, name: str) -> np.ndarray:
    """(N, D) float64 numpy array from a tensor or an array; N >= 2."""
    f = np.asarray(f.detach().cpu() if torch.is_tensor(f) else f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be features of shape (N, D) with N >= 2, got {f.shape}; "
                         "get them with extract_features(net, images)")
    return f


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feat_a, feat_b) -> float:
    """Fréchet distance between Gaussians fitted to (N, D) and (M, D) features (Dowson & Landau 1982).

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), the trace term computed as
    tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)) of a symmetric matrix, in float64, so no complex parts.
    """
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ ({a.shape[1]} vs {b.shape[1]}); use one feature net")
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s = _sqrtm_psd(cov_a)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(s @ cov_b @ s), 0, None)).sum()
    fd = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    return float(max(fd, 0.0))   # the exact value is >= 0; rounding can leave -1e-12


def kid(feat_a, feat_b, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance-style unbiased MMD^2 (Bińkowski et al. 2018): (mean, std) over subsets.

    Kernel k(x, y) = (x.y / D + 1)^3; each subset draws ``min(subset_size, N, M)`` rows of each set
    without replacement. The estimator is unbiased: about 0 (either sign) for one distribution.
    """
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    d, m = a.shape[1], min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off_diag = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(off_diag - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def laplacian_pyramid(x: torch.Tensor, levels: int = 2) -> list[torch.Tensor]:
    """[band-pass at S, band-pass at S/2, ..., low-pass at S / 2^(levels-1)] of x: (N, C, S, S).

    Each band is x - up(down(x)) with 2x2 average pooling down and bilinear up; they sum back to x.
    """
    bands = []
    for _ in range(levels - 1):
        down = F.avg_pool2d(x, 2)
        bands.append(x - F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False))
        x = down
    return bands + [x]


def sliced_wasserstein(images_a, images_b, patch_size: int = 7, n_patches: int = 8192,
                       n_projections: int = 128, levels: int = 2, seed: int = 0) -> float:
    """Sliced Wasserstein distance between random patches of two image sets, x 1e3, mean over levels.

    As in Karras et al. 2018 (Progressive GAN, appendix D) on a Laplacian pyramid, but on *plain*
    patches (no per-set normalisation, which would hide a brightness or contrast error), in the
    intensity units of [-1, 1] images. Both sets use the same random patch positions, so
    ``sliced_wasserstein(a, a) == 0`` exactly; SW1 = mean |sorted projections a - sorted b|.
    """
    a, b = as_images(images_a, "images_a"), as_images(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    side = min(a.shape[-2:])
    if side // 2 ** (levels - 1) < patch_size:
        raise ValueError(f"{levels} pyramid levels of {side} px images leave less than {patch_size} px "
                         "for a patch; use fewer levels or a smaller patch_size")
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for la, lb in zip(laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)):
        C, H, W = la.shape[1:]
        u = torch.rand(n_patches, generator=generator)              # which image, as a fraction
        ys = torch.randint(0, H - patch_size + 1, (n_patches,), generator=generator)
        xs = torch.randint(0, W - patch_size + 1, (n_patches,), generator=generator)
        rows = (ys[:, None] + torch.arange(patch_size))[:, None, :, None]
        cols = (xs[:, None] + torch.arange(patch_size))[:, None, None, :]
        chans = torch.arange(C)[None, :, None, None]
        proj = torch.randn(C * patch_size ** 2, n_projections, generator=generator)
        proj /= proj.norm(dim=0, keepdim=True)                      # unit directions
        sorted_ = []
        for lvl in (la, lb):
            idx = (u * lvl.shape[0]).long().clamp_max(lvl.shape[0] - 1)[:, None, None, None]
            patches = lvl[idx, chans, rows, cols].reshape(n_patches, -1)
            sorted_.append((patches @ proj).sort(dim=0).values)
        total += (sorted_[0] - sorted_[1]).abs().mean().item()
    return 1e3 * total / levels


def diversity(x, net: FeatureNet | None = None, max_samples: int = 1000, seed: int = 0) -> float:
    """Mean pairwise distance within one set, per dimension (an RMS difference); 0 = all identical.

    x: images (N, C, H, W) in [-1, 1] -> RMS pixel difference, or in ``net``'s features when given;
    or features (N, D) -> RMS feature difference. Uses a random subset of ``max_samples``.
    Compare with the same number for real images: far lower means mode collapse.
    """
    if torch.as_tensor(x).dim() == 4:
        x = extract_features(net, x) if net is not None else as_images(x).flatten(1)
    z = torch.as_tensor(_as_features(x, "x"))
    if z.shape[0] > max_samples:
        z = z[torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))[:max_samples]]
    return float(F.pdist(z).mean() / z.shape[1] ** 0.5)


def nn_distance(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 512):
    """RMS distance (per dimension) from each query row to its nearest ref row, and that row's index.

    ``torch.cdist`` (fast, by matrix products) finds the nearest row, chunk by chunk; the distance to
    it is then recomputed from the difference, so an exact copy is at exactly 0, not at 1e-7.
    """
    queries, refs = queries.double(), refs.double()
    idx = torch.cat([torch.cdist(q, refs).argmin(dim=1) for q in queries.split(chunk)])
    return (queries - refs[idx]).norm(dim=1) / queries.shape[1] ** 0.5, idx


def _memorisation(pixels, features, k_closest: int) -> dict:
    """The memorisation report from flattened (samples, train, heldout) pixels and optional features."""
    out = {}
    for prefix, (s, tr, ho) in [("", pixels), ("feature_", features)]:
        if s is None:
            continue
        d_s, i_s = nn_distance(torch.as_tensor(s), torch.as_tensor(tr))
        d_h, _ = nn_distance(torch.as_tensor(ho), torch.as_tensor(tr))
        if d_h.median() == 0:
            raise ValueError("the held-out images' median distance to the training images is 0: they "
                             "are copies of training images; pass images the model never saw")
        threshold = torch.quantile(d_h, 0.05)
        out.update({f"{prefix}nn_sample_median": d_s.median().item(),
                    f"{prefix}nn_heldout_median": d_h.median().item(),
                    f"{prefix}nn_ratio": (d_s.median() / d_h.median()).item(),
                    f"{prefix}close_threshold": threshold.item(),
                    f"{prefix}fraction_close": (d_s <= threshold).double().mean().item()})
        if prefix == "":
            order = d_s.argsort()[:k_closest]
            out.update(closest_sample=order.tolist(), closest_train=i_s[order].tolist(),
                       closest_distance=d_s[order].tolist())
    return out


def memorisation(samples, train_images, heldout_images, net: FeatureNet | None = None,
                 k_closest: int = 8) -> dict:
    """Does the model copy its training images? Nearest-training-image distances, samples vs held-out.

    For each sample and each held-out real image: the RMS pixel distance to its nearest training
    image (chunked ``torch.cdist`` in float64). Returns ``nn_sample_median``, ``nn_heldout_median``,
    their ``nn_ratio`` (about 1 for a model that generalises, about 0 for copies),
    ``close_threshold`` (5th percentile of the held-out distances), ``fraction_close`` (samples below
    it: about 0.05 for fresh samples, 1 for copies), and ``closest_sample`` / ``closest_train`` /
    ``closest_distance``: the ``k_closest`` nearest pairs, to show side by side. With ``net``, the
    same scalars in features too (keys prefixed ``feature_``): they also catch shifted copies.
    """
    imgs = [as_images(x, n) for x, n in [(samples, "samples"), (train_images, "train_images"),
                                         (heldout_images, "heldout_images")]]
    feats = (None,) * 3 if net is None else [extract_features(net, x) for x in imgs]
    return _memorisation([x.flatten(1) for x in imgs], feats, k_closest)


def evaluate(samples, train_images, heldout_images, net: FeatureNet | None = None, seed: int = 0,
             device: str | torch.device | None = None, kid_subsets: int = 100,
             k_closest: int = 8, progress: bool = False) -> dict:
    """Every measure of this module for ``samples`` against ``train_images``, in one dict.

    All three sets are (N, C, S, S) in [-1, 1] of one shape; ``heldout_images`` are real images the
    model never saw (the memorisation baseline and the real diversity). Without ``net`` a feature
    net is trained on ``train_images`` first (30-60 s on a CPU at 32 px): pass the same ``net``
    to every call whose numbers you want to compare. Keys: see the module docstring.
    """
    s, tr, ho = (as_images(x, n) for x, n in [(samples, "samples"), (train_images, "train_images"),
                                              (heldout_images, "heldout_images")])
    if not s.shape[1:] == tr.shape[1:] == ho.shape[1:]:
        raise ValueError(f"the three sets must have one image shape, got {tuple(s.shape[1:])}, "
                         f"{tuple(tr.shape[1:])} and {tuple(ho.shape[1:])}; resize them")
    if net is None:
        net = train_feature_net(tr, seed=seed, device=device, progress=progress)
    f_s, f_tr, f_ho = (extract_features(net, x) for x in (s, tr, ho))
    kid_mean, kid_std = kid(f_s, f_tr, subsets=kid_subsets, seed=seed)
    out = {"feature_net": net.name, "n_samples": s.shape[0], "fd": frechet_distance(f_s, f_tr),
           "kid": kid_mean, "kid_std": kid_std, "swd": sliced_wasserstein(s, tr, seed=seed),
           "diversity_pixel": diversity(s, seed=seed), "diversity_pixel_real": diversity(ho, seed=seed),
           "diversity_feature": diversity(f_s, seed=seed),
           "diversity_feature_real": diversity(f_ho, seed=seed)}
    out.update(_memorisation([s.flatten(1), tr.flatten(1), ho.flatten(1)], [f_s, f_tr, f_ho], k_closest))
    return out


def real_vs_real_baseline(train_images, heldout_images, n_samples: int | None = None,
                          net: FeatureNet | None = None, **kwargs) -> dict:
    """:func:`evaluate` with real images as the "samples": the numbers a perfect model would get.

    The first ``n_samples`` held-out images (default: half) play the samples, the rest the
    held-out baseline. Use ``n_samples`` = the number of generated samples and the same ``net``
    as for :func:`evaluate`, so the numbers are directly comparable (FD depends on N).
    """
    ho = as_images(heldout_images, "heldout_images")
    n = ho.shape[0] // 2 if n_samples is None else n_samples
    if not 2 <= n <= ho.shape[0] - 2:
        raise ValueError(f"n_samples={n} leaves too few of the {ho.shape[0]} held-out images: it needs "
                         "2 <= n_samples <= N - 2 (the rest are the held-out baseline)")
    return evaluate(ho[:n], train_images, ho[n:], net=net, **kwargs)
