"""An offline feature extractor for the quality metrics: a small CNN trained on the real images.

FID needs Inception-v3 weights trained on ImageNet photographs: a download, and features made for
dogs and cars, not chest X-rays. Here a compact CNN learns its features from the training images
themselves, with no labels, by SimCLR-style contrastive learning (Chen et al. 2020): two random
augmentations of the same image must map close together and away from the other images.

- images: (N, C, H, W) float in [-1, 1], the course's single convention (uint8 / 127.5 - 1);
- :class:`FeatureNet`: 4 conv blocks (3x3 conv, GroupNorm, SiLU; 3 of them stride 2); the spatial
  means of the first block (low-level) and the last (high-level) -> (N, dim) features,
  standardised to mean 0 and std 1 per dimension *on the training images*, so a Fréchet distance
  is in units of the real features' variance;
- :func:`train_feature_net`: 200 steps of 128 pairs, about 30-60 s on a 2-core CPU at 32 px;
- :func:`extract_features`: (N, dim) float64 numpy array.

The augmentations decide what the features ignore: random crop + resize, horizontal flip and a
small brightness / contrast change. There is deliberately no blur and no noise among them, so the
features stay sensitive to exactly the defects a generator tends to have.
Numbers computed in these features are comparable only within one trained net (same seed, same
data) and one image size: ``net.name`` says which, print it next to every figure.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.device import pick_device
from ..data.files import atomic_write

__all__ = ["FeatureNet", "train_feature_net", "extract_features", "augment", "nt_xent_loss",
           "as_images", "save_feature_net", "load_feature_net"]

_FAR = 1.5   # values beyond [-1.5, 1.5] are not a [-1, 1] image that merely overshoots


def as_images(x, name: str = "images") -> torch.Tensor:
    """Check and return ``x`` as a float32 CPU tensor (N, C, H, W) in [-1, 1].

    Accepts a tensor or numpy array. Raises ValueError for a wrong rank, an empty set, or values far
    outside [-1, 1] (a uint8 or [0, 255] image); slight overshoot (a sampler's output) is allowed.
    """
    x = torch.as_tensor(x).detach().cpu()
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}; "
                         "add the channel axis with x[:, None] for grayscale images")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    x = x.float()
    lo, hi = x.min().item(), x.max().item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf; check the sampler's output")
    if lo < -_FAR or hi > _FAR:
        raise ValueError(f"{name} span [{lo:.3g}, {hi:.3g}], far outside [-1, 1]; scale uint8 images "
                         "with x / 127.5 - 1, [0, 1] images with 2 * x - 1, or clamp(-1, 1)")
    return x


class FeatureNet(nn.Module):
    """x: (B, in_ch, S, S) in [-1, 1] -> standardised features (B, dim), float32.

    Four blocks of widths width, 2 width, 4 width, dim - width at sides S/2, S/4, S/8, S/8. The
    features are the spatial means of block 1 (``width`` low-level edge and texture statistics:
    they see noise and blur) next to those of block 4 (``dim - width`` high-level ones: they see
    anatomy and content); with only the last block, FD barely notices noise of std 0.1.
    ``feat_mean`` / ``feat_std`` (buffers) are set by :func:`train_feature_net` from the real images.
    """

    def __init__(self, in_ch: int = 1, width: int = 32, dim: int = 128, image_size: int = 32):
        super().__init__()
        if width < 8 or width % 8 or dim % 8 or dim < width + 8:
            raise ValueError(f"width={width} and dim={dim} must be multiples of 8 (GroupNorm(8)) with "
                             "dim >= width + 8 (block 4 has dim - width channels); e.g. 32 and 128")
        self.in_ch, self.dim, self.image_size = in_ch, dim, image_size
        chans = [in_ch, width, 2 * width, 4 * width, dim - width]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2 if i < 3 else 1, padding=1),
                          nn.GroupNorm(8, chans[i + 1]), nn.SiLU())
            for i in range(4))
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))
        self.name = f"SimCLR-CNN {dim}-d features at {image_size} px"
        self.history: list[float] = []   # contrastive loss per training step

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features (B, dim) before standardisation: pooled block 1 and block 4, concatenated."""
        h1 = self.blocks[0](x)
        h4 = self.blocks[3](self.blocks[2](self.blocks[1](h1)))
        return torch.cat([h1.mean(dim=(2, 3)), h4.mean(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.pooled(x) - self.feat_mean) / self.feat_std


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image: crop of 50-100 % of the area resized back, flip, intensity.

    x: (B, C, S, S) in [-1, 1] -> (B, C, S, S) in [-1, 1]. The crop is an affine grid_sample
    (bilinear, reflection padding); contrast x0.8-1.2 and brightness +-0.1 around mid-grey 0.
    """
    B = x.shape[0]
    u = torch.rand(B, 6, generator=generator).to(x.device)
    side = torch.sqrt(0.5 + 0.5 * u[:, 0])                       # side fraction: area 0.5 .. 1
    flip = torch.where(u[:, 1] < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = side * flip, side
    theta[:, 0, 2] = (1 - side) * (2 * u[:, 2] - 1)              # shift within the image
    theta[:, 1, 2] = (1 - side) * (2 * u[:, 3] - 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    contrast = (0.8 + 0.4 * u[:, 4]).view(B, 1, 1, 1)
    brightness = (0.2 * u[:, 5] - 0.1).view(B, 1, 1, 1)
    return (out * contrast + brightness).clamp(-1, 1)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, eq. 1) for two views z1, z2: (B, p) of B images.

    Each of the 2B embeddings must pick its partner among the other 2B - 1 by cosine similarity;
    the loss is the mean cross-entropy, ln(2B - 1) for embeddings that carry no information.
    """
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))                            # an embedding is not its own partner
    B = z1.shape[0]
    partner = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
    return F.cross_entropy(sim, partner)


def save_feature_net(net: FeatureNet, path, half: bool = True) -> Path:
    """Write ``net`` (its architecture and weights, float16 when ``half``) atomically to ``path``."""
    arch = {"in_ch": net.in_ch, "width": net.blocks[0][0].out_channels, "dim": net.dim, "image_size": net.image_size}
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in net.state_dict().items()}
    path = Path(path)
    atomic_write(path, lambda f: torch.save({"format": "diffgan_lib/featurenet", "arch": arch, "state": state}, f))
    return path


def load_feature_net(path, device=None) -> FeatureNet:
    """A FeatureNet written by :func:`save_feature_net` (weights float32, eval mode); loads with weights_only."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(d, dict) or d.get("format") != "diffgan_lib/featurenet":
        raise ValueError(f"{path} is not a feature net written by diffgan_lib.features.save_feature_net")
    net = FeatureNet(**d["arch"])
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state"].items()})
    return net.to(pick_device(device) if device is not None else "cpu").eval()


def train_feature_net(real_images, steps: int = 200, batch_size: int = 128, seed: int = 0,
                      device: str | torch.device | None = None, width: int = 32, dim: int = 128,
                      lr: float = 2e-3, progress: bool = True) -> FeatureNet:
    """Train a :class:`FeatureNet` on ``real_images`` (N, C, S, S) in [-1, 1]; returns it in eval mode.

    Contrastive training for ``steps`` Adam steps on ``batch_size`` pairs of views, through a
    2-layer projection head that is thrown away afterwards (SimCLR). Deterministic for a given
    ``seed`` on one device and thread count; the caller's global RNG state is left untouched.
    The features are then standardised with the mean and std of all ``real_images``. On a busy
    2-core machine ``torch.set_num_threads(1)`` first can make it several times faster.
    """
    x = as_images(real_images, "real_images")
    if x.shape[0] < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"need at least 2 square images to train on, got shape {tuple(x.shape)}")
    dev = pick_device(device)
    batch_size = min(batch_size, x.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(x.shape[1], width, dim, image_size=x.shape[-1]).to(dev)
        head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 64)).to(dev)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=lr)
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc="feature net (SimCLR)")
    net.train()
    for _ in bar:
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
        xb = x[idx].to(dev)
        loss = nt_xent_loss(head(net.pooled(augment(xb, generator))),
                            head(net.pooled(augment(xb, generator))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.history.append(loss.item())
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    net.eval()
    raw = extract_features(net, x, standardise=False)
    net.feat_mean.copy_(torch.from_numpy(raw.mean(0)).float())
    net.feat_std.copy_(torch.from_numpy(raw.std(0)).float().clamp_min(1e-6))
    return net


@torch.no_grad()
def extract_features(net: FeatureNet, images, batch_size: int = 256,
                     standardise: bool = True) -> np.ndarray:
    """Features of ``images`` (N, C, S, S) in [-1, 1]: an (N, dim) float64 numpy array.

    Raises ValueError when the channels or the image size differ from the ones ``net`` was trained
    on: features at another size are not comparable, so resize the images instead.
    """
    x = as_images(images)
    if x.shape[1] != net.in_ch or x.shape[-1] != net.image_size or x.shape[-2] != net.image_size:
        raise ValueError(f"images of shape {tuple(x.shape[1:])} do not match the feature net "
                         f"({net.in_ch}, {net.image_size}, {net.image_size}) it was trained on; resize "
                         "them (F.interpolate) or train a feature net at this size")
    was_training = net.training
    net.eval()
    dev = next(net.parameters()).device
    out = [(net(xb.to(dev)) if standardise else net.pooled(xb.to(dev))).double().cpu()
           for xb in x.split(batch_size)]
    net.train(was_training)
    return torch.cat(out).numpy()
