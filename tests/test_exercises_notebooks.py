"""The notebooks' exercises (diffgan_lib.course.exercises.nb01 ... nb04, nb08 ... nb11): every reference solution passes its
own check, typical mistakes fail with a helpful message, and starters count as "not attempted"."""
import importlib
import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffgan_lib.course import viz
from diffgan_lib.course.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise

MODULES = ("nb01", "nb02", "nb03", "nb04", "nb08", "nb09", "nb10", "nb11")


def _sqrt_free_add_noise(x0, t, eps, alpha_hat):
    a = alpha_hat[t].view(-1, 1, 1, 1)
    return a * x0 + (1 - a) * eps


def _fake_unclamped(G, x_t, t, ah):
    a = ah[t].view(-1, 1, 1, 1)
    return (x_t - (1 - a).sqrt() * G(x_t, t)) / a.sqrt()


def _fake_two_passes(G, x_t, t, ah):
    G(x_t, t)                                        # a second, wasted forward pass
    return _fake_unclamped(G, x_t, t, ah).clamp(-1, 1)


def _batch(x0, ah, g, low=0, high=None, draw=torch.randn, sqrt=True):
    t = torch.randint(low, high or len(ah), (len(x0),), generator=g)
    eps = draw(x0.shape, generator=g)
    a = ah[t.clamp(max=len(ah) - 1)].view(-1, 1, 1, 1)
    return (a.sqrt() * x0 + (1 - a).sqrt() * eps if sqrt else a * x0 + (1 - a) * eps), t, eps


def _cosine(T, cap=True, points=1):
    u = torch.arange(T + points, dtype=torch.float64) / T
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    b = 1 - f[1:] / f[:-1]
    return (b.clamp(max=0.999) if cap else b).float()


def _d_two_calls(D, real, fake):
    return F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()


def _d_scores(D, real, fake, detach=True, sign=1):
    s = D(torch.cat([real, fake.detach() if detach else fake]))
    return F.softplus(-sign * s[:len(real)]).mean() + F.softplus(sign * s[len(real):]).mean()


def _adv(D, fake, restore="own", sign=-1):
    flags = [p.requires_grad for p in D.parameters()]
    D.requires_grad_(False)
    loss = F.softplus(sign * D(fake)).mean()
    if restore == "own":
        for p, flag in zip(D.parameters(), flags):
            p.requires_grad_(flag)
    elif restore == "all":
        D.requires_grad_(True)
    return loss


def _side_loop(layers, side, div):
    for k, s, p in layers:
        side = div(side + 2 * p - k, s) + 1
    return side


def _iterate(x0, betas, eps):
    x = x0.clone()
    for s in range(len(eps)):
        x = (1 - betas[s]).sqrt() * x + betas[s].sqrt() * eps[s]
    return x


def _guided_two_calls(G, x, t, labels, w):
    null = torch.full_like(labels, G.num_classes)
    eps_c, eps_u = G(x, t, labels), G(x, t, null)
    return eps_u + w * (eps_c - eps_u)


def _guided_swapped(G, x, t, labels, w):
    null = torch.full_like(labels, G.num_classes)
    eps_c, eps_u = G(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return eps_c + w * (eps_u - eps_c)


def _ddim_chain(G, sched, x, labels, w, steps, eps_fn, last=-1):
    ts = sched.timesteps_for(steps)
    for t, t_prev in zip(ts, ts[1:] + ([last] if last is not None else [])):
        x = sched.ddim_step(eps_fn(G, x, t, labels, w), t, t_prev, x)
    return x


def _ddim_unguided(G, sched, x, labels, w, steps):      # the conditional prediction alone: w ignored
    return _ddim_chain(G, sched, x, labels, w, steps, lambda G, x, t, y, w: G(x, torch.full((len(x),), t), y))


def _ddim_one_short(G, sched, x, labels, w, steps):     # stops at the last visited timestep
    from diffgan_lib.core import guided_eps
    return _ddim_chain(G, sched, x, labels, w, steps,
                       lambda G, x, t, y, w: guided_eps(G, x, torch.full((len(x),), t), y, w), last=None)


def _ddim_int_t(G, sched, x, labels, w, steps):         # t given to the network as a Python int
    from diffgan_lib.core import guided_eps
    return _ddim_chain(G, sched, x, labels, w, steps, lambda G, x, t, y, w: guided_eps(G, x, t, y, w))


def _class_z(loss, y):
    z = loss.copy()
    for k in np.unique(y):
        z[y == k] = (loss[y == k] - loss[y == k].mean()) / loss[y == k].std()
    return z


def _auroc(score, member):
    from diffgan_lib.eval import auroc
    return auroc(score, member)


def _attack_centred_only(loss, y, member):             # centred within each class, not divided by its spread
    return _auroc(-(loss - np.array([loss[y == k].mean() for k in np.unique(y)])[y]), member)


def _equal_split(y, n):      # ignores the class balance: n / K each, the rest to the last class
    k = len(np.bincount(y))
    return [n // k] * (k - 1) + [n - n // k * (k - 1)]


def _args(t, d):
    return t.float()[:, None] * 10000.0 ** (-torch.arange(d // 2) / (d // 2))


def _coef_swapped(ah_t, ah_n):
    a = ah_t / ah_n
    return a.sqrt() * (1 - ah_n) / (1 - ah_t), ah_n.sqrt() * (1 - a) / (1 - ah_t)


def _coef_ddim(ah_t, ah_n):      # DDIM's deterministic weights (eta = 0), not the posterior mean
    return ah_n.sqrt() - (ah_t * (1 - ah_n) / (1 - ah_t)).sqrt(), ((1 - ah_n) / (1 - ah_t)).sqrt()


def _chain_noisy_end(predict_x0, x, levels, noises):
    from diffgan_lib.core import posterior_sample
    from diffgan_lib import DiffusionScheduler
    s = DiffusionScheduler(1000, device="cpu")
    for k, t in enumerate(levels[:-1]):
        x = posterior_sample(s, x, predict_x0(x, k), t, levels[k + 1], noises[k])
    return x                                       # forgot the last level's x̂0


def _unet_mistake(G, x, t, mistake):
    from diffgan_lib.core.unet import timestep_embedding
    emb = None if mistake == "no_emb" else G.time_mlp(timestep_embedding(t, G.base))
    up = lambda h: F.interpolate(h, scale_factor=2)                                  # noqa: E731
    cat = (lambda a, b: torch.cat([b, a], 1)) if mistake == "skip_first" else (lambda a, b: torch.cat([a, b], 1))
    d1 = G.down1(x, emb)
    d2 = G.down2(G.pool(d1), emb)
    d3 = G.down3(G.pool(d2), emb)
    h = G.mid(G.pool(d3), emb)
    for block, skip in ((G.up3, d3), (G.up2, d2), (G.up1, d1)):
        h = block(cat(up(h), skip), emb)
    return h if mistake == "no_final" else G.final(h)


# (module, exercise) -> [(wrong answer, a fragment of the message it must get)]
def _euler_forward(v, x, steps):
    """Euler's steps taken towards the noise (+dt v): the usual slip."""
    for t in torch.linspace(1.0, 0.0, steps + 1)[:-1]:
        x = x + v(x, float(t)) / steps
    return x


WRONG = {
    ("nb01", "add_noise"): [
        (_sqrt_free_add_noise, "square roots"),
        (lambda x0, t, eps, ah: x0 + eps, "wrong values"),
        (lambda x0, t, eps, ah: x0[:1], "shape"),
    ],
    ("nb01", "betas_from_alpha_hat"): [
        (lambda ah: 1 - ah, "all the noise up to t"),
        (lambda ah: 1 - ah[1:] / ah[:-1], "lost a step"),
        (lambda ah: torch.zeros_like(ah), "wrong values"),
    ],
    ("nb01", "noisy_batch"): [
        (lambda x0, ah, g: _batch(x0, ah, g, low=1, high=len(ah) + 1), "timesteps run 0 .. T-1"),
        (lambda x0, ah, g: _batch(x0, ah, g, high=len(ah) - 1), "which end"),
        (lambda x0, ah, g: _batch(x0, ah, g, draw=torch.rand), "standard normal"),
        (lambda x0, ah, g: _batch(x0, ah, g, sqrt=False), "square roots"),
        (lambda x0, ah, g: _batch(x0, ah, torch.Generator().manual_seed(torch.seed() % 1000)), "generator"),
        (lambda x0, ah, g: _batch(x0, ah, g)[:2], "three things"),
    ],
    ("nb01", "cosine_betas"): [
        (lambda T: _cosine(T, cap=False), "cap every beta at 0.999"),
        (lambda T: _cosine(T, points=0), "T + 1 points"),
        (lambda T: torch.cat([torch.zeros(1), _cosine(T)[:-1]]), "beta_0 is 0"),
        (lambda T: torch.cumprod(1 - _cosine(T), 0), "alpha_hats"),
        (lambda T: _cosine(T) * 0.9, "wrong values"),
        (lambda T: _cosine(T).tolist(), "not a list"),
    ],
    ("nb02", "bottleneck_shape"): [
        (lambda b, c, s, base: (b, 4 * base, s // 8, s // 8), "C entry"),
        (lambda b, c, s, base: (b, 8 * base, s // 4, s // 4), "H, W entries"),
        (lambda b, c, s, base: 8 * base, "tuple of four"),
    ],
    ("nb02", "doubleconv_params"): [
        (lambda i, o: 9 * i * o + o + 9 * o * o + o, "GroupNorm"),
        (lambda i, o: 9 * i * o + 9 * o * o + 4 * o, "bias"),
        (lambda i, o: 9 * i * o + 9 * o * o, "wrong count"),
    ],
    ("nb02", "embedding"): [
        (lambda t, d: torch.cat([torch.sin(_args(t, d)), torch.cos(_args(t, d))], 1), "swapped"),
        (lambda t, d: torch.zeros(len(t), d), "wrong values"),
        (lambda t, d: torch.zeros(len(t), d // 2), "shape"),
    ],
    ("nb02", "unet_forward"): [
        (lambda G, x, t: _unet_mistake(G, x, t, "skip_first"), "concatenation order"),
        (lambda G, x, t: _unet_mistake(G, x, t, "no_emb"), "time embedding"),
        (lambda G, x, t: _unet_mistake(G, x, t, "no_final"), "G.final"),
        (lambda G, x, t: G(x, t) + 0.1, "wrong values"),
        (lambda G, x, t: G.up3(G.down1(x)), "raised"),
    ],
    ("nb03", "score_side"): [
        (lambda layers, n: _side_loop(layers, n, lambda a, b: a / b), "floor division"),
        (lambda layers, n: _side_loop(layers, n, lambda a, b: a // b), "raise a ValueError"),
        (lambda layers, n: 1, "1x1"),
        (lambda layers, n: n // 8, "wrong side"),
    ],
    ("nb03", "receptive_field"): [
        (lambda layers: 1 + sum(k - 1 for k, _, _ in layers), "ignored the strides"),
        (lambda layers: viz.receptive_box(layers, 0)[1] - viz.receptive_box(layers, 0)[0] + 2, "wrong receptive"),
        (lambda layers: 46, "wrong receptive field"),
    ],
    ("nb03", "patch_box"): [
        (lambda layers, i: (viz.receptive_box(layers, i)[0], viz.receptive_box(layers, i)[1] - 1), "one past"),
        (lambda layers, i: (max(0, viz.receptive_box(layers, i)[0]), viz.receptive_box(layers, i)[1]), "padding"),
        (lambda layers, i: (viz.receptive_box(layers, i)[0] + 1, viz.receptive_box(layers, i)[1] + 1), "shifted"),
        (lambda layers, i: (8 * i - 7, 8 * i + 33), "wrong size"),
        (lambda layers, i: 46, "two ints"),
    ],
    ("nb04", "d_loss"): [
        (_d_two_calls, "D ran 2 times"),
        (lambda D, r, f: _d_scores(D, r, f, detach=False), "cut the fake"),
        (lambda D, r, f: _d_scores(D, r, f, sign=-1), "signs are swapped"),
        (lambda D, r, f: _d_scores(D, r, f).item(), ".item()"),
        (lambda D, r, f: F.softplus(-D(r)).mean(), "wrong values"),
    ],
    ("nb04", "corrected_fake"): [
        (lambda G, x_t, t, ah: G(x_t, t), "a noise estimate"),
        (_fake_unclamped, "clamp it"),
        (lambda G, x_t, t, ah: x_t, "the noisy input"),
        (lambda G, x_t, t, ah: (x_t - (1 - ah[t].view(-1, 1, 1, 1)).sqrt() * G(x_t, t)).clamp(-1, 1), "scaled down"),
        (_fake_two_passes, "one forward pass"),
        (lambda G, x_t, t, ah: x_t * 0, "wrong values"),
    ],
    ("nb04", "frozen_adv_loss"): [
        (lambda D, fake: F.softplus(-D(fake)).mean(), "received gradient"),
        (lambda D, fake: _adv(D, fake, restore="all"), "own setting"),
        (lambda D, fake: _adv(D, fake, restore="none"), "still frozen"),
        (lambda D, fake: _adv(D, fake.detach()), "no gradient can reach G"),
        (lambda D, fake: _adv(D, fake, sign=1), "which sign"),
    ],
    ("nb08", "posterior_mean"): [
        (_coef_swapped, "swapped"),
        (_coef_ddim, "which of the two images"),
        (lambda a, b: (a, b, a), "two things"),
    ],
    ("nb08", "pair_input"): [
        (lambda xn, xt, k, K: torch.cat([xt, xn, F.one_hot(k, K).float()[:, :, None, None].expand(-1, -1, 8, 8)], 1),
         "swapped"),
        (lambda xn, xt, k, K: torch.cat([xn, xt], 1), "shape"),
        (lambda xn, xt, k, K: torch.cat([xn, xt, torch.zeros(3, K, 8, 8)], 1), "level planes"),
    ],
    ("nb08", "fewstep_chain"): [
        (_chain_noisy_end, "return x̂0"),
        (lambda p, x, levels, noises: p(x, 0), "wrong values"),
    ],
    ("nb09", "guided_prediction"): [
        (_guided_two_calls, "call G once"),
        (_guided_swapped, "swapped"),
        (lambda G, x, t, labels, w: G(x, t, labels), "wrong values"),
    ],
    ("nb09", "label_dropout"): [
        (lambda y, p, K: torch.where(torch.rand(y.shape) < p, torch.zeros_like(y), y), "'no class' token"),
        (lambda y, p, K: torch.where(torch.rand(y.shape) > p, torch.full_like(y, K), y), "you dropped"),
        (lambda y, p, K: y.float(), "int64"),
    ],
    ("nb09", "guided_ddim"): [
        (lambda G, sched, x, labels, w, steps: x, "did not change"),
        (_ddim_unguided, "does not depend on w"),
        (_ddim_one_short, "one step short"),
        (_ddim_int_t, "(B,) int64 tensor"),
    ],
    ("nb10", "balanced_accuracy"): [
        (lambda y, p: float((y == p).mean()), "plain accuracy"),
        (lambda y, p: float(np.mean([(p[y == k] == k).mean() for k in (0, 1)])), "3 classes"),
        (lambda y, p: "high", "one number"),
    ],
    ("nb10", "stratified_attack"): [
        (lambda loss, y, member: _auroc(-loss, member), "still sees the class"),
        (lambda loss, y, member: _auroc(-(loss - loss.mean()) / loss.std(), member), "still sees the class"),
        (_attack_centred_only, "not on one scale"),
        (lambda loss, y, member: 1 - _auroc(-_class_z(loss, y), member), "wrong way round"),
        (lambda loss, y, member: "low", "one number"),
    ],
    ("nb10", "class_counts"): [
        (lambda y, n: [round(c) for c in np.bincount(y) / len(y) * n], "add up to"),
        (lambda y, n: [int(c) for c in np.floor(np.bincount(y) / len(y) * n)], "add up to"),
        (_equal_split, "wrong counts"),
        (lambda y, n: 3, "as a list"),
    ],
    ("nb11", "flow_matching_loss"): [
        (lambda m, x0, t, e: ((m((1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * e, 1000 * t) - (x0 - e)) ** 2)
         .mean(), "wrong way"),
        (lambda m, x0, t, e: ((m(t.view(-1, 1, 1, 1) * x0 + (1 - t.view(-1, 1, 1, 1)) * e, 1000 * t) - (e - x0)) ** 2)
         .mean(), "t = 0 must be the image"),
        (lambda m, x0, t, e: ((m((1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * e, t) - (e - x0)) ** 2)
         .mean(), "TIME_SCALE"),
        (lambda m, x0, t, e: (m((1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * e, 1000 * t) - (e - x0)) ** 2,
         "one number"),
    ],
    ("nb11", "euler_sample"): [
        (lambda v, x, n: x, "wrong values"),
        (_euler_forward, "moved towards the noise"),
    ],
    ("nb11", "eps_to_velocity"): [
        (lambda e, x, t: e - x, "divide by 1 - t"),
        (lambda e, x, t: -(e - (x - t.view(-1, 1, 1, 1) * e) / (1 - t.view(-1, 1, 1, 1))), "not x0 - eps"),
    ],
    ("nb01", "iterate_forward"): [
        (lambda x0, b, e: x0.clone(), "did not change"),
        (lambda x0, b, e: _iterate(x0, b, e[:-1]), "one step short"),
        (lambda x0, b, e: _iterate(x0, 1 - b, e), "weights are swapped"),
    ],
}


def _exercises():
    for mod in MODULES:
        m = importlib.import_module(f"diffgan_lib.course.exercises.{mod}")
        for name, obj in vars(m).items():
            if isinstance(obj, Exercise):
                yield mod, name, obj


ALL = list(_exercises())


def test_at_least_three_exercises_per_notebook_and_every_one_has_wrong_answers():
    for mod in MODULES:
        assert sum(1 for m, _, _ in ALL if m == mod) >= 3, mod
    assert {(m, n) for m, n, _ in ALL} == set(WRONG)


@pytest.mark.parametrize("mod,name,ex", ALL, ids=[f"{m}.{n}" for m, n, _ in ALL])
def test_reference_passes_its_own_check(mod, name, ex, capsys, monkeypatch):
    monkeypatch.delenv("DIFFGAN_FILL_SOLUTIONS", raising=False)
    assert ex.test(ex.reference_answer()) is None
    assert ex.check(ex.reference_answer()) == CORRECT


@pytest.mark.parametrize("mod,name,ex", ALL, ids=[f"{m}.{n}" for m, n, _ in ALL])
def test_wrong_answers_fail_without_leaking_the_solution(mod, name, ex, capsys, monkeypatch):
    monkeypatch.delenv("DIFFGAN_FILL_SOLUTIONS", raising=False)
    for answer, fragment in WRONG[(mod, name)]:
        if fragment is None:
            assert ex.check(answer) == CORRECT
            continue
        assert ex.check(answer) == INCORRECT, (name, fragment)
        out = capsys.readouterr().out
        assert fragment in out, (name, out)
        if callable(ex.reference_answer()):   # no line of the reference's body appears in the message
            body = [ln.split("#")[0].strip() for ln in inspect.getsource(ex.reference_answer()).splitlines()[1:]]
            assert not [ln for ln in body if len(ln) > 8 and ln in out], (name, out)
        else:
            assert f"{ex.reference_answer():.3f}" not in out


@pytest.mark.parametrize("mod,name,ex", ALL, ids=[f"{m}.{n}" for m, n, _ in ALL])
def test_starter_is_not_attempted_and_filled_in_test_runs(mod, name, ex, capsys, monkeypatch):
    starter = None if not callable(ex.reference_answer()) else (lambda *args: None)
    if callable(ex.reference_answer()):
        assert ex.probe is not None and ex.probe(ex.reference_answer()) is not None
    monkeypatch.delenv("DIFFGAN_FILL_SOLUTIONS", raising=False)
    assert ex.check(starter) == NOT_ATTEMPTED
    monkeypatch.setenv("DIFFGAN_FILL_SOLUTIONS", "1")
    assert ex.check(starter) == CORRECT


@pytest.mark.parametrize("mod,name,ex", ALL, ids=[f"{m}.{n}" for m, n, _ in ALL])
def test_hint_and_solution_print(mod, name, ex, capsys):
    ex.hint()
    ex.solution()
    out = capsys.readouterr().out
    assert out.count(name) >= 2 and len(out) > 80
