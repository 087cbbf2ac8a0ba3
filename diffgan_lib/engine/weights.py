"""What a checkpoint says about networks, and their weights: the UNet's fields, building the untrained
networks from them, loading weights with a clear error, a hash that names a network by its weights, and
the (G, D, scheduler) triple a loader returns."""
from __future__ import annotations

import hashlib

import torch

from ..core.discriminator import Discriminator
from ..core.unet import UNet
from .checkpoints import CheckpointError

__all__ = ["unwrap", "unet_fields", "weights_sha256", "build_models", "load_state", "LoadedCheckpoint", "members_record"]


def unwrap(module):
    """The plain module inside torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def unet_fields(unet) -> dict:
    """What ``build_models`` needs to rebuild the UNet ``unet``: shared by every kind of checkpoint."""
    unet = unwrap(unet)
    fields = {"in_ch": unet.in_ch, "base": unet.base, "time_embedding": unet.time_embedding}
    if getattr(unet, "num_classes", 0):   # optional fields: unconditional, plain files stay as they were
        fields["num_classes"] = unet.num_classes
    if getattr(unet, "mean_path", False):
        fields["mean_path"] = True
    return fields


def weights_sha256(state_dict: dict) -> str:
    """SHA-256 of a network's weights as float32, in key order: names a teacher by what it is, not by a path."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_models(model: dict):
    """(G, D), untrained, from a checkpoint's ``model`` section (the UNet's fields and ``D_base``)."""
    return (UNet(model["in_ch"], model["base"], model["time_embedding"], model.get("num_classes", 0),
                 model.get("mean_path", False)),
            Discriminator(model["in_ch"], model["D_base"]))


def load_state(module, state: dict, what: str, path) -> None:
    """``module.load_state_dict(state)`` with a CheckpointError naming the network when they do not fit,
    or when the weights hold NaN or inf (a run that diverged)."""
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: the {what} weights hold NaN or inf values ({bad[0]}...): the run diverged "
                              "before this file was written; use an earlier checkpoint of the run")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path}: the {what} weights do not fit the network of this configuration "
                              f"({detail}); use the configuration the checkpoint was trained with") from None


class LoadedCheckpoint(tuple):
    """``(G, D, scheduler)``, as the seed's ``load_checkpoint`` returns, plus ``.config`` (TrainConfig
    or None), ``.image_size``, ``.step``, ``.epoch``, ``.history``, ``.kind``, ``.path`` and ``.members``
    (``training_members``: the training images, or None). For kind "fewstep", G is a FewStepGenerator
    (sample() then takes its own levels), D the pair discriminator (None for the regression-only
    control), and ``.teacher`` / ``.fewstep_config`` describe the run."""

    def __new__(cls, G, D, scheduler, **info):
        self = super().__new__(cls, (G, D, scheduler))
        self.members = None
        self.__dict__.update(info)
        return self




def members_record(ckpt: dict) -> dict | None:
    """The checkpoint's ``members`` record with "indices" always a list of ints (a stored "range" [a, b] becomes
    a, ..., b - 1), or None when the file does not say."""
    members = ckpt.get("members")
    if members is None:
        return None
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in members.items() if k != "range"}
    if "range" in members:
        out["indices"] = list(range(*members["range"]))
    return out
