"""The training configuration: one frozen dataclass, with presets for a CPU and a CUDA machine.

``TrainConfig`` holds every knob of :func:`diffgan_lib.train` except the data, the number
of image channels, the number of timesteps T and the number of epochs, which stay arguments of
``train`` as in the seed (a run records channels and T in its checkpoints, so resuming needs
neither). Images are (B, C, S, S) in [-1, 1] with S a multiple of 8, at least 32.

Presets:
- ``TrainConfig.cpu_quick()``: 32 px, base 32 on a CPU (small enough for a laptop); bf16 autocast where the
  CPU multiplies bf16 natively (AVX-512 BF16 or AMX: about 2x the float32 speed), float32 elsewhere;
- ``TrainConfig.cuda_full()``: 128 px, base 64 (the seed's network), bf16 autocast, channels_last;
- ``TrainConfig.for_device(device)``: the one that suits ``device``;
- ``TrainConfig.seed_as_written()``: the seed's UNet without t, base 64, no EMA, for the side-by-side
  lesson (its loop as written is ``diffgan_lib.course.seed_loop``, passed to ``train(step=...)``).

A config is frozen: change a field with ``cfg.replace(base=16)``. ``to_dict()`` / ``from_dict()``
turn it into plain values (checkpoints store it that way).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch

from ..data.phantoms import check_image_size
from .precision import PRECISIONS

__all__ = ["TrainConfig", "FewStepConfig", "OneCallConfig"]

OBJECTIVES = ("diffusion", "flow")
MAX_BASE = 256           # the widest UNet accepted (the seed's is 64): base 256 is already 120 M parameters
RENAMED = {"betas": "adam_betas", "amp": "precision"}    # old field name -> new one
# fields of older files that are no longer settings: the seed's loop as written is a step function of
# the lesson (course.seed_loop), and R1 / the adaptive weight were options of one study only
RETIRED = ("variant", "r1_gamma", "adaptive_adv_weight", "adaptive_max")
# the type of every field, checked first (a hand-edited checkpoint may hold "32" or null anywhere)
_KINDS = {"int": ("base", "adv_warmup_steps", "seed", "checkpoint_every", "keep_last", "save_every", "sample_every",
                  "log_every"),
          "int or None": ("image_size", "adv_t_max"),
          "number": ("lr_G", "lr_D", "adv_weight", "ema_decay", "label_dropout"),
          "bool": ("time_embedding", "mean_path", "compile"), "bool or None": ("channels_last",),
          "str": ("schedule", "precision", "objective")}
_IS = {"int": lambda v: isinstance(v, Integral) and not isinstance(v, bool),
       "number": lambda v: isinstance(v, Real) and not isinstance(v, bool),
       "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}


def _type_ok(kind: str, value) -> bool:
    base, _, optional = kind.partition(" or ")
    return (optional and value is None) or _IS[base](value)


def _check_types(cfg) -> None:
    """ValueError naming every field whose value has the wrong type, and the type it needs."""
    wrong = [f"{name}={getattr(cfg, name)!r} (needs {kind})" for kind, names in _KINDS.items() for name in names
             if not _type_ok(kind, getattr(cfg, name))]
    betas = cfg.adam_betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_IS["number"](b) for b in betas)):
        wrong.append(f"adam_betas={betas!r} (needs two numbers)")
    names = cfg.class_names
    if not (isinstance(names, (tuple, list)) and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)):
        wrong.append(f"class_names={names!r} (needs distinct non-empty strings)")
    if wrong:
        raise ValueError(f"TrainConfig: wrong type for {', '.join(wrong)}")


def _check_numbers(cfg) -> None:
    """ValueError for a non-finite or out-of-range float field, naming the value and what to use."""
    for name, low, fix in (("lr_G", 0, "e.g. 2e-4"), ("lr_D", 0, "e.g. 2e-4")):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > low):
            raise ValueError(f"{name}={value} must be a finite number > 0 ({fix})")
    for name in ("adv_weight",):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value} must be a finite number >= 0 (0 turns the term off)")
    if not (math.isfinite(cfg.label_dropout) and 0 <= cfg.label_dropout < 1):
        raise ValueError(f"label_dropout={cfg.label_dropout} must lie in [0, 1) (0.1 is usual: the share of "
                         "labels replaced by 'no class', so one network also learns the unconditional model)")
    if not all(math.isfinite(b) and 0 <= b < 1 for b in cfg.adam_betas):
        raise ValueError(f"adam_betas={tuple(cfg.adam_betas)} must be two numbers in [0, 1), e.g. (0.9, 0.999)")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (see the module docstring for the presets)."""

    # --- networks
    image_size: int | None = None      # side S of the training images; None = infer from the first batch
    base: int = 32                     # channels of the first UNet / discriminator level (multiple of 8)
    time_embedding: bool = True        # False = the seed's UNet that never sees t (ERRATA 1)
    mean_path: bool = True             # a path for each image's mean past the GroupNorms (UNet docstring);
                                       # False = the seed's UNet, blind to it; forced to False when
                                       # time_embedding is False (the path's gain depends on t)
    schedule: str = "linear"           # beta schedule of the DiffusionScheduler (the seed's is linear)
    objective: str = "diffusion"       # "diffusion": predict the noise (DDPM); "flow": rectified flow, predict
                                       # the velocity eps - x0 of a straight path (core/flow.py)
    class_names: tuple[str, ...] = ()  # () = unconditional; names = a class-conditional G (guidance.py)
    label_dropout: float = 0.1         # conditional only: share of labels dropped to "no class" (CFG)
    # --- optimisers (Adam, as the seed)
    lr_G: float = 2e-4
    lr_D: float = 2e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)   # Adam's defaults, which the seed uses (not the
                                                     # scheduler's betas; called "betas" before format 2)
    # --- adversarial term (the seed's hybrid: a GAN term on x0_pred). Off by default (pure diffusion):
    # benchmarks/recipe_study.py found pure diffusion better on FD, KID and SWD at 3000 steps (32 px,
    # two seeds), and on the real X-rays (benchmarks/xray_study.py, docs/results.md) the term makes a
    # run worse once it starts after its warm-up (FD 11.6 at 588 steps, 58.9 at 1176), while pure
    # diffusion keeps improving (14.7, then 9.0). Turn it on with adv_weight=0.01 (the seed's kind of
    # hybrid, what notebook 05 trains).
    adv_weight: float = 0.0            # w in G_loss = diff + w * adv; 0 = pure diffusion (D never trains)
    adv_t_max: int | None = 500        # adversarial term only on images with t < adv_t_max; None = all t
    adv_warmup_steps: int = 500        # no adversarial term (and no D training) before this step
    # ----------------------------------------------------------------------------------------------
    ema_decay: float = 0.999           # EMA of G's weights (ERRATA 12); 0 = no EMA
    precision: str = "auto"            # auto: bf16 autocast on CUDA with bf16 (else fp16 + GradScaler) and on CPUs
                                       # with native bf16 (AVX-512 BF16 / AMX); float32 elsewhere. fp32 | bf16 | fp16
    channels_last: bool | None = None  # None = on for CUDA, off elsewhere
    compile: bool = False              # torch.compile the generator (CUDA, PyTorch 2)
    seed: int = 0                      # seeds the weights, the noise and the shuffling of every epoch
    checkpoint_every: int = 10         # epochs between epoch_XXXX.pth files (the seed: 10); 0 = only the final
    keep_last: int = 0                 # keep only the newest N epoch files; 0 = keep them all
    save_every: int = 0                # steps between saves of last.pth (overwritten; for long runs); 0 = never
    sample_every: int = 0              # steps between sample grids written to save_dir/samples; 0 = never
    log_every: int = 1                 # steps between progress-bar updates

    def __post_init__(self):
        _check_types(self)
        _check_numbers(self)
        if self.image_size is not None:
            check_image_size(self.image_size, minimum=32)
        if self.base < 8 or self.base % 8 or self.base > MAX_BASE:
            raise ValueError(f"base={self.base} must be a multiple of 8 (GroupNorm(8)) from 8 to {MAX_BASE}; try 32 "
                             "or 64 (the seed's)")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.objective == "flow" and (self.adv_weight or not self.time_embedding):
            raise ValueError("objective='flow' trains the velocity alone on a UNet with the time embedding: "
                             "set adv_weight=0 (the GAN term is the diffusion hybrid's) and time_embedding=True")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must lie in [0, 1): 0.999 is usual, 0 turns EMA off")
        if self.adv_t_max is not None and self.adv_t_max < 1:
            raise ValueError(f"adv_t_max={self.adv_t_max} must be >= 1 (or None for every t)")
        for name in ("adv_warmup_steps", "checkpoint_every", "keep_last", "save_every", "sample_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.log_every < 1:
            raise ValueError(f"log_every={self.log_every} must be >= 1")
        if not self.time_embedding:     # the seed's UNet without t has no mean path (its gain depends on t)
            object.__setattr__(self, "mean_path", False)
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model, else the number of classes it can be asked for."""
        return len(self.class_names)

    # ----------------------------------------------------------------- presets
    @classmethod
    def cpu_quick(cls, **changes) -> "TrainConfig":
        """32 px, base 32 (about 2.1 M generator parameters); precision "auto" (bf16 where the CPU has it)."""
        return cls(**{**dict(image_size=32, base=32), **changes})

    @classmethod
    def cuda_full(cls, **changes) -> "TrainConfig":
        """128 px, base 64 (the seed's size), bf16 autocast, channels_last."""
        return cls(**{**dict(image_size=128, base=64, precision="bf16", channels_last=True), **changes})

    @classmethod
    def seed_as_written(cls, **changes) -> "TrainConfig":
        """The seed's network for the lessons: its UNet without t, no EMA, base 64 (its loop as written is
        ``diffgan_lib.course.seed_loop.train_step_as_written``, given to ``train(step=...)``)."""
        return cls(**{**dict(base=64, time_embedding=False, mean_path=False, ema_decay=0.0),
                      **changes})

    @classmethod
    def for_device(cls, device: str | torch.device | None = None, **changes) -> "TrainConfig":
        """``cuda_full`` on a CUDA device (fp16 where bf16 is unsupported), ``cpu_quick`` elsewhere."""
        from ..core.device import pick_device
        dev = pick_device(device)
        if dev.type == "cuda":
            cfg = cls.cuda_full(**changes)
            if cfg.precision == "bf16" and not torch.cuda.is_bf16_supported():
                cfg = cfg.replace(precision="auto")
            return cfg
        return cls.cpu_quick(**changes)

    # ----------------------------------------------------------------- conversions
    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values only (adam_betas as a list): safe for JSON and ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError naming them and the known ones.

        Renamed fields of older checkpoints are migrated: ``betas`` (Adam's) -> ``adam_betas``.
        """
        d = dict(d)
        d.setdefault("mean_path", False)   # files written before the field existed hold the plain UNet
        for old, new in RENAMED.items():
            if old in d and new not in d:
                d[new] = d.pop(old)
        if d.get("precision") == "off":          # amp="off" was float32
            d["precision"] = "fp32"
        for name in RETIRED:
            d.pop(name, None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; known fields: "
                             f"{', '.join(sorted(known))}")
        return cls(**d)


class _FineTuneConfig:
    """Plain values for a checkpoint, and back: what the fine-tunes' configs share."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of ``to_dict``; unknown keys raise ValueError naming them."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}")
        return cls(**{**d, **({"adam_betas": tuple(d["adam_betas"])} if "adam_betas" in d else {})})


@dataclass(frozen=True)
class FewStepConfig(_FineTuneConfig):
    """The fine-tune's knobs (DDGAN's Adam betas; a smaller G learning rate, since G starts trained)."""
    levels: int = 4
    adv_weight: float = 1.0        # 0 = the regression-only control (no D at all)
    rec_weight: float = 1.0        # weight of ᾱ_t ||x̂0 - x0||², which anchors the low-noise levels
    lr_G: float = 5e-5
    lr_D: float = 1e-4
    adam_betas: tuple[float, float] = (0.5, 0.9)
    r1_gamma: float = 0.05
    r1_every: int = 4              # lazy R1: every r1_every steps, scaled by r1_every
    ema_decay: float = 0.999
    seed: int = 0

    def __post_init__(self):
        for name in ("adv_weight", "rec_weight", "lr_G", "lr_D", "r1_gamma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")
        if not (isinstance(self.levels, int) and 1 <= self.levels <= 8):
            raise ValueError(f"levels={self.levels!r}: use 1 to 8 levels (4 is DDGAN's choice)")
        if self.adv_weight == 0 and self.rec_weight == 0:
            raise ValueError("adv_weight and rec_weight are both 0: nothing would be trained")
        if not 0 <= self.ema_decay < 1 or self.r1_every < 1:
            raise ValueError("ema_decay must lie in [0, 1) and r1_every be >= 1")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))



@dataclass(frozen=True)
class OneCallConfig(_FineTuneConfig):
    """The one-call fine-tune's knobs (``engine.onecall``; the values measured in ``benchmarks/onecall_study.py``).

    G reads z at ``t_star``; D's heads re-noise images to s in [0, ``s_max``); ``d_steps`` D updates per G
    update; G's loss = ``adv_weight`` * softplus(-D(G(z))) + ``reg_weight`` * the regression of G(z)'s
    ``reg_pool`` x ``reg_pool`` average-pooled layout onto the teacher's DDIM-``pairs_steps`` image of the same z
    (``pairs`` fixed latents, ``engine.pairs``) + ``range_weight`` * mean(relu(|raw x̂0| - 1)^2) (keeps pixels
    where the soft clamp still passes a gradient). With ``reg_weight > 0`` G's latents are the pairs' z.
    ``adv_weight = 0`` is the control without the GAN term: D still trains and is measured, but gives G no
    gradient. A file saved before the regression term existed reads as ``reg_weight = 0``. ``pairs_eta``,
    ``denoise_weight`` and ``freeze = "most"`` were measured on the val X-rays and not adopted as defaults
    (``benchmarks/onecall_tune.py``)."""
    t_star: int = 400
    adv_weight: float = 1.0
    reg_weight: float = 10.0            # at lr_G 5e-6, 10 beat 3, and 3 beat 1, on each of 3 test seeds (onecall_study.py)
    reg_pool: int = 4
    pairs: int = 2048
    pairs_steps: int = 25
    pairs_eta: float = 0.0              # the pairs' DDIM eta: 0 a deterministic map z -> x, 1 one stochastic draw
    denoise_weight: float = 0.0         # weight of the pull of G(z) towards the teacher's x̂0 of G(z) re-noised to
    denoise_t: int = 50                 # level denoise_t (a fixed target: no gradient through the teacher)
    range_weight: float = 1.0
    lr_G: float = 4e-5                  # 4e-5 beat 2e-5, 1e-5 and 5e-6 at reg_weight 10 on the val X-rays, 3 teachers
    lr_D: float = 1e-3
    adam_betas: tuple[float, float] = (0.5, 0.99)
    d_steps: int = 2
    s_max: int = 350
    head_width: int = 64
    ema_decay: float = 0.99
    freeze: str = "none"                # "encoder": G's encoder (time MLP, down blocks, bottleneck) stays the
                                        # teacher's; "most": also the deepest decoder block (D2O freezes most of
                                        # G); an export then stores only the rest
    seed: int = 0

    def __post_init__(self):
        if self.freeze not in ("none", "encoder", "most"):
            raise ValueError(f"freeze={self.freeze!r}: choose 'none', 'encoder' or 'most'")
        for name in ("adv_weight", "reg_weight", "range_weight", "lr_G", "lr_D", "denoise_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")
        for name, low in (("t_star", 1), ("d_steps", 1), ("s_max", 1), ("head_width", 8), ("reg_pool", 1),
                          ("pairs", 1), ("pairs_steps", 1), ("denoise_t", 1)):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
                raise ValueError(f"{name}={v!r} must be an int >= {low}")
        if isinstance(self.pairs_eta, bool) or not (isinstance(self.pairs_eta, (int, float)) and 0 <= self.pairs_eta <= 1):
            raise ValueError(f"pairs_eta={self.pairs_eta!r} must lie in [0, 1]: the DDIM eta of the teacher's pairs")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay!r} must lie in [0, 1)")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of ``to_dict``; a file from before the regression term has none (reg_weight 0)."""
        return super().from_dict({"reg_weight": 0.0, **d})
