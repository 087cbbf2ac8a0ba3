CELLS = [
("md", r"""
## 6. Real chest X-rays

Everything above used phantoms. The course also ships real scans: PneumoniaMNIST (MedMNIST v2, CC BY
4.0; pediatric chest X-rays, 4708 training images, resized from 28 to 32 px, scaled as 8-bit images,
$x / 127.5 - 1$: see `data/README.md`), and a model trained on them with the course's default recipe
for 4 epochs (588 steps, about 7 CPU-minutes; `data/pretrained/README.md`). Below: real test-split X-rays,
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
NARRATIVE_XRAY_GRID

Scoring needs 256 samples per set and a feature net trained on the X-rays, more than this notebook's
budget, so the numbers come from `benchmarks/xray_study.py` (results in
`benchmarks/results/xray_sampling.json`): FD, KID and SWD against the 624 test X-rays, with the
real-vs-real line (256 val X-rays against the test split). Next to the shipped model (training seed 0): the
same recipe's mean over three training seeds, sampled with the fast default and with deterministic
DDIM-50 ($\eta = 0$, the course's default until this measurement), and seed 0 trained on to 20 epochs.
"""),
("code", r"""
xr = load_results("xray_sampling")
runs = xr["runs"]
pick = lambda run, key: runs[run][key]["test"]
four = [r for r in runs if r.endswith("_e4/final_model")]
rows = {"shipped (4 ep., seed 0)": pick("seed0_e4/final_model", "ema_eta1_ddim50"),
        "4 ep., 3 seeds": {m: sum(pick(r, "ema_eta1_ddim50")[m] for r in four) / len(four) for m in ("fd", "kid", "swd")},
        "4 ep., 3 seeds, η = 0": {m: sum(pick(r, "ema_eta0_ddim50")[m] for r in four) / len(four) for m in ("fd", "kid", "swd")},
        "20 ep. (seed 0)": pick("seed0_e20/final_model", "ema_eta1_ddim50")}
for name, r in rows.items():
    print(f"{name:20s} FD {r['fd']:8.3f}  KID {r['kid']:8.4f}  SWD {r['swd']:6.2f}")
print("4 ep., η = 1, per training seed: FD " + ", ".join(f"{pick(r, 'ema_eta1_ddim50')['fd']:.1f}" for r in four))
rr = xr["real_vs_real"]
print(f"{'real vs real':20s} FD {rr['fd']:8.3f}  KID {rr['kid']:8.4f}  SWD {rr['swd']:6.2f}")
plot_metric_bars(rows, baseline=rr, title="real chest X-rays, 256 samples each, DDIM-50")
plt.show()
"""),
("md", r"""
NARRATIVE_XRAY_SCORES
"""),
]
