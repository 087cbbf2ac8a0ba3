"""Few-step sampling where the GAN pays: a DDGAN-style generator fine-tuned from a diffusion model.

Why: with the MSE loss the UNet's x̂0 is the posterior *mean* E[x0 | x_t], blurry at large t. A
1000-step sampler only ever needs that mean; a sampler with K = 4 big jumps (t = 999 -> 749 -> 499
-> 249 -> clean) does not: given x_999, the state at t = 749 has a multimodal distribution that a
Gaussian step (DDPM, DDIM) cannot represent. DDGAN (Xiao, Kreis & Vahdat 2022) trains the jumps
adversarially with a discriminator that sees the *pair* (next state, x_t) and the level; ADD,
UFOGen and GDD make that affordable by starting from a trained diffusion model, as done here.

Pieces (shapes: images (B, C, S, S) in [-1, 1]; k: (B,) int64 level indices in [0, K)):
- ``posterior_sample(scheduler, x_t, x0, t, t_next, noise)``: q(x_{t_next} | x_t, x0), the exact
  Gaussian of the forward process between two levels (t_next = -1: the clean image itself);
- ``FewStepGenerator(unet, levels)``: the trained UNet read as an x̂0 predictor at K levels,
  x̂0 = (x_t - sqrt(1 - ᾱ_t) ε_θ(x_t, t)) / sqrt(ᾱ_t), clamped to [-1, 1];
- ``PairDiscriminator``: the course's PatchGAN on [next state, x_t, one-hot level planes] (2C + K channels);
- ``fewstep_step``: one fine-tune step, D on real vs fake pairs (+ R1), then G on
  adv_weight * softplus(-D(fake pair)) + rec_weight * ᾱ_t * ||x̂0 - x0||², then the EMA;
- ``fewstep_sample``: x_999 ~ N(0, I), then at each level predict x̂0 and draw the next level from
  the posterior; K network evaluations.
"""
from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .discriminator import Discriminator
from .ema import EMA
from .losses import discriminator_loss, generator_adv_loss

__all__ = ["FewStepConfig", "FewStepGenerator", "PairDiscriminator", "posterior_sample", "fewstep_step",
           "fewstep_sample", "level_timesteps", "fewstep_from_teacher", "fewstep_train", "load_fewstep",
           "weights_sha256", "teacher_record"]


def level_timesteps(scheduler, n_levels: int) -> list[int]:
    """The K noise levels, descending and starting at T - 1: trailing spacing, [999, 749, 499, 249] for K = 4."""
    if not isinstance(n_levels, int) or not 1 <= n_levels <= 8:
        raise ValueError(f"levels={n_levels!r}: use 1 to 8 levels (4 is DDGAN's choice)")
    return scheduler.timesteps_for(n_levels)


def posterior_sample(scheduler, x_t: torch.Tensor, x0: torch.Tensor, t, t_next, noise: torch.Tensor | None = None):
    """A draw of q(x_{t_next} | x_t, x0) for t_next < t (per sample; t_next = -1 returns x0).

    With a = ᾱ_t / ᾱ_{t_next} (the signal kept from t_next to t):
    mean = sqrt(ᾱ_{t_next}) (1 - a) / (1 - ᾱ_t) * x0 + sqrt(a) (1 - ᾱ_{t_next}) / (1 - ᾱ_t) * x_t,
    var  = (1 - a) (1 - ᾱ_{t_next}) / (1 - ᾱ_t). For t_next = t - 1 this is DDPM's posterior (eq. 7).
    """
    t = torch.as_tensor(t, device=x_t.device).reshape(-1)
    t_next = torch.as_tensor(t_next, device=x_t.device).reshape(-1)
    ah = torch.cat([torch.ones(1, device=x_t.device), scheduler.alpha_hat.to(x_t.device)])   # ᾱ at t + 1
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    ah_t, ah_n = ah[t + 1].reshape(shape), ah[t_next + 1].reshape(shape)
    a = ah_t / ah_n
    mean = ah_n.sqrt() * (1 - a) / (1 - ah_t) * x0 + a.sqrt() * (1 - ah_n) / (1 - ah_t) * x_t
    var = (1 - a) * (1 - ah_n) / (1 - ah_t)
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + var.clamp(min=0).sqrt() * noise      # var = 0 where t_next = -1: mean = x0


class FewStepGenerator(nn.Module):
    """A trained noise-predicting UNet read as an x̂0 predictor at K levels (``levels``, descending).

    ``forward(x_t, k)``: x_t (B, C, S, S), k (B,) level indices -> x̂0 (B, C, S, S) in [-1, 1].
    ``unclamped(x_t, k)`` is the same before the clamp (for the reconstruction loss).
    """

    def __init__(self, unet: nn.Module, scheduler, levels):
        super().__init__()
        self.unet, self.scheduler = unet, scheduler
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.long), persistent=False)
        if not torch.all(self.levels[:-1] > self.levels[1:]) or int(self.levels.min()) < 0:
            raise ValueError(f"levels {list(levels)} must be distinct timesteps in descending order")
        self.in_ch = unet.in_ch

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def unclamped(self, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = self.levels.to(x_t.device)[k]
        return self.scheduler.predict_x0(x_t, t, self.unet(x_t, t))

    def forward(self, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.unclamped(x_t, k).clamp(-1, 1)


class PairDiscriminator(nn.Module):
    """D(next state, x_t, level): the course's PatchGAN on 2C + K input channels, the level given as
    one-hot constant planes. Scores (B, 1, h, w) as Discriminator's; 1x1 at 32 px."""

    def __init__(self, in_ch: int, base: int, n_levels: int):
        super().__init__()
        self.in_ch, self.base, self.n_levels = in_ch, base, n_levels
        self.net = Discriminator(2 * in_ch + n_levels, base)

    def pair(self, x_next: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The stacked input (B, 2C + K, S, S)."""
        planes = F.one_hot(k, self.n_levels).to(x_t.dtype)[:, :, None, None].expand(-1, -1, *x_t.shape[-2:])
        return torch.cat([x_next, x_t, planes], dim=1)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.net(stacked)


@dataclass(frozen=True)
class FewStepConfig:
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
        if self.adv_weight == 0 and self.rec_weight == 0:
            raise ValueError("adv_weight and rec_weight are both 0: nothing would be trained")
        if not 0 <= self.ema_decay < 1 or self.r1_every < 1:
            raise ValueError("ema_decay must lie in [0, 1) and r1_every be >= 1")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


def _next_t(G: FewStepGenerator, k: torch.Tensor) -> torch.Tensor:
    """The timestep after level k: the next level, or -1 (clean) after the last one."""
    padded = torch.cat([G.levels, torch.tensor([-1], device=G.levels.device)]).to(k.device)
    return padded[k + 1]


def fewstep_step(G: FewStepGenerator, D: PairDiscriminator | None, opt_G, opt_D, x0: torch.Tensor,
                 cfg: FewStepConfig, step: int, ema: EMA | None = None, generator: torch.Generator | None = None) -> dict:
    """One fine-tune step on real images x0 (B, C, S, S) in [-1, 1]; returns floats rec, adv, D, D_real, D_fake.

    Every sample gets a random level k; real pair = (x_{t_next} ~ q(.|x_t, x0), x_t), fake pair =
    (x_{t_next} ~ q(.|x_t, x̂0), x_t) with the same posterior noise. D (skipped when adv_weight = 0)
    learns real vs fake pairs; G minimises adv_weight * softplus(-D(fake)) with D frozen plus
    rec_weight * mean(ᾱ_t (x̂0 - x0)²).
    """
    dev, B = x0.device, x0.shape[0]
    draw = dict(generator=generator, device="cpu")
    k = torch.randint(0, G.n_levels, (B,), **draw).to(dev)
    t, t_next = G.levels.to(dev)[k], _next_t(G, k)
    x_t, _ = G.scheduler.add_noise(x0, t, torch.randn(x0.shape, **draw).to(dev))
    post_noise = torch.randn(x0.shape, **draw).to(dev)
    x0_raw = G.unclamped(x_t, k)
    x0_hat = x0_raw.clamp(-1, 1)
    a_hat = G.scheduler.alpha_hat.to(dev)[t].reshape(-1, 1, 1, 1)
    rec = (a_hat * (x0_raw - x0) ** 2).mean()
    nan = torch.tensor(float("nan"), device=dev)
    adv, D_loss, D_real, D_fake, G_loss = nan, nan, nan, nan, cfg.rec_weight * rec
    if cfg.adv_weight > 0:
        real = D.pair(posterior_sample(G.scheduler, x_t, x0, t, t_next, post_noise), x_t, k)
        fake = D.pair(posterior_sample(G.scheduler, x_t, x0_hat, t, t_next, post_noise), x_t, k)
        r1 = cfg.r1_gamma * cfg.r1_every if step % cfg.r1_every == 0 else 0.0
        D_loss, D_real, D_fake = discriminator_loss(D, real, fake.detach(), r1)
        opt_D.zero_grad(set_to_none=True)
        D_loss.backward()
        opt_D.step()
        adv = generator_adv_loss(D, fake, freeze_D=True)
        G_loss = G_loss + cfg.adv_weight * adv
    opt_G.zero_grad(set_to_none=True)
    G_loss.backward()
    opt_G.step()
    if ema is not None:
        ema.update(G.unet, step)
    values = dict(zip(("rec", "adv", "D", "D_real", "D_fake"),
                      torch.stack([v.detach().float() for v in (rec, adv, D_loss, D_real, D_fake)]).tolist()))
    if not math.isfinite(values["rec"]) or (cfg.adv_weight > 0 and not math.isfinite(values["D"])):
        raise FloatingPointError(f"few-step fine-tune step {step + 1}: a loss is not finite ({values}); "
                                 f"lower lr_G={cfg.lr_G} / lr_D={cfg.lr_D} or adv_weight={cfg.adv_weight}")
    return values


@torch.inference_mode()
def fewstep_sample(G: FewStepGenerator, n: int, image_size: int, seed: int | None = 0, device=None,
                   batch_size: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """n images (n, C, S, S) in [-1, 1] in K network evaluations: x_{levels[0]} ~ N(0, I), then per
    level x̂0 = G(x_t, k) and the next level from q(. | x_t, x̂0); the last level outputs x̂0."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    dev = device or next(G.parameters()).device
    gen = generator if generator is not None else torch.Generator().manual_seed(seed) if seed is not None else None
    was_training = G.training
    G.eval()
    out = []
    for start in range(0, n, batch_size or n):
        b = min(batch_size or n, n - start)
        x = torch.randn(b, G.in_ch, image_size, image_size, generator=gen).to(dev)   # x_{T-1}: ᾱ ≈ 4e-5
        for level in range(G.n_levels):
            k = torch.full((b,), level, dtype=torch.long, device=dev)
            x0_hat = G(x, k)
            if level == G.n_levels - 1:
                x = x0_hat
            else:
                noise = torch.randn(x.shape, generator=gen).to(dev)
                x = posterior_sample(G.scheduler, x, x0_hat, G.levels[level], G.levels[level + 1], noise)
        out.append(x)
    G.train(was_training)
    return torch.cat(out)


def fewstep_from_teacher(unet: nn.Module, scheduler, cfg: FewStepConfig, device=None):
    """(G, D, opt_G, opt_D, ema): a copy of the teacher UNet as a K-level x̂0 predictor, a fresh pair
    discriminator of the same base width (None when adv_weight = 0), Adam for both, and the EMA."""
    torch.manual_seed(cfg.seed)
    G = FewStepGenerator(copy.deepcopy(unet).train().requires_grad_(True), scheduler,
                         level_timesteps(scheduler, cfg.levels))
    dev = device or next(unet.parameters()).device
    G = G.to(dev)
    D = PairDiscriminator(G.in_ch, unet.base, cfg.levels).to(dev) if cfg.adv_weight > 0 else None
    opt_G = torch.optim.Adam(G.unet.parameters(), lr=cfg.lr_G, betas=cfg.adam_betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_D, betas=cfg.adam_betas) if D is not None else None
    ema = EMA(G.unet, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return G, D, opt_G, opt_D, ema


# ---------------------------------------------------------------------------------------- runs and files
def weights_sha256(state_dict: dict) -> str:
    """SHA-256 of a network's weights as float32, in key order: names a teacher by what it is, not by a path."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def teacher_record(path) -> dict:
    """What a few-step checkpoint keeps of its teacher: its model and scheduler fields, config and weight hash."""
    from .checkpoints import read_checkpoint
    ckpt = read_checkpoint(path)
    if ckpt["model"]["kind"] != "diffusion":
        raise ValueError(f"{path} holds a {ckpt['model']['kind']!r} model; --init needs a diffusion model "
                         "(a train checkpoint or a data/pretrained export)")
    weights = ckpt["G_ema"] if ckpt.get("G_ema") is not None else ckpt["G"]
    return {"model": ckpt["model"], "scheduler": ckpt["scheduler"], "config": ckpt["config"],
            "sha256": weights_sha256(weights)}


def fewstep_state(G: FewStepGenerator, D, opt_G, opt_D, ema, cfg: FewStepConfig, step: int, history: dict,
                  teacher: dict, image_size: int) -> dict:
    """The payload of a "fewstep" checkpoint (diffgan_lib.checkpoints' format rule: a new model.kind)."""
    from .checkpoints import history_to_tensors, unet_fields
    return {"model": {"kind": "fewstep", **unet_fields(G.unet),
                      "D_base": D.base if D is not None else G.unet.base, "levels": G.levels.tolist(),
                      "image_size": image_size, "teacher": teacher},
            "scheduler": G.scheduler.config(), "config": cfg.to_dict(),
            "G": G.unet.state_dict(), "G_ema": ema.state_dict() if ema is not None else None,
            "D": D.state_dict() if D is not None else None,
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict() if opt_D is not None else None, "scaler": None,
            "step": step, "epoch": 0, "position": [0, 0], "data": None, "history": history_to_tensors(history)}


def load_fewstep(ckpt: dict, which: str = "ema"):
    """(G FewStepGenerator, D PairDiscriminator or None) from a "fewstep" checkpoint dict, in eval mode, on the CPU."""
    from .checkpoints import build_models, load_state
    from .scheduler import DiffusionScheduler
    m = ckpt["model"]
    unet, _ = build_models(m)
    load_state(unet, ckpt["G_ema"] if which == "ema" and ckpt.get("G_ema") is not None else ckpt["G"], "G",
               ckpt.get("path", "checkpoint"))
    G = FewStepGenerator(unet, DiffusionScheduler(**(ckpt["scheduler"] or {})), m["levels"])
    D = None
    if ckpt.get("D") is not None:
        D = PairDiscriminator(m["in_ch"], m["D_base"], len(m["levels"]))
        load_state(D, ckpt["D"], "D", ckpt.get("path", "checkpoint"))
    return G.eval(), (D.eval() if D is not None else None)


def fewstep_train(init, dataloader, cfg: FewStepConfig, max_steps: int, save_dir, resume=None, device=None,
                  progress: bool = True, overwrite: bool = False, teacher: dict | None = None) -> Path:
    """Fine-tune a few-step generator from the diffusion checkpoint ``init`` for ``max_steps`` steps
    (in total, counted from the start, also when resuming from ``resume``); writes
    ``save_dir/final_model.pth`` (kind "fewstep") and history.json, and returns its path.

    Single process. Each step's levels and noise come from a generator seeded by (seed, step), and
    each epoch's order from (seed, epoch), so a resumed run continues as the straight one would.
    Ctrl-C stops after the current step and saves ``interrupted.pth``. ``teacher`` is
    ``teacher_record(init)`` when the caller has read it already.
    """
    from tqdm.auto import tqdm

    from .checkpoints import load_checkpoint, load_training_state, save_history_json, write_checkpoint
    from .device import pick_device
    from .distributed import DistContext, launched
    from .folders import FolderLock, check_run_folder, check_writable, clear_run, local_path
    from .training import StopSignals, _batches, _images, _mix, check_batch
    if launched():
        raise ValueError("the few-step fine-tune runs in one process; start it with python, not torchrun")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r} must be a positive int")
    dev = pick_device(device)
    save_dir = check_writable(local_path(save_dir, "--out"), "--out")
    teacher_path = local_path(init, "--init")
    lock = FolderLock(save_dir)
    lock.acquire()
    try:
        old = check_run_folder(save_dir, resume, overwrite)
        if old:
            clear_run(save_dir, old)
        teacher = teacher or teacher_record(teacher_path)
        unet, _, scheduler = loaded = load_checkpoint(teacher_path, device=dev)
        image_size = loaded.image_size or 32
        if resume is not None:
            state = load_training_state(local_path(resume, "--resume"))
            if state["model"]["kind"] != "fewstep" or state["model"]["teacher"]["sha256"] != teacher["sha256"]:
                raise ValueError(f"{resume} is not a few-step run of the teacher {teacher_path} (its kind or the "
                                 "teacher's weights differ); resume with the --init it was made from")
            cfg = FewStepConfig(**{**state["config"], "adam_betas": tuple(state["config"]["adam_betas"])})
        G, D, opt_G, opt_D, ema = fewstep_from_teacher(unet, scheduler, cfg, dev)
        step, history = 0, {k: [] for k in ("step", "rec", "adv", "D", "D_real", "D_fake")}
        if resume is not None:
            G.unet.load_state_dict(state["G"])
            if ema is not None and state.get("G_ema") is not None:
                ema.load_state_dict(state["G_ema"])
            if D is not None and state.get("D") is not None:
                D.load_state_dict(state["D"])
            opt_G.load_state_dict(state["opt_G"])
            if opt_D is not None and state.get("opt_D") is not None:
                opt_D.load_state_dict(state["opt_D"])
            step, history = state["step"], {k: list(v) for k, v in state["history"].items()}
        per_epoch = len(dataloader)
        bar = tqdm(total=max_steps, initial=step, unit="step", disable=not progress, desc="few-step fine-tune")
        with StopSignals(DistContext(device=dev), say=bar.write) as stop:
            for epoch, batch, _ in _batches(dataloader, cfg.seed, (step // per_epoch, step % per_epoch), 10**9):
                if step >= max_steps or stop.requested:
                    break
                x0 = _images(batch)
                check_batch(x0, G.in_ch, image_size, step + 1)
                gen = torch.Generator().manual_seed(_mix(4, cfg.seed, step))
                values = fewstep_step(G, D, opt_G, opt_D, x0.to(dev).float(), cfg, step, ema, generator=gen)
                step += 1
                for k, v in dict(step=step, **values).items():
                    history[k].append(v)
                bar.update(1)
                bar.set_postfix_str(" | ".join(f"{k} {values[k]:.4f}" for k in ("rec", "adv", "D")))
        bar.close()
        stopped = stop.requested is not None and step < max_steps
        path = write_checkpoint(save_dir / ("interrupted.pth" if stopped else "final_model.pth"),
                                fewstep_state(G, D, opt_G, opt_D, ema, cfg, step, history, teacher, image_size))
        save_history_json(history, save_dir)
        if stopped:
            raise KeyboardInterrupt(f"stopped at step {step}; saved {path}; continue with --resume {path}")
        return path
    finally:
        lock.release()
