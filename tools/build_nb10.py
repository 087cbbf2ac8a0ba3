"""Write notebooks/10_useful_and_safe.ipynb from the cells below (then execute it with nbconvert).

    python tools/build_nb10.py && jupyter nbconvert --to notebook --execute --inplace notebooks/10_useful_and_safe.ipynb
"""
from nbbuild import code, md, write

md(r"""
# 10 · Are the synthetic images useful and safe?

## Learning goals
After this notebook you can:
1. **Measure usefulness** the way it matters for medicine: train a classifier on synthetic images and
   test it on real patients (train-on-synthetic, test-on-real: TSTR), against the real-data baseline.
2. **Look for memorisation**: each synthetic image beside its nearest training image, in pixels and in
   features, with the held-out distance as the yardstick.
3. **Attack the model**: a membership-inference test that asks whether the model's own denoising loss
   gives away which X-rays it was trained on, with a positive control that proves the attack works.
4. **Say what these tests do not prove**, and what differential privacy would add.

**What you will build:** three checked exercises (balanced accuracy, class-balanced synthetic counts, the
attack's AUROC), a small live TSTR, nearest-neighbour pictures, a live attack on the
shipped X-ray model and on an over-fitted one, and the full measured tables.

**Prerequisites:** notebooks 07 (features, nearest neighbours) and 09 (the conditional X-ray model).

**Runtime:** about 35-45 s on a 2-core CPU (64 synthetic X-rays, 64 + 64 images attacked, a 300-step
over-fitted control; `LONG_RUN = True` in the config cell trains the control 700 steps, about 30 s more);
on a GPU: not measured.
""")

code(r"""
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffgan_lib import ImageDataset, pick_device
from diffgan_lib.checkpoints import load_checkpoint, training_members
from diffgan_lib.course import PRETRAINED_COND_XRAY, PRETRAINED_XRAY_FEATURES, load_results
from diffgan_lib.exercises import nb10
from diffgan_lib.features import load_feature_net
from diffgan_lib.privacy import closest_training_images, membership_inference, overfit_control, tpr_at_fpr
from diffgan_lib.sampling import FAST_SAMPLER
from diffgan_lib.usefulness import matched_counts, synthetic_set, tstr, tstr_table
from diffgan_lib.viz import show_images
""")

md(r"""
## 0. Configuration, the model and the data

The shipped conditional X-ray model of notebook 09 (`xray32_conditional.pth`, 4 epochs of PneumoniaMNIST's
training split) and the feature network of the X-ray study (a SimCLR CNN trained on the same training
split, shipped in float16). The three official splits: train (the model's training images), val (for any
choice we tune) and test (for the numbers we report).
""")

code(r"""
# ==== CONFIG: chosen for this machine; override a value here, then re-run ====
DEVICE = pick_device()
if DEVICE.type != "cuda":
    torch.set_num_threads(1)       # on a busy 2-core machine one thread is several times faster
LONG_RUN = False                   # True: the over-fitted control trains 700 steps (about 30 s more on a CPU)
SAMPLER = {"steps": 50 if DEVICE.type == "cuda" else 20, "eta": FAST_SAMPLER["eta"]}
N_SYNTH = 512 if DEVICE.type == "cuda" else 64      # synthetic X-rays made live
N_ATTACK = 624 if DEVICE.type == "cuda" else 64     # members and non-members attacked live
SEED = 0
model = load_checkpoint(PRETRAINED_COND_XRAY, device=DEVICE)
G, _, scheduler = model
features = load_feature_net(PRETRAINED_XRAY_FEATURES)
with warnings.catch_warnings():    # the 28 px X-rays are padded to 32 px, and the loader says so
    warnings.simplefilter("ignore", UserWarning)
    data = {s: ImageDataset("pneumoniamnist", 32, split=s, return_labels=True) for s in ("train", "val", "test")}
x_train, y_train = data["train"].images, data["train"].labels
x_test, y_test = data["test"].images, data["test"].labels
for s, d in data.items():
    print(f"{s}: {len(d.labels)} X-rays, {torch.bincount(d.labels).tolist()} normal / pneumonia")
""")

md(r"""
## 1. Useful? Train on synthetic, test on real

A synthetic set is useful for a task if a model trained on it does the task on **real** patients. TSTR
(Esteban et al. 2017) trains the same small CNN classifier on real images, on synthetic images, and on both,
and tests all three on the same real test split. Real-only is the baseline: synthetic-only close to it
means the samples carry what tells normal from pneumonia.

PneumoniaMNIST has about three pneumonia X-rays for every normal one, so plain accuracy flatters a lazy
classifier: "always pneumonia" scores 0.62 on the test split. **Balanced accuracy** is the mean recall over
the classes, and that classifier gets 0.5. **Exercise 1** (three lines): write it.
""")

code(r"""
def balanced_accuracy(y_true, y_pred):
    # y_true, y_pred: (N,) int arrays of class indices; return the mean over classes of the recall
    # (the share of that class's images predicted as that class), a float in [0, 1]
    return None  # TODO: your code here


nb10.balanced_accuracy.check(balanced_accuracy);
""")

md(r"""
### A small TSTR, live

A synthetic set should keep the real training set's class balance, or the classifier trained on it learns
a different prior. With 1214 normal and 3494 pneumonia X-rays, how many of 64 synthetic images should be
normal? The exact shares, 64 × 1214 / 4708 = 16.5 normal and 47.5 pneumonia, are not whole numbers:
rounding both down gives 63 images, rounding both half up 65. **Exercise 2** (four lines): the counts by largest remainder, which always add up
to `n`.
""")

code(r"""
def class_counts(real_y, n):
    # real_y: (N,) int array of class indices 0 .. K-1; return K whole numbers, one per class, that add up
    # to n and keep real_y's class shares as closely as possible
    return None  # TODO: your code here


nb10.class_counts.check(class_counts);
""")

md(r"""
The library's version is `usefulness.matched_counts`, and `synthetic_set` uses it: it samples as many X-rays
as we ask for with the training split's class balance, each image asked for its label with guidance scale
$w = 1$, the plain conditional model (the full study below chose it over $w = 3$ on the val split). `tstr` then
trains 3 arms × 3 seeds of the classifier. Live, we use `N_SYNTH` synthetic images and the same number of
real ones with the same class counts, so the two arms are the same size.
""")

code(r"""
x_s, y_s = synthetic_set(G, scheduler, y_train, N_SYNTH, 32, guidance_scale=1.0, seed=SEED, **SAMPLER)
counts = matched_counts(y_train, N_SYNTH)
g = torch.Generator().manual_seed(SEED)
pick = torch.cat([torch.nonzero(y_train == k).flatten()[torch.randperm(int((y_train == k).sum()), generator=g)[:c]]
                  for k, c in enumerate(counts)])
small = tstr(x_train[pick], y_train[pick], x_s, y_s, x_test, y_test, seeds=(0, 1, 2), epochs=10)
print(f"{N_SYNTH} synthetic X-rays ({counts[0]} normal, {counts[1]} pneumonia) and as many real ones:")
print(tstr_table(small))
""")

md(r"""
With 64 images each, the classifier trained on synthetic X-rays trails the one trained on 64 real ones
(balanced accuracy 0.60 against 0.69, AUROC 0.87 against 0.91), and the two together do best (0.83 and
0.95). With so few images the seeds disagree by up to ±0.17, so this demonstrates the procedure; it is not
a measurement.

### The full TSTR, measured

With a synthetic set as large as the real training split (4708 X-rays, DDIM-50) the study takes about
1.5 hours on a CPU, so we load its results file, written by `python benchmarks/conditional_study.py tstr`.
The guidance scale of the synthetic set was chosen among 1 and 3 by the synthetic-only classifier's
balanced accuracy on the **val** split; the table is on the **test** split.
""")

code(r"""
full = load_results("tstr")
print(tstr_table(full))
print(f"guidance chosen on val: w = {full['guidance']:g} (balanced accuracy on val: "
      + ", ".join(f"w = {w}: {v['balanced_accuracy']:.3f}" for w, v in full["selection_on_val"].items()) + ")")
fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=80)
arms, scores = ("real", "synthetic", "real+synthetic"), ("accuracy", "balanced_accuracy", "auroc")
for i, arm in enumerate(arms):
    m = [full[arm][s]["mean"] for s in scores]
    ax.bar(np.arange(3) + (i - 1) * 0.27, m, 0.27, yerr=[full[arm][s]["sd"] for s in scores], capsize=3, label=arm)
ax.set(xticks=range(3), xticklabels=["accuracy", "balanced accuracy", "AUROC"], ylim=(0.5, 1.0),
       ylabel="on the real test split", title=f"TSTR, {len(full['seeds'])} seeds (mean ± sd)")
ax.legend(fontsize=8, loc="upper left", ncol=3)
plt.show()
""")

md(r"""
Trained on 4708 synthetic X-rays and tested on real patients, the classifier is about as accurate as one
trained on the 4708 real X-rays: accuracy 0.847 against 0.848, balanced accuracy 0.827 ± 0.019 against
0.801 ± 0.049 (within the real arm's spread across seeds). It trails on AUROC, 0.932 against 0.965, a gap
several times the seeds' spread: its scores rank the real patients less well, even where its yes/no answers
are as often right. Adding the synthetic images to the real ones changes little (0.862, 0.820, 0.962), as
expected from a generator trained on those very images: it adds variations, not new patients. On val,
$w = 1$ made a far more useful set than $w = 3$ (balanced accuracy 0.912 against 0.704). A likely reason, not
measured here: the guidance that gives the requested class most reliably (notebook 09) also pushes each
class towards its most typical look, so a classifier trained on it never sees the hard cases near the
boundary.

## 2. Safe? Look for copies

A model that memorised its training X-rays would hand out near-copies of real patients. The first check
is to look: for each synthetic image, the closest of the 4708 training images in pixels (same intensities
in the same places) and in features (the same kind of image, even if shifted or re-contrasted). For scale
we also measure how close real **test** X-rays, which the model never saw, come to the training set: a
sample much closer than that would be suspicious.
""")

code(r"""
near = closest_training_images(x_s, x_train, net=features)
ref = closest_training_images(x_test[:N_SYNTH], x_train, net=features)
for space in ("pixel", "feature"):
    ratio = np.median(near[f"{space}_distance"]) / np.median(ref[f"{space}_distance"])
    print(f"{space}s: median distance to the nearest training X-ray: samples {np.median(near[f'{space}_distance']):.3f}, "
          f"held-out test X-rays {np.median(ref[f'{space}_distance']):.3f} (ratio {ratio:.2f})")
order = np.argsort(near["pixel_distance"])[:8]                       # the 8 samples closest to a training image
show_images(torch.cat([x_s[order], x_train[near["pixel_index"][order]], x_train[near["feature_index"][order]]]),
            ncols=8, row_labels=["sample", "nearest\nin pixels", "nearest\nin features"],
            titles=[f"{d:.2f}" for d in near["pixel_distance"][order]] + [""] * 16,
            suptitle="the 8 samples closest to a training X-ray (RMS pixel distance above each)")
plt.show()
""")

md(r"""
The samples are *farther* from the training set than unseen real X-rays are: their median distance to the
nearest training image is 1.13 times the held-out one in pixels and 1.24 times in features. The eight closest
samples share the layout of their nearest training X-rays (lungs, heart, the edges of the chest) but are
not copies of them: different shapes, different textures, and the nearest image in pixels is not the same
as the nearest in features.

The study measured the same on the whole synthetic set of the TSTR (4708 samples) against all training
X-rays, with the 624 test X-rays as the held-out yardstick (`python benchmarks/conditional_study.py privacy`):
""")

code(r"""
priv = load_results("privacy")
mem = priv["memorisation"]
print(f"{mem['samples']}\nvs {mem['training_images']} training X-rays, held out: {mem['heldout']}")
print(f"nearest-neighbour ratio (about 1: no copying, well below 1: copies): pixels {mem['nn_ratio']:.3f}, "
      f"features {mem['feature_nn_ratio']:.3f}")
print(f"share of samples closer than the closest 5 % of held-out X-rays (about 0.05 when nothing is copied): "
      f"pixels {mem['fraction_close']:.3f}, features {mem['feature_fraction_close']:.3f}")
""")

md(r"""
On the whole set the same holds: the samples' nearest training X-ray is 1.23 times (pixels) and 1.19 times
(features) as far as a new patient's, and none of the 4708 in pixels (0.7 % in features) come closer to a
training image than the closest 5 % of the held-out X-rays, where samples drawn like new patients would put
about 5 %. No sign of copying. Part of the distance is the samples' grain (DDIM at $\eta = 1$ from a young
model): a sharper model would need this check again.

## 3. Safe? Attack the model: membership inference

Copies are the crude leak. A subtler one: can someone holding the model tell whether *a given patient's*
X-ray was in its training set? A diffusion model fits its training images a little better than others, so
its denoising loss $\lVert\epsilon - \hat\epsilon(x_t, t)\rVert^2$ tends to be lower on them. The **loss attack** scores
every image by that loss (at four small $t$, with the same noises for every image, so only the image
differs) and calls the low-loss ones members. Its AUROC says how well it separates members from
non-members: 0.5 is a coin toss, 1 perfect. The checkpoint records the images it was trained on
(`training_members`), so we know the truth.
""")

code(r"""
members = training_members(PRETRAINED_COND_XRAY)
print({k: v for k, v in members.items() if k != "indices"}, f"({len(members['indices'])} indices)")
g = torch.Generator().manual_seed(SEED)
idx_in = torch.tensor(members["indices"])[torch.randperm(len(members["indices"]), generator=g)[:N_ATTACK]]
idx_out = torch.randperm(len(y_test), generator=g)[:N_ATTACK]
attack = membership_inference(G, scheduler, x_train[idx_in], x_test[idx_out], n_noise=2,
                              member_labels=y_train[idx_in], nonmember_labels=y_test[idx_out])
chance_sd = ((2 * N_ATTACK + 1) / (12 * N_ATTACK ** 2)) ** 0.5        # sd of the AUROC of a useless attack
print(f"{N_ATTACK} members vs {N_ATTACK} non-members, t = {attack['timesteps']}: AUROC {attack['auroc']:.3f} "
      f"(a coin: 0.5 ± {chance_sd:.3f}); mean loss members {attack['member_loss'].mean():.4f}, "
      f"non-members {attack['nonmember_loss'].mean():.4f}")
""")

md(r"""
**Exercise 3** (three lines): the AUROC of the attack from the two sets of losses, without a library: the
probability that a random member has a *lower* loss than a random non-member, a tie counting one half.
Then compare it with the library's value above.
""")

code(r"""
def attack_auroc(member_loss, nonmember_loss):
    # member_loss (N,), nonmember_loss (M,) float arrays; return P(member loss < non-member loss) + ties / 2
    return None  # TODO: your code here


nb10.attack_auroc.check(attack_auroc);
""")

md(r"""
An attack that reports nothing could simply be broken. The **positive control**: a tiny UNet over-fitted
on 32 phantoms (16 px, T = 50, plain diffusion loss, many passes over the same images), attacked the same
way against 64 phantoms it never saw. If the attack works, it must find these members.
""")

code(r"""
control = overfit_control(steps=700 if LONG_RUN else 300)
ctrl = membership_inference(control.G, control.scheduler, control.members, control.nonmembers)
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6), dpi=80)
for ax, r, name in ((axes[0], attack, "shipped X-ray model"), (axes[1], ctrl, "over-fitted control")):
    bins = np.histogram_bin_edges(np.r_[r["member_loss"], r["nonmember_loss"]], 20)
    ax.hist(r["nonmember_loss"], bins, alpha=0.6, label="non-members")
    ax.hist(r["member_loss"], bins, alpha=0.6, label="members")
    ax.set(title=f"{name}: AUROC {r['auroc']:.2f}", xlabel="denoising loss")
axes[0].legend(fontsize=8)
plt.show()
print(f"control: {700 if LONG_RUN else 300} steps in {control.seconds:.0f} s")
""")

md(r"""
On the shipped model the losses of members and non-members overlap almost entirely: the AUROC of 0.57 is
less than two standard deviations (0.05, printed above) from a coin at 64 + 64 images. On the
over-fitted control the members' losses sit clearly lower and the same attack reaches 0.79 after 300
steps; trained longer (700 steps, `LONG_RUN = True`, and the study below) it gets close to 1. So the attack
works, and the shipped model does not give much away to it.

An AUROC averages over every threshold. An attacker wants the few patients it can name with almost no
false alarms, so privacy papers also report the **true-positive rate at a low false-positive rate**
(Carlini et al. 2022): put the loss threshold where it flags only 10 % (or 1 %) of the non-members, and
count the members it flags (`privacy.tpr_at_fpr`). A useless attack flags members at the same rate.
""")

code(r"""
for name, r in (("shipped X-ray model", attack), ("over-fitted control", ctrl)):
    print(f"{name:20s} TPR at 10 % FPR {tpr_at_fpr(r['member_loss'], r['nonmember_loss'], 0.1):.3f}, "
          f"at 1 % FPR {tpr_at_fpr(r['member_loss'], r['nonmember_loss'], 0.01):.3f}")
""")

md(r"""
The study attacked 624 members against all 624 test X-rays, with four noises per image and with and
without the true class label, and trained the control for 700 steps (`conditional_study.py privacy`):
""")

code(r"""
for key, name in (("true_labels", "loss attack, true class"), ("no_class", "loss attack, 'no class' token"),
                  ("control", "positive control (over-fitted)")):
    r = priv[key]
    n, m = r["n_members"], r["n_nonmembers"]
    coin = ((n + m + 1) / (12 * n * m)) ** 0.5                   # sd of a useless attack's AUROC
    print(f"{name:31s} {n:3d} vs {m:3d}: AUROC {r['auroc']:.3f} (a coin: 0.5 ± {coin:.3f}), "
          f"TPR at 1 % FPR {r['tpr_at_fpr_0.01']:.3f}, at 10 % FPR {r['tpr_at_fpr_0.1']:.3f}")
print(f"mean loss (true class): members {priv['true_labels']['member_loss_mean']:.4f}, "
      f"non-members {priv['true_labels']['nonmember_loss_mean']:.4f}")
""")

md(r"""
On all 624 members against the 624 test X-rays the attack reaches an AUROC of 0.525 with the true class
and 0.520 with the "no class" token: the members' loss is lower on average, by about 3 %, but a useless
attack would land within ±0.016 of 0.5 (one standard deviation at this size), so this is 1.5 standard
deviations, a faint trace at most. At a 1 % false-positive rate it names 2.7 % of the members (a coin:
1 %). The control, trained 700 steps, reaches 0.992 and names 84 % of its members at 1 % FPR. So the
attack can find members when the model has memorised them, and on the shipped model (4 epochs over 4708
X-rays) it finds little: evidence, not proof, as the next section says.

## 4. What these tests do not prove

A membership-inference AUROC near 0.5 says that **this** attack could not tell members apart. It does not
say that no attack can: stronger ones (per-image calibration with shadow models, LiRA, Carlini et al. 2022)
find leaks that an average hides, and the patients most at risk are the few unusual ones. A guarantee needs
**differential privacy**: training with DP-SGD (Abadi et al. 2016: every example's gradient clipped, Gaussian
noise added, the privacy spent tracked by an accountant, as in the Opacus library) bounds what *any* attack can
learn about one image, TPR ≤ $e^{\varepsilon}$ FPR + $\delta$. For diffusion models that guarantee costs image
quality at a useful $\varepsilon$ (Dockhorn et al. 2023). So: report the attack, the control and the nearest
neighbours as evidence; never call a synthetic data set "private" on an attack alone; and for data that
leaves the hospital, train with DP and state $\varepsilon$.
""")

md(r"""
## Recap
- **Useful** means useful on real patients: TSTR trains on synthetic images and tests on the real test split,
  against a real-only baseline, with balanced accuracy and AUROC because the classes are unbalanced.
- **Copies** are checked by looking: each sample beside its nearest training image, in pixels and in
  features, with held-out real images as the yardstick (ratio about 1: no closer than unseen patients).
- **Membership inference** asks whether the model's loss betrays its training images; the over-fitted
  control proves the attack can find members when they are there; TPR at a low FPR shows the worst case
  better than the AUROC.
- None of this is a privacy guarantee; differential privacy is.
""")

md(r"""
### Questions
1. Why test every TSTR arm on the same *real* test split, and why choose the guidance scale on val?
2. Real + synthetic trains on twice as many images. Why is that not a fair "more data" comparison, and
   what would be?
3. Why does the attack use the *same* noises for every image?
4. The shipped model was trained for 4 epochs on 4708 images. Would you expect the attack's AUROC to rise
   or fall after 40 epochs, and why?

<details><summary>Answers</summary>

1. Because the question is how a classifier does on real patients: a synthetic test set would reward a
   generator for being easy, not for being right. Choosing $w$ on the test split would make the reported
   number the best of several tries on the very data it is reported on, an optimistic bias; val is there
   for choices.
2. Its synthetic half comes from a model trained on the same real images, so it adds no new patients, only
   variations; and it also takes twice the training steps (20 passes over a set twice as large). A fair
   comparison would give the real-only arm the same number of steps (or augmentations of the real images).
3. The loss of one image varies a lot with the noise drawn; with the same noises for every image only the
   image differs between the scores, so the variance that has nothing to do with membership cancels.
4. Rise: the more passes over the same images, the better the model fits them compared with unseen ones
   (the control is the extreme case: 32 images, hundreds of passes). Longer training needs a new attack
   before the model is shared.
</details>

**Back to the start:** [README](../README.md) · [00 · Welcome](00_welcome.ipynb).
""")


if __name__ == "__main__":
    write("10_useful_and_safe.ipynb")
