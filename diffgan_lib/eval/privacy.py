"""Does the model give away its training images? A membership-inference attack and nearest neighbours.

A diffusion model fits the images it was trained on ("members") better than images it never saw
("non-members"): its denoising loss ||eps - G(x_t, t)||^2 tends to be lower on them. The
loss-based attack (Yeom et al. 2018; for diffusion models Matsumoto et al. 2023, Carlini et al.
2023) scores each image by minus that loss, averaged over a fixed set of timesteps and noise
draws, the *same* noise for every image so that only the image differs; the AUROC of members
against non-members says how well it tells them apart: 0.5 no better than a coin, 1 perfectly.
:func:`overfit_control` is the positive control: a small model over-fitted on a few images, on
which the attack must reach AUROC near 1, or the attack (not the model) is broken.
:func:`closest_training_images` finds, for each sample, the nearest training image in pixels and
in FeatureNet features, to look at side by side: copies that an attack score would only hint at.

What a course should say about differential privacy: a model trained with DP-SGD (Abadi et al.
2016: each example's gradient clipped, Gaussian noise added, the privacy spent tracked by an
accountant) carries a guarantee (epsilon, delta) that bounds what *any* attack can learn about one
image's membership: every attack has TPR <= e^epsilon FPR + delta. An attack gives evidence of the
other kind: AUROC near 0.5 says that *this* attack could not tell members apart, not that no attack
can. Stronger attacks (per-image calibration with shadow models, LiRA, Carlini et al. 2022) find
leaks that an average AUROC hides, and the images most at risk are a few outliers, which is why
TPR at a low FPR is worth reporting too. So a loss-based AUROC near 0.5 is evidence, not a proof,
of privacy; a guarantee needs DP training, which for diffusion models costs image quality at a
useful epsilon (Dockhorn et al. 2023). Never share synthetic data as "private" on an attack alone.

Images are (N, C, S, S) float in [-1, 1]; t int in [0, T).
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.device import pick_device
from ..core.fewstep import FewStepGenerator
from ..core.losses import diffusion_loss
from ..core.scheduler import DiffusionScheduler
from ..core.unet import UNet
from ..data.phantoms import PhantomDataset
from .features import FeatureNet, as_images, extract_features, train_feature_net
from .metrics import nn_distance
from .usefulness import auroc

__all__ = ["ATTACK_FRACTIONS", "attack_timesteps", "denoising_losses", "membership_inference", "tpr_at_fpr",
           "overfit_control", "closest_training_images"]

ATTACK_FRACTIONS = (0.02, 0.05, 0.1, 0.2)   # of T: lightly noised images, where a memorised image helps most


def attack_timesteps(T: int) -> list[int]:
    """The attack's default timesteps: ATTACK_FRACTIONS of T, distinct ints >= 1 (T = 1000: 20, 50, 100, 200)."""
    return sorted({min(T - 1, max(1, round(f * T))) for f in ATTACK_FRACTIONS})


@torch.no_grad()
def denoising_losses(G, scheduler, images, timesteps=None, n_noise: int = 4, seed: int = 0, labels=None,
                     batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Each image's denoising loss: (N,) float64, the mean over ``timesteps`` x ``n_noise`` noise draws of
    the per-pixel mean of (eps - G(x_t, t))^2, with x_t = sqrt(alpha_hat_t) x0 + sqrt(1 - alpha_hat_t) eps
    (Ho et al. eq. 4 and 14).

    images: (N, C, S, S) in [-1, 1]; timesteps: ints in [0, T) (default ``attack_timesteps(T)``);
    the n_noise draws eps_j (C, S, S) come from ``seed`` and are the same for every image. labels:
    (N,) classes for a class-conditional G (None: its "no class" answer). G runs in eval mode (its
    mode is restored), on its own device; N x len(timesteps) x n_noise network evaluations (a progress
    bar from 2000 of them, unless ``progress=False``).
    """
    if isinstance(G, FewStepGenerator):
        raise ValueError("a few-step generator predicts x0 at its own levels, not the noise; attack the "
                         "diffusion model it was fine-tuned from (its teacher) instead")
    x = as_images(images, "images")
    ts = attack_timesteps(scheduler.T) if timesteps is None else [int(t) for t in timesteps]
    if not ts or any(not 0 <= t < scheduler.T for t in ts) or n_noise < 1:
        raise ValueError(f"timesteps {ts} must be ints in [0, {scheduler.T}) and n_noise={n_noise} >= 1")
    y = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
    if y is not None and len(y) != len(x):
        raise ValueError(f"labels has {len(y)} entries for {len(x)} images; give one class per image")
    dev = next(G.parameters()).device
    eps = torch.randn((n_noise, *x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(dev)
    was_training = G.training
    G.eval()
    total = torch.zeros(len(x), dtype=torch.float64)
    starts = range(0, len(x), batch_size)
    bar = tqdm(starts, desc="denoising losses", unit="batch", leave=False,
               disable=not progress or len(x) * len(ts) * n_noise < 2000)
    try:
        for start in bar:
            x0 = x[start:start + batch_size].to(dev)
            extra = () if y is None else (y[start:start + batch_size].to(dev),)
            for t in ts:
                t_b = torch.full((len(x0),), t, dtype=torch.long, device=dev)
                for e in eps:
                    x_t, noise = scheduler.add_noise(x0, t_b, e.expand_as(x0))
                    err = (G(x_t, t_b, *extra).float() - noise) ** 2
                    total[start:start + len(x0)] += err.mean(dim=(1, 2, 3)).double().cpu()
    finally:
        G.train(was_training)
    return (total / (len(ts) * n_noise)).numpy()


def membership_inference(G, scheduler, members, nonmembers, timesteps=None, n_noise: int = 4, seed: int = 0,
                         member_labels=None, nonmember_labels=None, batch_size: int = 64, progress: bool = True) -> dict:
    """The loss attack: score = - denoising loss, members (training images) the positives.

    members (N, C, S, S), nonmembers (M, C, S, S) in [-1, 1]: images the model was / was not trained
    on (``checkpoints.training_members`` says which). Returns {"auroc": float (0.5 = the attack learns
    nothing, 1 = it tells every member from every non-member), "member_loss": (N,), "nonmember_loss":
    (M,) float64 arrays (lower for members means a leak), "timesteps", "n_noise"}. Labels as in
    :func:`denoising_losses`, both or neither.
    """
    if (member_labels is None) != (nonmember_labels is None):
        raise ValueError("give labels for both members and nonmembers, or for neither")
    ts = attack_timesteps(scheduler.T) if timesteps is None else [int(t) for t in timesteps]
    kw = dict(timesteps=ts, n_noise=n_noise, seed=seed, batch_size=batch_size, progress=progress)
    loss_in = denoising_losses(G, scheduler, members, labels=member_labels, **kw)
    loss_out = denoising_losses(G, scheduler, nonmembers, labels=nonmember_labels, **kw)
    is_member = np.r_[np.ones(len(loss_in), bool), np.zeros(len(loss_out), bool)]
    return {"auroc": auroc(-np.r_[loss_in, loss_out], is_member), "member_loss": loss_in,
            "nonmember_loss": loss_out, "timesteps": ts, "n_noise": n_noise}


def tpr_at_fpr(member_loss, nonmember_loss, fpr: float) -> float:
    """The attack's true-positive rate at a false-positive rate ``fpr`` (e.g. 0.01): the share of members
    whose loss is below the threshold that flags a share ``fpr`` of the non-members.

    The threshold is the ``fpr`` quantile of the non-member losses (numpy's linear interpolation). An
    AUROC averages over every threshold; a real attacker wants the few members it can flag with almost no
    false alarms, so TPR at a low FPR is what privacy papers report (Carlini et al. 2022).
    """
    if not 0 < fpr < 1:
        raise ValueError(f"fpr={fpr!r} must lie in (0, 1), e.g. 0.01 or 0.1")
    loss_in, loss_out = np.asarray(member_loss, dtype=np.float64), np.asarray(nonmember_loss, dtype=np.float64)
    return float((loss_in < np.quantile(loss_out, fpr)).mean())


def overfit_control(n_members: int = 32, n_nonmembers: int = 64, image_size: int = 16, base: int = 8,
                    timesteps: int = 50, steps: int = 700, batch_size: int = 32, lr: float = 5e-3, seed: int = 0,
                    device=None) -> SimpleNamespace:
    """The attack's positive control: a small UNet over-fitted on ``n_members`` phantoms.

    Phantoms 0 .. n_members - 1 of ``PhantomDataset(seed=seed)`` are the members, the next
    ``n_nonmembers`` the non-members; G (base ``base``, T = ``timesteps``) takes ``steps`` Adam steps of
    the plain diffusion loss on the members alone, no GAN term, no EMA. Measured on one CPU thread
    (2-core machine, busy): 64 images at 32 px reach only AUROC ~0.74 after 600 steps (90 s) and
    64 at 16 px ~0.82 after 800 steps; hence the defaults, 32 images at 16 px, which reach
    AUROC >= 0.95 in 700 steps (about 20-30 s). Returns G (eval mode), scheduler, members and
    nonmembers ((N, 1, S, S) in [-1, 1]), seconds (training time).
    """
    dev = pick_device(device)
    ds = PhantomDataset(n=n_members + n_nonmembers, image_size=image_size, seed=seed)
    x = torch.stack([ds[i] for i in range(len(ds))])
    members, nonmembers = x[:n_members], x[n_members:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = UNet(1, base).to(dev)
    scheduler = DiffusionScheduler(timesteps, device=dev)
    opt = torch.optim.Adam(G.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started = time.time()
    for _ in range(steps):
        idx = torch.randperm(n_members, generator=generator)[:batch_size]
        t = torch.randint(0, timesteps, (len(idx),), generator=generator)
        eps = torch.randn((len(idx), *x.shape[1:]), generator=generator)
        loss = diffusion_loss(G, members[idx].to(dev), t.to(dev), scheduler, eps.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return SimpleNamespace(G=G.eval(), scheduler=scheduler, members=members, nonmembers=nonmembers,
                           seconds=time.time() - started)


def closest_training_images(samples, train_images, net: FeatureNet | None = None, seed: int = 0, device=None,
                            progress: bool = False) -> dict:
    """For each sample, its nearest training image in pixel space and in feature space.

    samples (N, C, S, S), train_images (M, C, S, S) in [-1, 1]. Distances are RMS per dimension
    (``metrics.memorisation``'s): in pixels, intensity units of [-1, 1] (an exact copy is 0); in
    ``net``'s standardised features (trained on ``train_images`` when None: 30-60 s on a CPU), which
    also catch shifted or re-contrasted copies. Returns {"pixel_index", "feature_index": (N,) int64
    numpy, indices into train_images; "pixel_distance", "feature_distance": (N,) float64;
    "feature_net": net.name}. Show ``samples[i]`` beside ``train_images[pixel_index[i]]`` and
    ``train_images[feature_index[i]]``, closest first (np.argsort of a distance).
    """
    s, tr = as_images(samples, "samples"), as_images(train_images, "train_images")
    if s.shape[1:] != tr.shape[1:]:
        raise ValueError(f"samples {tuple(s.shape[1:])} and train_images {tuple(tr.shape[1:])} must have one "
                         "image shape; resize them")
    if net is None:
        net = train_feature_net(tr, seed=seed, device=device, progress=progress)
    d_pix, i_pix = nn_distance(s.flatten(1), tr.flatten(1))
    f_s, f_tr = (torch.from_numpy(extract_features(net, x)) for x in (s, tr))
    d_feat, i_feat = nn_distance(f_s, f_tr)
    return {"pixel_index": i_pix.numpy(), "pixel_distance": d_pix.numpy(), "feature_index": i_feat.numpy(),
            "feature_distance": d_feat.numpy(), "feature_net": net.name}
