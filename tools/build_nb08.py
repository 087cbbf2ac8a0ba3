"""Write notebooks/08_fewstep.ipynb from the cells below (then execute it with nbconvert).

    python tools/build_nb08.py && jupyter nbconvert --to notebook --execute --inplace notebooks/08_fewstep.ipynb
"""
from nbbuild import code, md, write

md(r"""
# 08 · Few-step sampling: where the GAN pays

## Learning goals
After this notebook you can:
1. **Explain** why the network's $\hat x_0$ is blurry at large $t$ (it is the posterior *mean*), and
   why an adversarial term on $\hat x_0$ (the seed's hybrid) therefore fights the diffusion loss.
2. **Show** on a 1-D toy why one big Gaussian step averages two modes and a GAN step does not.
3. **Build** the pieces of a DDGAN-style few-step generator: the posterior between two noise levels,
   the discriminator's pair input, the K-level sampling chain.
4. **Fine-tune** a few-step generator from the shipped diffusion model, and **compare** it with DDIM-4
   and DDIM-50 from the same noise, in pictures, timings and the study's measured table.

**What you will build:** the x̂0-blur figure, a 1-D two-mode toy with a tiny GAN, three checked
exercises, a short live fine-tune, and a same-noise comparison of 4-evaluation samplers.

**Prerequisites:** notebooks 04 (x̂0 from ε), 06 (DDIM and η) and 07 (the metrics).

**Runtime:** about 40 s on a 2-core CPU (the live fine-tune is 15 steps; `LONG_RUN = True` in the
config cell makes it 300, about 3 minutes); on a GPU: not measured.
""")

code(r"""
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffgan_lib import PhantomDataset, pick_device
from diffgan_lib.checkpoints import load_checkpoint
from diffgan_lib.course import PRETRAINED_FEWSTEP, PRETRAINED_PURE, load_results
from diffgan_lib.exercises import nb08
from diffgan_lib.fewstep import FewStepConfig, fewstep_from_teacher, fewstep_step, posterior_sample
from diffgan_lib.sampling import sample
from diffgan_lib.viz_training import show_rows
""")

md(r"""
## 0. Configuration and the models

Two shipped models (see `data/pretrained/README.md`): the pure-diffusion phantom model of notebooks
06 and 07 (10,000 CPU steps), the *teacher*; and a 4-level few-step generator fine-tuned from it for
300 steps with the recipe of this notebook (`python -m diffgan_lib fewstep`, made by
`benchmarks/fewstep_study.py phantoms`).
""")

code(r"""
# ==== CONFIG: chosen for this machine; override a value here, then re-run ====
DEVICE = pick_device()
if DEVICE.type != "cuda":
    torch.set_num_threads(1)       # on a busy 2-core machine one thread is several times faster
LONG_RUN = False                   # True: a 300-step live fine-tune (about 3 min on a CPU) instead of 15 steps
LIVE_STEPS = 300 if LONG_RUN else 15
N_ROW = 8                          # images per row in the comparisons
SEED = 0
teacher, _, scheduler = tk = load_checkpoint(PRETRAINED_PURE, device=DEVICE)
fewstep, _, _ = fk = load_checkpoint(PRETRAINED_FEWSTEP, device=DEVICE)
IMAGE_SIZE = tk.image_size
print(f"teacher: {PRETRAINED_PURE.name}, step {tk.step}; few-step: {PRETRAINED_FEWSTEP.name}, "
      f"{fewstep.n_levels} levels {fewstep.levels.tolist()}, {fk.step} fine-tune steps")
""")

md(r"""
## 1. Why the seed's hybrid cannot pay: x̂0 is a mean

The diffusion loss is a mean squared error, and the function that minimises a squared error is the
conditional mean. So the best possible clean-image guess is $\hat x_0(x_t) = \mathbb E[x_0 \mid x_t]$: the
*average* of every clean slice that could have produced $x_t$, weighted by how well it fits. We can
compute that ideal exactly for a finite set of images: over 2048 phantoms, image $i$ gets the weight
$w_i \propto \exp\big(-\lVert x_t - \sqrt{\bar\alpha_t}\,x_0^{(i)}\rVert^2 / 2(1-\bar\alpha_t)\big)$ (Bayes' rule with the
forward process as the likelihood), and $\hat x_0 = \sum_i w_i x_0^{(i)}$. Below: a held-out phantom noised to
$t = 750$ and $t = 250$ with four noises, the ideal $\hat x_0$ of each, and the teacher network's $\hat x_0$.
""")

code(r"""
ref = torch.stack([PhantomDataset(n=2048, image_size=IMAGE_SIZE, seed=0)[i] for i in range(2048)])  # (N, 1, S, S)
x0 = PhantomDataset(n=1, image_size=IMAGE_SIZE, seed=7)[0][None]           # a slice not among them
noise = torch.randn((4, *x0.shape[1:]), generator=torch.Generator().manual_seed(SEED))


def ideal_x0(x_t, t):
    # E[x0 | x_t] over the N reference images: weights from the forward process's Gaussian likelihood
    a = scheduler.alpha_hat[t].cpu()
    d2 = torch.cdist(x_t.flatten(1), a.sqrt() * ref.flatten(1)) ** 2     # (B, N) squared distances
    w = torch.softmax(-d2 / (2 * (1 - a)), dim=1)
    return (w @ ref.flatten(1)).view_as(x_t), 1 / (w ** 2).sum(1)        # the mean, and how many images it averages


def edge_energy(x):
    # mean |difference| between neighbouring pixels: high for sharp edges (or speckle), low for a blur
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()).item() / 2
""")

code(r"""
rows = {"the clean slice": x0}
print(f"edge energy of the clean slice: {edge_energy(x0):.3f}")
for t in (750, 250):
    tt = torch.full((4,), t)
    x_t, _ = scheduler.add_noise(x0.expand(4, -1, -1, -1).to(DEVICE), tt.to(DEVICE), noise.to(DEVICE))
    best, n_eff = ideal_x0(x_t.cpu(), t)
    with torch.no_grad():
        net = scheduler.predict_x0(x_t, tt.to(DEVICE), teacher(x_t, tt.to(DEVICE))).clamp(-1, 1).cpu()
    rows |= {f"x_t, t = {t}": x_t.cpu(), f"ideal x̂0 (t = {t})": best, f"network's x̂0 (t = {t})": net}
    gain = ((1 - scheduler.alpha_hat[t]) / scheduler.alpha_hat[t]).sqrt().item()   # how x̂0 scales an eps error
    print(f"t = {t}: the ideal averages about {n_eff.mean():.0f} images; edge energy: ideal {edge_energy(best):.3f}, "
          f"network {edge_energy(net):.3f}; an error in eps is multiplied by {gain:.1f} in x̂0")
show_rows(rows, title="x̂0 at t = 750 and t = 250: the ideal (the posterior mean) and the network's")
plt.show()
""")

md(r"""
At $t = 750$ the ideal $\hat x_0$ averages about 1700 of the 2048 phantoms: the same smooth head with no
ventricles or sulci for all four noises (edge energy 0.057, a third of the clean slice's 0.156). At
$t = 250$ it averages about two phantoms and is sharp (0.125). The network's $\hat x_0$ at $t = 250$ is
close to the ideal. At $t = 750$ it is not a blur but speckle (0.381): $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$
multiplies every error in $\hat\epsilon$ by $\sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$, about 17 at $t = 750$ and 1 at $t = 250$,
so small errors in the predicted noise become large errors in the image.

This is why an adversarial term on $\hat x_0$ cannot pay. At large $t$ even the *perfect* network's
$\hat x_0$ is a blur, because the blur is the correct answer to the question the diffusion loss asks; a
real network's $\hat x_0$ is that blur plus amplified error. A discriminator calls both fake, and pushing
$\hat x_0$ to look sharp moves it away from the mean, so the predicted noise gets worse (the recipe
study measured a higher final diffusion loss and worse scores: README, "The seed's hybrid: a GAN term on x̂0").
That is also why the course gates that term to $t < 500$ after a warm-up: at large $t$ it would fight
hardest.

A 1000-step sampler never needs more than the mean: each small step only moves a little towards it.
A sampler with four big jumps does. That is where a GAN has a job.

## 2. A 1-D toy: one big jump, two modes

Take data with two values only, $x_0 = \pm 1$, and noise it to $t = 499$ ($\bar\alpha \approx 0.08$).
Given one noisy $x_t$, the clean value is either $-1$ or $+1$: a distribution with two modes. A
Gaussian step (DDPM's or DDIM's, with the best possible network) jumps to the posterior mean
$\mathbb E[x_0 \mid x_t] = \tanh\big(\sqrt{\bar\alpha_t}\,x_t / (1 - \bar\alpha_t)\big)$, which lies *between* the modes.
A conditional GAN $G(x_t, z)$, trained against a discriminator that sees the pair $(x_0, x_t)$, can
put its samples on the modes. We train one for 400 steps (a few seconds):
""")

code(r"""
torch.manual_seed(SEED)
a_t = scheduler.alpha_hat[499].cpu()
draw = lambda n: torch.randint(0, 2, (n, 1)).float() * 2 - 1                   # x0 = -1 or +1
noisy = lambda x0: a_t.sqrt() * x0 + (1 - a_t).sqrt() * torch.randn_like(x0)   # x_t given x0
mlp = lambda: nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))
G1, D1 = mlp(), mlp()                                                          # G(x_t, z), D(x0, x_t)
opt_G1, opt_D1 = (torch.optim.Adam(m.parameters(), 2e-3, betas=(0.5, 0.9)) for m in (G1, D1))
t0 = time.perf_counter()
for step in range(400):
    x0_toy = draw(256)
    x_t_toy = noisy(x0_toy)
    fake = torch.tanh(G1(torch.cat([x_t_toy, torch.randn_like(x_t_toy)], 1)))
    d_loss = (F.softplus(-D1(torch.cat([x0_toy, x_t_toy], 1))).mean()
              + F.softplus(D1(torch.cat([fake.detach(), x_t_toy], 1))).mean())
    opt_D1.zero_grad(); d_loss.backward(); opt_D1.step()
    g_loss = F.softplus(-D1(torch.cat([fake, x_t_toy], 1))).mean()
    opt_G1.zero_grad(); g_loss.backward(); opt_G1.step()
print(f"400 GAN steps in {time.perf_counter() - t0:.1f} s")
""")

code(r"""
x0_toy = draw(4000)
x_t_toy = noisy(x0_toy)
with torch.no_grad():
    toy = {"real x0": x0_toy, "Gaussian step: E[x0 | x_t]": torch.tanh(a_t.sqrt() * x_t_toy / (1 - a_t)),
           "GAN step: G(x_t, z)": torch.tanh(G1(torch.cat([x_t_toy, torch.randn_like(x_t_toy)], 1)))}
fig, axes = plt.subplots(1, 3, figsize=(10, 2.4), dpi=80, sharey=True)
for ax, (name, v) in zip(axes, toy.items()):
    near = ((v.abs() - 1).abs() < 0.25).float().mean().item()
    ax.hist(v.flatten().numpy(), bins=60, range=(-1.1, 1.1), color="C0")
    ax.set_title(f"{name}\n{near:.0%} within 0.25 of a mode", fontsize=9)
    ax.set_xlabel("x0")
fig.tight_layout()
plt.show()
""")

md(r"""
The real data sit on the two modes; the best Gaussian step puts none of its 4000 samples within 0.25
of a mode, a bump around 0 that no image in the data looks like; the 400-step GAN puts 99 % there (a
few samples still fall in between: it is a small network trained for seconds). Both steps see the same
$x_t$; only the GAN can answer "either $-1$ or $+1$".

DDGAN (Xiao, Kreis & Vahdat 2022) does exactly this on images: at each of a few levels
$t_1 > \dots > t_K$, a generator predicts $\hat x_0$ and the next state is drawn from the forward
process's own posterior $q(x_{t_{k+1}} \mid x_{t_k}, \hat x_0)$; a discriminator sees the *pair* (next
state, $x_{t_k}$) and the level. The course starts the generator from the trained diffusion model
(as ADD and UFOGen do) instead of from scratch, so a short fine-tune is enough.

## 3. The pieces

### Exercise 1: the posterior between two levels
Between two levels $t' < t$ with $a = \bar\alpha_t / \bar\alpha_{t'}$, the forward process gives
$q(x_{t'} \mid x_t, x_0) = \mathcal N(c_{x_0} x_0 + c_{x_t} x_t,\ \sigma^2 I)$, DDPM's eq. 7 with $a$ in
the place of $\alpha_t$. Its variance $\sigma^2$ is notebook 06's $\sigma_t^2$ at $\eta = 1$ for the same jump
(the library's `posterior_sample` uses it). Return the two coefficients of the mean, $(c_{x_0}, c_{x_t})$.
""")

code(r"""
def posterior_mean(alpha_hat_t, alpha_hat_next):
    # alpha_hat_t, alpha_hat_next: 0-d tensors with alpha_hat_t < alpha_hat_next
    return None  # TODO: (c_x0, c_xt), about three lines


nb08.posterior_mean.check(posterior_mean);
# nb08.posterior_mean.hint()
# nb08.posterior_mean.solution()
""")

md(r"""
### Exercise 2: what the discriminator sees
The library's discriminator is the course's PatchGAN (notebook 03) with more input channels: the next
state, $x_t$, and the level as $K$ constant planes (one-hot). Build that input, shape $(B, 2C + K, S, S)$.
""")

code(r"""
def pair_input(x_next, x_t, k, n_levels):
    # x_next, x_t: (B, C, S, S); k: (B,) int64 level indices in [0, n_levels)
    return None  # TODO: the stacked (B, 2C + K, S, S) tensor


nb08.pair_input.check(pair_input);
# nb08.pair_input.hint()
# nb08.pair_input.solution()
""")

md(r"""
### Exercise 3: the K-level sampling chain
Start from $x_{t_1}$ (pure noise), and at each level predict $\hat x_0$ with `predict_x0(x, k)`; jump to
the next level with `posterior_sample(scheduler, x, x0_hat, t, t_next, noise)` using `noises[k]`; at
the last level return $\hat x_0$ itself. K network evaluations in all.
""")

code(r"""
def fewstep_chain(predict_x0, x, levels, noises):
    # x: (B, C, S, S) noise at levels[0]; levels: descending timesteps; noises: K - 1 tensors like x
    return None  # TODO: a loop over the levels, about five lines


nb08.fewstep_chain.check(fewstep_chain);
# nb08.fewstep_chain.hint()
# nb08.fewstep_chain.solution()
""")

md(r"""
## 4. A live fine-tune from the teacher

`fewstep_from_teacher` copies the teacher's UNet into a `FewStepGenerator` (levels 999, 749, 499, 249)
and makes a fresh pair discriminator; `fewstep_step` is one step: D on real vs fake pairs (with R1),
then G on the adversarial loss plus $\bar\alpha_t \lVert \hat x_0 - x_0 \rVert^2$, the reconstruction term that
anchors the low-noise levels. The command line does the same: `python -m diffgan_lib fewstep --init
CKPT --data phantoms --max-steps 300 --out DIR`.
""")

code(r"""
cfg = FewStepConfig(levels=4, seed=SEED)
G_live, D_live, opt_G, opt_D, ema = fewstep_from_teacher(teacher, scheduler, cfg, DEVICE)
phantoms = torch.stack([PhantomDataset(n=32 * LIVE_STEPS, image_size=IMAGE_SIZE, seed=SEED)[i]
                        for i in range(32 * LIVE_STEPS)])
t0, log = time.perf_counter(), []
for step in range(LIVE_STEPS):
    x0_batch = phantoms[32 * step: 32 * (step + 1)].to(DEVICE)
    log.append(fewstep_step(G_live, D_live, opt_G, opt_D, x0_batch, cfg, step, ema,
                            generator=torch.Generator().manual_seed(step)))
live_s = time.perf_counter() - t0
print(f"{LIVE_STEPS} steps in {live_s:.1f} s ({live_s / LIVE_STEPS:.2f} s per step)")
for k in ("rec", "adv", "D"):
    print(f"  {k:4s} first {log[0][k]:.3f}  last {log[-1][k]:.3f}")
""")

md(r"""
Fifteen steps only show the loop at work: the discriminator's loss stays near chance ($2\ln 2 \approx 1.39$),
the adversarial loss near $\ln 2$ and the reconstruction loss where the teacher left it. The
shipped model is the same loop run for 300 steps (`LONG_RUN = True` runs them here); even there D stays
close to chance, a balanced game rather than a critic that wins.

## 5. Four evaluations: DDIM-4 against the few-step generator, from the same noise

Each row starts from the same eight noise images (seed 0). DDIM-4 and the few-step generator both call
the network four times per image; DDIM-50 calls it fifty times.
""")

code(r"""
runs, times = {}, {}
for name, model, kw in (("DDIM-4, η 0", teacher, dict(sampler="ddim", steps=4, eta=0.0)),
                        ("DDIM-4, η 1", teacher, dict(sampler="ddim", steps=4, eta=1.0)),
                        ("few-step, 4 levels", fewstep, {}),
                        ("DDIM-50, η 1", teacher, dict(sampler="ddim", steps=50, eta=1.0))):
    t0 = time.perf_counter()
    runs[name] = sample(model, scheduler, n=N_ROW, image_size=IMAGE_SIZE, seed=SEED, progress=False,
                        **({"clip_x0": True} if kw else {}), **kw)
    times[name] = time.perf_counter() - t0
show_rows({f"{k}\n{1e3 * times[k] / N_ROW:.0f} ms / image": v for k, v in runs.items()},
          title="same starting noise in every column")
plt.show()
""")

md(r"""
Read down each column. Deterministic DDIM-4 ($\eta = 0$) turns some noises into speckled or washed-out
slices; with $\eta = 1$ every slice is clean but soft, the big jumps averaging the detail away. The
few-step generator keeps DDIM-4's cost and, in several columns, draws more of the inner structure
(ventricle edges, sulci); DDIM-50 is sharper than all of them at over ten times the cost per image.
Eight images decide nothing; the next section measures.

## 6. The measured answer

Pictures of eight samples are not a measurement. `benchmarks/fewstep_study.py` ran the comparison
properly on the real chest X-rays (32 px PneumoniaMNIST): from the same 4-epoch teacher, 3 seeds,
(a) diffusion *continued* for 4 more epochs (more wall time than either fine-tune), sampled with DDIM at
η 0 and 1; (b) the 4-level fine-tune *without* the discriminator (`--adv-weight 0`, what specialising to
4 levels alone buys); (c) the adversarial fine-tune. Scores in the course's metrics (notebook 07) on 256
samples against the real test split. It takes about an hour on a CPU, so the table is loaded from its
committed results file, `benchmarks/results/fewstep_study.json`.
""")

code(r"""
study = load_results("fewstep_study")
real = study["real_vs_real"]
print(f"X-rays, 256 samples per row; real vs real: FD {real['pneumoniamnist']['fd']:.1f}, "
      f"diversity {real['pneumoniamnist']['diversity_feature']:.2f}   ({study['machine']})")
print(f"{'arm (mean ± sd over training seeds)':46s} {'evals':>5s} {'FD':>13s} {'KID':>6s} {'SWD':>6s} {'div.':>5s}")
for label, r in study["headline"].items():
    evals = "4" if "levels" in label else label.split("ddim")[1].split("_")[0]
    print(f"{label.replace('_eta', ', η ').replace('ddim', 'DDIM-'):46s} {evals:>5s} {r['fd']['mean']:6.1f} ± "
          f"{r['fd']['sd']:4.1f} {r['kid']['mean']:6.2f} {r['swd']['mean']:6.1f} {r['diversity_feature']['mean']:5.2f}")
print(f"\nphantoms, one seed; real vs real: FD {real['phantoms']['fd']:.1f}")
for name in ("teacher_phantoms", "phantoms_s0_k4_regression", "phantoms_s0_k4_adversarial"):
    for key, v in study["scores"][name].items():
        print(f"{name.replace('phantoms_s0_k4_', 'few-step, ') + ('' if key == 'own' else ', ' + key):46s} "
              f"FD {v['fd']:6.1f}  KID {v['kid']:5.2f}  SWD {v['swd']:5.1f}")
""")

md(r"""
On the X-rays the adversarial few-step generator scores FD 50.4 ± 8.7 over three training seeds, against
58.9 ± 13.6 for the same fine-tune without the discriminator: the GAN term helped in all three paired seeds.
It also beats the pure-diffusion model trained 4 more epochs and sampled with DDIM-4 at its better η
(75.1 ± 21.5), but that control got *worse* with the extra training. The 4-epoch teacher itself, sampled
with DDIM-4 at η = 1, scores 38.7 ± 10.7, better in FD than any fine-tune. Against it the adversarial model
is ahead on KID (1.06 against 1.18) and well ahead on patch statistics (SWD 31.7 against 53.6: sharper
textures) but behind on FD and on diversity (1.21 against 1.33; real X-rays 1.29). On the phantoms (one
seed, the shipped 10,000-step teacher) it is level with DDIM-4 at η = 1 (FD 23.3 against 24.0) and ahead
of its regression control (26.6), while DDIM-10 (13.0) and DDIM-50 (6.2) stay far better.

So, measured: the adversarial term makes a few-step generator better than the same generator trained by
regression alone, and sharper, but at this CPU budget (300 fine-tune steps) it does not beat a good
stochastic 4-step sampler of its own teacher on FD. The README has the full table and the commands.

## Recap

- **Why x̂0 is blurry:** the MSE loss makes $\hat x_0$ the posterior mean $\mathbb E[x_0 \mid x_t]$; at large $t$
  it averages many slices. A GAN term on it fights the diffusion loss; many small steps never need more.
- **Where a GAN helps:** a big jump has a multimodal target; a Gaussian step lands between the modes,
  a conditional GAN on the pair $(x_{t'}, x_t)$ can land on them (the 1-D toy).
- **The pieces:** the posterior $q(x_{t'} \mid x_t, \hat x_0)$ between levels, the pair discriminator
  with one-hot level planes, the K-evaluation chain.
- **The measurement:** the adversarial term beat its regression-only control in every seed and sharpened
  textures, but did not beat the teacher's own DDIM-4 at $\eta = 1$ on FD: η = 1 remains the cheap win.

### Questions
1. Why does the network trained with an MSE loss predict a blurred $\hat x_0$ at $t = 750$, and why is
   that the *right* answer for a 1000-step sampler?
2. In the 1-D toy, what would DDIM's deterministic jump from $x_t$ to the clean value produce, and why
   does a Gaussian with a learned variance not fix it?
3. Why does the few-step discriminator see $x_t$ as well as the next state, instead of the next state alone?
4. The regression-only control (`--adv-weight 0`) uses the same levels, data and steps. What does
   comparing against it tell you that comparing against DDIM-4 does not?

<details><summary>Answers</summary>

1. The MSE is minimised by the conditional mean $\mathbb E[x_0 \mid x_t]$. At $t = 750$ only about 0.3 % of
   the signal power is left ($\bar\alpha \approx 0.003$), so many slices fit and their average is blurred.
   A 1000-step sampler takes tiny steps, each of which only needs the mean (the DDPM posterior for one
   step is nearly Gaussian), so the mean is exactly what it should use.
2. It would output $\tanh(\sqrt{\bar\alpha_t} x_t / (1-\bar\alpha_t))$, a value between −1 and +1 for almost every
   $x_t$: no sample on the data. A Gaussian around that mean, whatever its variance, is one bump; the
   target has two. Only a model of the whole distribution (a GAN, or many small steps) gets both modes.
3. Without $x_t$, the discriminator could only check that the next state looks like *some* noisy slice; with
   the pair it checks that the next state is a plausible continuation of *this* $x_t$, which is the
   conditional distribution the generator must learn (DDGAN's $D(x_{t-1}, x_t, t)$).
4. Whether the improvement comes from the adversarial term at all: the fine-tune also specialises the
   network to four levels and trains it more, and the control gets both of those without the GAN.
</details>

**Back to the start:** [README](../README.md) · [00 · Welcome](00_welcome.ipynb).
""")


if __name__ == "__main__":
    write("08_fewstep.ipynb")
