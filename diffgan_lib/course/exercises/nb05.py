"""Exercises of notebook 05, training: ``train_step`` (one step of pure diffusion by hand, EMA included),
``gated_adv_loss`` (the hybrid's t-gated GAN term) and ``rank_shard`` (what DDP's sampler gives a rank)."""
from __future__ import annotations

import copy
import math

import torch
from torch.utils.data import DistributedSampler

from ...engine import TrainConfig, build_run, train_step as _library_step
from . import Exercise
from . import close

__all__ = ["train_step", "gated_adv_loss", "rank_shard"]


# ----------------------------------------------------------------------------- 1. train_step
def _train_step(G, G_ema, opt, scheduler, x0, t, noise, decay):
    a = scheduler.alpha_hat[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise              # the forward process in one shot (eq. 4)
    loss = torch.nn.functional.mse_loss(G(x_t, t), noise)    # G predicts the noise it was given
    opt.zero_grad()                                           # no gradient left over from earlier steps
    loss.backward()
    opt.step()
    with torch.no_grad():                                     # after the step: towards the new weights
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.mul_(decay).add_(p, alpha=1 - decay)
    return loss.item()


_STEPS = 2     # the check runs two steps: Adam's first step barely depends on the gradient's size


def _step_problem():
    """A tiny run (UNet base 8, 8 px, T = 50, seed 0) and what the check feeds each of its steps."""
    run = build_run(TrainConfig(image_size=None, base=8, seed=0, precision="fp32"), timesteps=50, device="cpu")
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():          # an average that already differs from G, as it does after the first steps
        for p in run.ema.module.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    draws = [(torch.randint(0, 50, (4,), generator=g), torch.randn(4, 1, 8, 8, generator=g)) for _ in range(_STEPS)]
    return run, x0, draws


def _student_copies(run):
    """G and its Adam (copied together, so the optimiser holds the copy's weights), the EMA copy; stale
    gradients planted in .grad, as a previous step would leave them."""
    G, opt = copy.deepcopy((run.G, run.opt_G))
    for p in G.parameters():
        p.grad = torch.ones_like(p)
    return G, copy.deepcopy(run.ema.module), opt


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _loss_problem(loss, G_before, scheduler, x0, t, noise):
    """Why a first-step loss differs from the library's, for the usual slips; None if none explains it."""
    a = scheduler.alpha_hat[t].view(-1, 1, 1, 1)
    mse = torch.nn.functional.mse_loss
    with torch.no_grad():
        right_x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if math.isclose(loss, mse(G_before(right_x_t, t), x0).item(), rel_tol=1e-5):
            return "the loss compares G's output with the clean image; G is a noise predictor"
        if math.isclose(loss, mse(G_before(a * x0 + (1 - a) * noise, t), noise).item(), rel_tol=1e-5):
            return "x_t is not eq. 4's: the weights of x0 and of the noise are the square roots of alpha_hat and 1 - alpha_hat"
        if math.isclose(loss, mse(G_before(x0, t), noise).item(), rel_tol=1e-5):
            return "G must see the noised image x_t, not the clean x0"
    return None


def _ema_problem(ema, G, G_prev, ema_prev, d):
    """Why the EMA after one step is wrong, for the usual slips."""
    if close(ema, ema_prev):
        return "G_ema did not move: update it after the optimiser step"
    if close(ema, G):
        return "G_ema became a copy of G: the average should keep most of itself (the factor decay)"
    if close(ema, (1 - d) * ema_prev + d * G):
        return "the two weights are swapped: the old average keeps the factor decay, the new weights get 1 - decay"
    if close(ema, d * ema_prev + (1 - d) * G_prev):
        return "the average moved towards G's weights from *before* the step: update it after opt.step()"
    return "G is right, but G_ema's values are wrong"


def _test_train_step(fn):
    run, x0, draws = _step_problem()
    G, G_ema, opt = _student_copies(run)
    G_first = copy.deepcopy(G)
    for k, (t, noise) in enumerate(draws):
        d, G_prev, ema_prev = run.ema.current_decay(run.step), _params(G), _params(G_ema)
        loss = fn(G, G_ema, opt, run.scheduler, x0, t, noise, d)
        expected = _library_step(run, x0, t=t, noise=noise)["diff"]
        run.step += 1
        where = "" if k == 0 else "at the second step: "
        loss = loss.item() if torch.is_tensor(loss) and loss.numel() == 1 else loss
        if not isinstance(loss, float) or not math.isfinite(loss):
            return "return the step's loss as one Python float"
        if not math.isclose(loss, expected, rel_tol=1e-5, abs_tol=1e-7):
            return where + ((k == 0 and _loss_problem(loss, G_first, run.scheduler, x0, t, noise))
                            or "the loss differs from the library's step: check x_t (eq. 4) and what G's output is compared with")
        if close(_params(G), G_prev):
            return where + "the loss is right but G's weights did not change: backward, then one optimiser step"
        if not close(_params(G), _params(run.G)):
            return where + ("the loss is right but G's weights after the step are not the library's: were the "
                            "gradients that the check left in .grad cleared before backward?")
        if not close(_params(G_ema), _params(run.ema.module)):
            return where + _ema_problem(_params(G_ema), _params(G), G_prev, ema_prev, d)
    return None


def _probe_train_step(fn):
    run, x0, draws = _step_problem()
    G, G_ema, opt = _student_copies(run)
    return fn(G, G_ema, opt, run.scheduler, x0, *draws[0], run.ema.current_decay(0))


train_step = Exercise(
    "train_step", _test_train_step,
    hint_text="Five stages, in this order: noise the clean batch to the timesteps t (notebook 01); ask G what "
              "noise it sees there; score that answer; update G with the optimiser; move every weight of "
              "G_ema a small part of the way towards G's new weight. Two traps: .grad already holds numbers "
              "when your step begins, and the average must follow the weights after the update, not before.",
    reference=_train_step, probe=_probe_train_step,
    solution_note="\nThe library's train_step does exactly this for pure diffusion (adv_weight=0), with t and "
                  "the noise drawn from (seed, step, sample index), and decay = min(0.999, (1 + step) / (10 + step)).")


# ----------------------------------------------------------------------------- 2. gated_adv_loss
def _gated_adv_loss(D, x0_pred, t, t_max):
    keep = t < t_max                          # only the lightly noised images
    if not keep.any():
        return None                           # no adversarial term on this step
    scores = D(x0_pred[keep])
    return torch.nn.functional.softplus(-scores).mean()


def _gated_inputs():
    g = torch.Generator().manual_seed(5)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        D[1].weight.copy_(torch.randn(1, 16, generator=g))
    return D, torch.randn(6, 1, 4, 4, generator=g), torch.tensor([10, 900, 480, 499, 500, 750]), 500


def _test_gated(fn):
    D, x, t, t_max = _gated_inputs()
    out = fn(D, x, t, t_max)
    expected = _gated_adv_loss(D, x, t, t_max)
    if not torch.is_tensor(out) or out.dim() != 0:
        return "return a 0-d tensor (the mean over the kept images), or None when no image is kept"
    if close(out, torch.nn.functional.softplus(-D(x)).mean()):
        return "every image went in: keep only those with t < t_max"
    if close(out, torch.nn.functional.softplus(-D(x[t <= t_max])).mean()):
        return "t = t_max is not lightly noised enough: the rule is t < t_max, strictly"
    if close(out, torch.nn.functional.softplus(D(x[t < t_max])).mean()):
        return "that is D's loss on fakes; G wants D to call its fakes real: softplus(-score)"
    if not close(out, expected):
        return "wrong value"
    if fn(D, x, torch.full((6,), 900), t_max) is not None:
        return "when no image has t < t_max there is no term at all: return None"
    return None


gated_adv_loss = Exercise(
    "gated_adv_loss", _test_gated,
    hint_text="Build a boolean mask from t, index the batch with it, and handle the case where the mask is "
              "all False before calling D.",
    reference=_gated_adv_loss, probe=lambda fn: fn(*_gated_inputs()),
    solution_note="\nThe library's train_step does this with adv_t_max, after the warm-up, with D frozen.")


# ----------------------------------------------------------------------------- 3. rank_shard
def _rank_shard(n, world_size, rank):
    per_rank = -(-n // world_size)                        # every rank the same count: round up
    indices = list(range(n))
    indices += indices[:per_rank * world_size - n]        # pad by repeating the first images
    return indices[rank::world_size]                      # interleaved: rank, rank + W, rank + 2W, ...


_SHARD_CASES = ((8, 2, 1), (10, 4, 0), (10, 4, 3), (2048, 4, 2), (5, 8, 6), (7, 3, 2))


def _sampler_shard(n, world_size, rank):
    return list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))


def _test_shard(fn):
    for n, world, rank in _SHARD_CASES:
        out, expected = fn(n, world, rank), _sampler_shard(n, world, rank)
        if out is None or not hasattr(out, "__len__"):
            return "return the list of image indices that this rank reads"
        out = [int(i) for i in out]
        if out == expected:
            continue
        case = f"n = {n} images, {world} processes, rank {rank}"
        if len(out) != len(expected):
            return (f"{case}: every rank must read the same number of images, or the ranks would take a different "
                    "number of steps and wait for ever at the gradient all-reduce; pad the list first")
        if sorted(out) == sorted(expected):
            return f"{case}: the right images in the wrong order: the sampler deals them out like cards"
        return f"{case}: not the indices DistributedSampler gives this rank"
    return None


rank_shard = Exercise(
    "rank_shard", _test_shard,
    hint_text="DistributedSampler (without shuffling) deals the indices 0 .. n - 1 out like cards to the W "
              "ranks. When n is not a multiple of W, some ranks would get one card fewer; the sampler "
              "prevents that by dealing a few indices from the start of the list a second time.",
    reference=_rank_shard, probe=lambda fn: fn(8, 2, 1),
    solution_note="\nWith shuffling the sampler first permutes the indices with a seed shared by all ranks "
                  "(set_epoch changes it every epoch), then pads and deals them the same way.")
