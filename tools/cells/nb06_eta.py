CELLS = [
("md", r"""
### How much noise η = 1 adds: σ_t and DDPM's posterior variance

DDIM's step (Song et al. 2021, eq. 12) adds fresh noise with standard deviation
$\sigma_t(\eta) = \eta\,\sqrt{\tfrac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\,\sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_{t'}}}$
(eq. 16) when it jumps from $t$ to $t' < t$. For one small step ($t' = t - 1$) and $\eta = 1$ this is
exactly DDPM's posterior variance $\tilde\beta_t = \tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t$: the
spread of $x_{t-1}$ given $x_t$ and $x_0$. So $\eta = 1$ is "DDPM's kind of noise, on DDIM's
timesteps". (The seed's DDPM uses the slightly larger $\sigma_t^2 = \beta_t$; both are in Ho et al.)
"""),
("code", r"""
# NBVAL_CHECK_OUTPUT
ah, betas = scheduler.alpha_hat.cpu().double(), scheduler.betas.cpu().double()
for t in (999, 500, 10):
    sigma_eta1 = torch.sqrt((1 - ah[t - 1]) / (1 - ah[t]) * (1 - ah[t] / ah[t - 1]))   # eq. 16, t' = t - 1
    beta_tilde = (1 - ah[t - 1]) / (1 - ah[t]) * betas[t]                             # DDPM's posterior variance
    print(f"t = {t:3d}: sigma_t(eta=1)^2 = {sigma_eta1 ** 2:.6f}   beta_tilde_t = {beta_tilde:.6f}   beta_t = {betas[t]:.6f}")
"""),
("md", r"""
### Exercise 2: one DDIM step, with η

Section 2 wrote DDIM's jump for $\eta = 0$. With $\eta > 0$ the step (Song et al. 2021, eq. 12) adds fresh
noise $\sigma_t z$, $z \sim \mathcal N(0, I)$, and the predicted noise keeps only what is left of the
variance $1-\bar\alpha_{t'}$:
$$x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma_t^2}\;\epsilon_\theta(x_t, t) + \sigma_t z.$$
Write that step, with $\sigma_t(\eta)$ from eq. 16 above. $\hat x_0$ arrives ready-made: the samplers get it
from `scheduler.predict_x0(x_t, t, eps_pred)`, notebook 04's inversion of eq. 4 (the check computes it the
same way). The check runs your step at $\eta = 0$ and at $\eta = 1$ and compares it with the library's own
`scheduler.ddim_step`, which `sample()` calls at every DDIM step (here without clipping).
"""),
("code", r'''
def ddim_step(x0_pred, eps_pred, alpha_hat_t, alpha_hat_prev, eta, z):
    """One DDIM step from t to the earlier t'. x0_pred, eps_pred, z: (B, C, H, W); alpha_hat_t and
    alpha_hat_prev: 0-d tensors (alpha_hat at t and at t'); eta: a float in [0, 1]. Returns x at t'."""
    return None  # TODO: sigma_t (eq. 16), then eq. 12: about three lines


nb06.ddim_step.check(ddim_step);
# nb06.ddim_step.hint()
# nb06.ddim_step.solution()
'''),
("md", r"""
### η measured: real chest X-rays, 256 samples per point

Eight samples are an anecdote. `benchmarks/xray_study.py` measured the choice on real scans: the
course's first default (the hybrid, with the plain UNet of notebook 02) trained on PneumoniaMNIST (32 px
chest X-rays) through `train()`, as the command line did, for 4 epochs (three training seeds) and, for seed 0, also 1 and 20 epochs; sampled with DDIM from the
EMA weights at $\eta = 0$ and $\eta = 1$ (seed 0 at 10, 25 and 50 steps, the others at 50); 256 samples per
point, scored by FD in the features of a small network trained on the training X-rays, against the test
split (notebook 07 explains FD). One point costs about 5-10 CPU-minutes, so the figure is loaded from the
script's committed results file, `benchmarks/results/xray_sampling.json`.
"""),
("code", r"""
xr = load_results("xray_sampling")
runs = xr["runs"]
fd = lambda run, key: runs[run][key]["test"]["fd"]
seeds4 = [r for r in runs if r.endswith("_e4/final_model")]
fig, ax = plt.subplots(figsize=(8.5, 3.8), dpi=80)
for eta, color in ((0, "C0"), (1, "C3")):
    pts = sorted((int(k.split("ddim")[1]), fd("seed0_e4/final_model", k)) for k in runs["seed0_e4/final_model"]
                 if k.startswith(f"ema_eta{eta}_"))
    ax.plot(*zip(*pts), "o-", color=color, lw=2, label=f"η = {eta}, 4 epochs, seed 0")
    at50 = torch.tensor([fd(r, f"ema_eta{eta}_ddim50") for r in seeds4])
    ax.errorbar([44], [at50.mean()], yerr=[at50.std()], fmt="s", color=color, capsize=4,
                label=f"η = {eta}, 4 epochs, DDIM-50: mean ± sd, {len(seeds4)} seeds")
    for run, x, marker, what in (("seed0_e20/epoch_0001", 38, "v", "1 epoch"), ("seed0_e20/final_model", 57, "^", "20 epochs")):
        if f"ema_eta{eta}_ddim50" in runs.get(run, {}):
            ax.plot([x], [fd(run, f"ema_eta{eta}_ddim50")], marker, color=color, ms=9, mfc="none", label=f"η = {eta}, {what}, DDIM-50")
    ends = " / ".join(f"{fd(r, f'ema_eta{eta}_ddim50'):.1f}" for r in ("seed0_e20/epoch_0001", "seed0_e20/final_model"))
    print(f"η = {eta}: seed 0 at 10/25/50 steps {' '.join(f'{v:.1f}' for _, v in pts)}; {len(seeds4)} seeds at 50: {at50.mean():.1f} ± {at50.std():.1f}; 1/20 epochs {ends}")
ax.axhline(xr["real_vs_real"]["fd"], color="k", ls="-.", lw=1, label=f"real vs real ({xr['real_vs_real']['fd']:.1f})")
ax.set(xscale="log", yscale="log", xticks=[10, 25, 50], xticklabels=[10, 25, 50], xlabel="DDIM steps (network evaluations)",
       ylabel="FD against test X-rays (log)", title="DDIM on real chest X-rays, 256 samples per point")
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.yaxis.set_minor_formatter(plt.NullFormatter()); ax.set_yticks([10, 20, 50, 100], ["10", "20", "50", "100"])
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
fig.tight_layout()
plt.show()
"""),
("md", r"""
At every point $\eta = 1$ is far ahead of $\eta = 0$ for the same number of network calls. For this
4-epoch model (seed 0), $\eta = 0$ stays near FD 103 whether it takes 10, 25 or 50 steps, while $\eta = 1$
scores 43.6, 35.9 and 34.9; over three training seeds at DDIM-50 it is 31.9 ± 14.2 against 94.5 ± 13.3
(the real-vs-real floor is 13.1). Deterministic DDIM follows the network's noise estimate exactly, so a
young model's errors add up along one path; $\eta = 1$ replaces part of the state with fresh noise at
every step, and part of each error is forgotten (DDPM does the same in 1000 small steps). With $\eta = 1$
most of the gain is in by 25 steps. So the course's fast default, `FAST_SAMPLER`, used by
`generate_and_visualize` and `python -m diffgan_lib sample`, is DDIM-50 with $\eta = 1$ (the grid in
section 4 uses it); `sample()` keeps the seed's DDPM.

The triangles hold a surprise of their own: after 1 epoch the same model scores 47.2 ($\eta = 1$), and
trained on to 20 epochs it scores 132.7, far worse than at 4. More training made this X-ray model
worse. The README's X-ray section found two causes: the brightness that the plain UNet cannot see
(notebook 02, section 6), which lets each sample's brightness wander under $\eta = 1$, and the GAN term.
Today's default (the mean path, pure diffusion) has neither; notebook 07 shows its scores.
"""),
]
