CELLS = [
("md", r"""
## 6. Real chest X-rays

Everything above used phantoms. The course also ships real scans: PneumoniaMNIST (MedMNIST v2, CC BY
4.0; pediatric chest X-rays, 4708 training images, resized from 28 to 32 px, scaled as 8-bit images,
$x / 127.5 - 1$: see `data/README.md`), and a model trained on them with the course's default recipe
(pure diffusion with the UNet's mean path, notebook 02) for 4 epochs (588 steps, about 5 CPU-minutes;
`data/pretrained/README.md`). Below: real test-split X-rays,
then samples drawn with the course's fast default (`FAST_SAMPLER`: DDIM-50, $\eta = 1$).
"""),
("code", r"""
from diffgan_lib import ImageDataset
from diffgan_lib.course import PRETRAINED_XRAY, load_results
from diffgan_lib.sampling import FAST_SAMPLER

G_x, _, sched_x = xk = load_checkpoint(PRETRAINED_XRAY, device=DEVICE)
real_xray = ImageDataset("pneumoniamnist", xk.image_size, split="test").images[:16]
t0 = time.perf_counter()
fake_xray = sample(G_x, sched_x, n=16, image_size=xk.image_size, seed=0, clip_x0=True, progress=False,
                   **FAST_SAMPLER).cpu()
print(f"{PRETRAINED_XRAY.name}: {xk.step} steps; 16 samples in {time.perf_counter() - t0:.1f} s")
show_rows({"real (test split)": real_xray[:8], "real, more": real_xray[8:],
           "samples": fake_xray[:8], "samples, more": fake_xray[8:]}, title="PneumoniaMNIST, 32 px")
plt.show()
"""),
("md", r"""
The samples are recognisably chest X-rays: two dark lung fields either side of a bright mediastinum.
They are blurrier than the real images (the ribs are mostly missing),
and their overall brightness stays within the real images' range. That is what 4 epochs on a CPU buy; the
scores say how far it is from real.

Scoring needs 256 samples per set and a feature net trained on the X-rays, more than this notebook's
budget, so the numbers come from `benchmarks/xray_study.py` (results in
`benchmarks/results/xray_sampling.json`, and `benchmarks/results/mean_path.json` for today's default, written
by `benchmarks/mean_path_study.py probe`): FD, KID and SWD against the 624 test X-rays, with the real-vs-real
line (256 val X-rays against the test split), all sampled with DDIM-50 at $\eta = 1$ unless the name says
otherwise. "today" is today's default, whose seed 0 the shipped model is (its full-precision weights: the
file keeps them in float16); "first" is the course's first default, the hybrid with the plain UNet, whose
3-seed mean is also scored with deterministic DDIM ($\eta = 0$). Each recipe's seed 0 was also trained on
(to 8 and 20 epochs).
"""),
("code", r"""
xr, mp = load_results("xray_sampling"), load_results("mean_path")
first = lambda run, key="ema_eta1_ddim50": xr["runs"][run][key]["test"]   # the first default: plain UNet, hybrid
today = lambda run: mp["runs"][run]["as_trained"]                          # today's: mean path, pure diffusion
mean_of = lambda scores: {m: sum(s[m] for s in scores) / len(scores) for m in ("fd", "kid", "swd")}
four_first = [r for r in xr["runs"] if r.endswith("_e4/final_model")]
four_today = ["pure_mean_seed0_e8/epoch_0004.pth", "pure_mean_seed1_e4/final_model.pth", "pure_mean_seed2_e4/final_model.pth"]
rows = {"shipped (today, 4 ep.)": today(four_today[0]),
        "today, 4 ep., 3 seeds": mean_of([today(r) for r in four_today]),
        "today, 8 ep.": today("pure_mean_seed0_e8/final_model.pth"),
        "first, 4 ep., 3 seeds": mean_of([first(r) for r in four_first]),
        "first, 3 seeds, η = 0": mean_of([first(r, "ema_eta0_ddim50") for r in four_first]),
        "first, 20 ep.": first("seed0_e20/final_model")}
for name, r in rows.items():
    print(f"{name:24s} FD {r['fd']:8.3f}  KID {r['kid']:8.4f}  SWD {r['swd']:6.2f}")
print("4 ep., η = 1, FD per training seed: today's default " + ", ".join(f"{today(r)['fd']:.1f}" for r in four_today)
      + "; first default " + ", ".join(f"{first(r)['fd']:.1f}" for r in four_first))
rr = xr["real_vs_real"]
print(f"{'real vs real':24s} FD {rr['fd']:8.3f}  KID {rr['kid']:8.4f}  SWD {rr['swd']:6.2f}")
plot_metric_bars(rows, baseline=rr, title="real chest X-rays, 256 samples each, DDIM-50")
plt.show()
"""),
("md", r"""
Today's default scores FD 14.5 over three training seeds after 4 epochs (14.7, 12.5 and 16.5, printed above),
near the real-vs-real 13.1. The first default scored 31.9 with a wide spread (16.4 to 44.3), and 94.5
when sampled deterministically ($\eta = 0$, three times worse: notebook 06 shows why the fast default uses
$\eta = 1$). The last bars show what longer training does. The first default, trained on to 20 epochs,
scores 132.7, far worse than after 4; today's default at 8 epochs scores 9.0, better than after 4. The
README's X-ray section found the two causes of the old slide: each sample's brightness wandering, because the
plain UNet cannot see an image's mean (notebook 02, section 6), and the hybrid's adversarial term on $\hat x_0$,
which switches on after a 500-step warm-up (notebook 08 explains why it fights the diffusion loss).

A score below the real-vs-real line (9.0 against 13.1) does not mean "more real than real": the baseline is
256 other real X-rays, and at this $N$ the metric can no longer tell the samples from real ones. Question 2
below asks what else you would check.

"""),
]
