"""Write notebooks/09_conditional.ipynb from the cells below (then execute it with nbconvert).

    python tools/build_nb09.py && jupyter nbconvert --to notebook --execute --inplace notebooks/09_conditional.ipynb
"""
from nbbuild import code, md, write

md(r"""
# 09 · Conditional generation and classifier-free guidance

## Learning goals
After this notebook you can:
1. **Explain** how a class label enters the UNet (an embedding added to the time embedding) and why
   the same network also learns to generate *without* a label (label dropout, the "no class" token).
2. **Implement** classifier-free guidance (Ho & Salimans 2021) in one batched network call, and check it
   against the library.
3. **Ask** a trained model for a class ("a T2 slice with a lesion", "a pneumonia X-ray"), and **see** what
   the guidance scale $w$ trades: class fidelity against variety.
4. **Read** a measured curve: how often an independent classifier agrees with the requested class, as a
   function of $w$.

**What you will build:** three checked exercises (the guided prediction, label dropout, a question about
the measured curve), one row of samples per class, a guidance slider, and normal vs pneumonia X-rays.

**Prerequisites:** notebooks 02 (the time embedding), 06 (DDIM and η) and 07 (the metrics).

**Runtime:** about 40 s on a 2-core CPU (two shipped conditional models, sampled with DDIM-20);
on a GPU: not measured.
""")

code(r"""
import matplotlib.pyplot as plt
import torch

from diffgan_lib import PHANTOM_CLASSES, guided_eps, make_dataloader, pick_device
from diffgan_lib.checkpoints import load_checkpoint
from diffgan_lib.course import PRETRAINED_COND_PHANTOMS, PRETRAINED_COND_XRAY, load_results
from diffgan_lib.exercises import nb09
from diffgan_lib.sampling import FAST_SAMPLER, sample
from diffgan_lib.viz import show_images
from diffgan_lib.widgets_guidance import guidance_frames, guidance_slider
""")

md(r"""
## 0. Configuration and the models

Two shipped class-conditional models (see `data/pretrained/README.md`), both trained through the command
line with `--conditional` by `benchmarks/conditional_study.py ship`: one on 32 px phantoms with the six
classes below (3000 steps), one on 32 px PneumoniaMNIST chest X-rays with the classes `normal` and
`pneumonia` (4 epochs). On a CPU we sample with DDIM-20 at $\eta = 1$ to stay inside the time budget; the
command line's default is DDIM-50 (`FAST_SAMPLER`), which a GPU runs here.
""")

code(r"""
# ==== CONFIG: chosen for this machine; override a value here, then re-run ====
DEVICE = pick_device()
if DEVICE.type != "cuda":
    torch.set_num_threads(1)       # on a busy 2-core machine one thread is several times faster
SAMPLER = {**FAST_SAMPLER, "steps": 50 if DEVICE.type == "cuda" else 20, "clip_x0": True}
N_PER_CLASS = 8 if DEVICE.type == "cuda" else 6      # images per class row
SEED = 0
phantom_model = load_checkpoint(PRETRAINED_COND_PHANTOMS, device=DEVICE)
xray_model = load_checkpoint(PRETRAINED_COND_XRAY, device=DEVICE)
for name, m in (("phantoms", phantom_model), ("X-rays", xray_model)):
    print(f"{name}: {m.step} steps, {m.image_size} px, classes {list(m.config.class_names)}, "
          f"label dropout {m.config.label_dropout}")
""")

md(r"""
## 1. How a label enters the UNet

The UNet already turns the timestep $t$ into a vector (the sinusoidal embedding and an MLP of notebook 02)
that every residual block adds to its feature maps. A conditional UNet (`UNet(num_classes=K)`) keeps a
table `class_emb` of $K + 1$ learned vectors of the same length and adds the label's vector to the time
vector. Row $K$ is a learned **"no class"** token: given it, the network has to predict the noise without
knowing the class. Below: the table, and how far the noise prediction for the same $x_t$ moves when only
the label changes.
""")

code(r"""
G, _, scheduler = phantom_model
K = G.num_classes
print(f"class_emb: {tuple(G.class_emb.weight.shape)} = (K + 1 = {K + 1} rows, one vector per class and one for "
      f"'no class'), the time vector has {G.class_emb.weight.shape[1]} numbers")
x_t = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(SEED)).to(DEVICE)
with torch.no_grad():
    for t in (900, 500, 100):
        tt = torch.full((K + 1,), t, device=DEVICE)
        eps = G(x_t.expand(K + 1, -1, -1, -1), tt, torch.arange(K + 1, device=DEVICE))
        moved = (eps[:K] - eps[K]).flatten(1).norm(dim=1) / eps[K].norm()
        print(f"t = {t}: |eps(class) - eps(no class)| / |eps(no class)| = "
              + ", ".join(f"{n} {v:.3f}" for n, v in zip(phantom_model.config.class_names, moved.tolist())))
""")

md(r"""
The label moves the prediction by about 2 % of its size at $t = 900$, 5-9 % at $t = 500$ and 8-19 % at
$t = 100$. At $t = 900$, $x_t$ is almost all noise, so the best guess of the noise is nearly $x_t$ itself
whatever the class. At small $t$ the noise is a small part of $x_t$, and finding it means knowing what the
clean slice should look like: there the label tells the network most. (Same $x_t$ for every $t$ here, so
only the trend is meaningful, not the third digit.)

## 2. Training with label dropout

How does one network learn both $p(x \mid c)$ and $p(x)$? During training each label is replaced by the
"no class" token with probability $p$ (`label_dropout`, 0.1 by default): one batch in ten, on average,
teaches the unconditional model. **Exercise 1** (three lines): write the dropout. Use `torch.rand`, so each
label is dropped independently.
""")

code(r"""
def label_dropout(labels, p, num_classes):
    # labels: (B,) int64 in [0, num_classes); return (B,) int64 with each label replaced by the
    # "no class" token (index num_classes) with probability p
    return None  # TODO: your code here


nb09.label_dropout.check(label_dropout);
# nb09.label_dropout.hint()  nb09.label_dropout.solution()
""")

md(r"""
## 3. Classifier-free guidance

At sampling time the network is asked twice at every step, with the label $c$ and with "no class", and
the two answers are mixed with the guidance scale $w$:

$$\hat\epsilon = \hat\epsilon(x_t, t, \varnothing) + w\,\big(\hat\epsilon(x_t, t, c) - \hat\epsilon(x_t, t, \varnothing)\big).$$

$w = 0$ is the unconditional model, $w = 1$ the plain conditional model, and $w > 1$ *extrapolates*: it
goes further in the direction that makes the image look like class $c$ rather than like any image. This is
Ho & Salimans' rule in diffusers' convention (their paper writes $1 + w$ for our $w$). Why it works: by
Bayes' rule $\nabla \log p(x \mid c) = \nabla \log p(x) + \nabla \log p(c \mid x)$, and $\hat\epsilon$ is a scaled score,
so the difference of the two predictions acts as the gradient of an *implicit classifier*; $w$ multiplies it.

**Exercise 2**: the guided prediction, in **one** call of `G` (the check counts): put $x_t$ twice in one
batch, with the labels in the first half and the "no class" token in the second.
""")

code(r"""
def guided_prediction(G, x_t, t, labels, w):
    # x_t (B, C, S, S), t (B,), labels (B,) int64; G(x, t, labels) -> eps; G.num_classes = "no class"
    # return the guided eps (B, C, S, S), calling G exactly once
    return None  # TODO: your code here (about 4 lines)


nb09.guided_prediction.check(guided_prediction);
# nb09.guided_prediction.hint()  nb09.guided_prediction.solution()
""")

md(r"""
The library's version is `diffgan_lib.guided_eps`, and `sample(..., labels=..., guidance_scale=w)` uses it at
every step. A check that it is what the formula says, on the shipped model:
""")

code(r"""
y = torch.tensor([4, 5], device=DEVICE)                                   # t2, t2+lesion
x2, t2 = x_t.expand(2, -1, -1, -1), torch.full((2,), 500, device=DEVICE)
with torch.no_grad():
    cond, uncond = G(x2, t2, y), G(x2, t2, torch.full_like(y, K))
    for w in (0.0, 1.0, 3.0):
        by_hand = uncond + w * (cond - uncond)
        print(f"w = {w:g}: max |guided_eps - formula| = {(guided_eps(G, x2, t2, y, w) - by_hand).abs().max():.1e}")
""")

md(r"""
## 4. One row per class

Six classes: three contrasts (CT, MRI T1, MRI T2), each with and without a lesion. We ask for
`N_PER_CLASS` images of each at $w = 3$, all from the same starting noises, so column $j$ of every row began
as the same random image.
""")

code(r"""
labels = torch.arange(K).repeat_interleave(N_PER_CLASS)
x = sample(G, scheduler, n=len(labels), image_size=phantom_model.image_size, labels=labels, guidance_scale=3.0,
           seed=SEED, progress=False, **SAMPLER).clamp(-1, 1).cpu()
show_images(x, ncols=N_PER_CLASS, row_labels=list(phantom_model.config.class_names),
            suptitle=f"one row per class, w = 3, DDIM-{SAMPLER['steps']}")
plt.show()
""")

md(r"""
The contrast is unmistakable in every row: CT has a bright skull ring around a flat grey brain, T1 a
bright brain with dark ventricles, T2 a darker brain with bright fluid. The lesion is much harder to see
at 32 px: a few `t2+lesion` samples have a brighter patch inside the brain, the other lesion rows look
like their lesion-free neighbours. Notice also how alike the images of one row are: at $w = 3$ the model
gives up variety for class fidelity, which the slider below shows directly.
""")

md(r"""
## 5. The guidance scale, as a slider

The same three requests (`t1`, `t2`, `t2+lesion`) at $w = 0, 1, 3, 5$, again from the same noises. Every
frame is sampled before the slider appears, so moving it only redraws. The static figure below shows all
four scales at once (GitHub does not render widgets).
""")

code(r"""
# NBVAL_IGNORE_OUTPUT
frames = guidance_frames(G, scheduler, [2, 4, 5], scales=(0, 1, 3, 5), n_per_label=4, seed=SEED,
                         image_size=phantom_model.image_size, class_names=phantom_model.config.class_names,
                         **{k: v for k, v in SAMPLER.items() if k != "clip_x0"})
guidance_slider(frames)
""")

code(r"""
rows = torch.cat([frames["images"][w][4:8] for w in frames["w"]])   # the t2 row at every scale
show_images(rows, ncols=4, row_labels=[f"w = {w:g}" for w in frames["w"]], suptitle="'t2' at four guidance scales")
plt.show()
""")

md(r"""
At $w = 0$ the label is ignored and the four "t2" requests come out as whatever the noise leads to: none
of the four looks like T2 (their brains are bright and their ventricles dark, as in T1). From $w = 1$ all four are T2. Going from $w = 3$
to $w = 5$ changes little in the contrast but exaggerates it: the skull rim turns into a dotted bright
ring and the four images become more alike. Larger is not better: $w$ is a trade, and the next section
measures the fidelity half of it.
""")

md(r"""
## 6. Measured: does the model give the class you ask for?

Pictures can fool us, so `benchmarks/conditional_study.py guidance` measured it: a conditional phantom
model trained through the command line (`train --data phantoms --conditional ... --max-steps 1500`, the
issue's recipe; the shipped model above trained 3000 steps), 64 samples for each of `ct`, `t1`, `t2` at
four guidance scales, each judged by an independent contrast classifier (100 % accurate on 1024 held-out
real phantoms). The run takes about 25 minutes on a CPU, so we load its results file.
""")

code(r"""
res = load_results("guidance")
ws = sorted(float(w) for w in res["rates"])
fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=80)
for c in ("ct", "t1", "t2", "mean"):
    ax.plot(ws, [100 * res["rates"][f"{w:g}"][c] for w in ws], "o-" if c != "mean" else "k--", label=c)
ax.axhline(90, color="gray", lw=0.8, ls=":")
ax.set(xlabel="guidance scale w", ylabel="requested contrast (%)", xticks=ws, ylim=(0, 103),
       title=f"{res['n_per_label']} samples per label; classifier accuracy {res['classifier']['accuracy']:.0%}")
ax.legend(fontsize=8, loc="lower right")
plt.show()
print("w = 0:", res["predicted_counts"]["0"]["ct"], "(the same counts for every request: w = 0 ignores the label)")
""")

md(r"""
At $w = 0$ the requested contrast comes out 33 % of the time on average, chance for three contrasts:
the 64 samples of every request are the *same* images (same noise, label ignored), and the classifier
calls 8 of them CT, 29 T1 and 27 T2. At $w = 1$ (the plain conditional model) T1 and T2 are given every
time but CT only 81 %; at $w = 3$ and $w = 5$ all 192 samples have the requested contrast. The course's
default guidance scale, 3, is the smallest measured one that meets the issue's bar (90 % on average, 80 %
for each); these are 64 samples per point, about ±5 points of binomial error at 81 %.

**Exercise 3** (read the figure): what is the smallest of the measured scales at which *every* contrast is
given at least 90 % of the time?
""")

code(r"""
answer = None  # TODO: 0, 1, 3 or 5
nb09.guidance_needed.check(answer);
""")

md(r"""
## 7. Real X-rays: normal and pneumonia

The same mechanism on real scans: 32 px pediatric chest X-rays from PneumoniaMNIST (CC BY 4.0), with
the labels `normal` and `pneumonia`. Top two rows: real test-split images; bottom two: samples at $w = 3$.
""")

code(r"""
xs, ys = next(iter(make_dataloader("pneumoniamnist", 32, 624, split="test", return_labels=True, shuffle=False)))
real = torch.cat([xs[ys == c][:N_PER_CLASS] for c in (0, 1)])
Gx, _, sched_x = xray_model
y_x = torch.tensor([0, 1]).repeat_interleave(N_PER_CLASS)
fake = sample(Gx, sched_x, n=len(y_x), image_size=xray_model.image_size, labels=y_x, guidance_scale=3.0,
              seed=SEED, progress=False, **SAMPLER).clamp(-1, 1).cpu()
names = list(xray_model.config.class_names)
show_images(torch.cat([real, fake]), ncols=N_PER_CLASS, row_labels=[f"real\n{n}" for n in names] +
            [f"w = 3\n{n}" for n in names], suptitle="PneumoniaMNIST test images (top) and samples (bottom)")
plt.show()
""")

md(r"""
The two synthetic classes differ the way the real ones do: `normal` samples have dark, clearly outlined
lungs with ribs and clavicles, `pneumonia` samples are hazy, with lungs that fade into the grey of the
chest, as the real pneumonia row is. The samples are not copies of real images: they are more contrasted
than the real normal X-rays (darker lungs, brighter bones) and grainier (DDIM-20 at $\eta = 1$, from a
model trained 4 epochs).

Whether these samples are *useful* (does a classifier trained on them work on real patients?) and *safe*
(do they copy training patients?) is the subject of notebook 10.
""")

md(r"""
## Recap
- A conditional UNet adds a learned class vector to its time vector; one extra row, the "no class" token,
  lets the same network model $p(x)$ too, because label dropout ($p = 0.1$) trains it on that token.
- Classifier-free guidance mixes the two predictions: $\hat\epsilon_\varnothing + w(\hat\epsilon_c - \hat\epsilon_\varnothing)$, in one
  batched call that costs two evaluations per image. $w = 0$ ignores the label, $w = 1$ is the plain
  conditional model, $w > 1$ pushes further towards the class.
- Measured on phantoms with an independent classifier: the requested contrast rose from chance at $w = 0$
  to every sample at $w = 3$. Guidance buys class fidelity at the price of variety.
- On the command line: `python -m diffgan_lib train --data phantoms --conditional ...`, then
  `python -m diffgan_lib sample --checkpoint CKPT --label t2 --guidance 3 -n 64 --out DIR`
  (`--list-labels` prints the names a model knows).
""")

md(r"""
### Questions
1. Why does a conditional model need the "no class" token at all? What would $w = 3$ compute without it?
2. If you trained with `label_dropout = 0`, what would the guided prediction look like at sampling time?
3. Guidance doubles the cost of a sampling step. Where does the doubling come from, and when is it not
   needed?
4. The measured curve uses 64 samples per label. Roughly how uncertain is a rate of 81 % from 64 samples?

<details><summary>Answers</summary>

1. Guidance needs an unconditional prediction to subtract. Without the token there is no
   $\hat\epsilon(x_t, t, \varnothing)$, only conditional ones; you would need a second, unconditional network
   (which is what Ho & Salimans' trick avoids: one network, two questions).
2. The network would never have seen the token with a useful target: its row of `class_emb` would stay at
   its random initial value, so the "unconditional" prediction would be the answer to a random class-like
   vector, and the difference $\hat\epsilon_c - \hat\epsilon_\varnothing$ would not point towards the class.
3. From asking the network twice per step (with the label and with the token), done as one batch of twice
   the size. At $w = 1$ the formula reduces to $\hat\epsilon_c$, so one call suffices, and at $w = 0$ only $\hat\epsilon_\varnothing$ is needed
   (`guided_eps` takes both shortcuts).
4. The binomial standard error is $\sqrt{0.81 \cdot 0.19 / 64} \approx 0.05$: about ±5 percentage points, so
   81 % and 90 % are not far apart at this sample size, while 33 % at $w = 0$ and 100 % at $w = 3$ are.
</details>

**Next:** [10 · Are the synthetic images useful and safe?](10_useful_and_safe.ipynb) · back to the
[README](../README.md).
""")


if __name__ == "__main__":
    write("09_conditional.ipynb")
