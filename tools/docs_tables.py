"""Print the result tables of docs/results.md (and two other docs) from benchmarks/results/*.json.

The docs quote these tables; they never retype them. After a results file changes, print the table
again, paste it over the old one, and check that every doc still quotes its tables exactly:

    python tools/docs_tables.py xray           # one table (names: python tools/docs_tables.py --help)
    python tools/docs_tables.py all            # every table, each under its name and target file
    python tools/docs_tables.py check          # exit 1 if a doc's table differs from its results file

Reads JSON only: no torch, runs in a second.
"""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"


def load(name):
    return json.loads((RES / f"{name}.json").read_text())


def ms(vals, d=1):
    """mean ± sd over seeds (the sample sd), or the single value."""
    if len(vals) == 1:
        return f"{vals[0]:.{d}f}"
    return f"{statistics.fmean(vals):.{d}f} ± {statistics.stdev(vals):.{d}f}"


def per_seed(vals, d=1):
    return " / ".join(f"{v:.{d}f}" for v in vals)


def pct(v):
    """0.453125 -> '45.3 %', 0.13 -> '13.0 %', 1.0 -> '100 %'."""
    return "100 %" if v == 1 else f"{100 * v:.1f} %"


def span(vals, unit=" s"):
    lo, hi = round(min(vals)), round(max(vals))
    return f"{lo}{unit}" if lo == hi else f"{lo}-{hi}{unit}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ X-rays, 4 epochs
def xray():
    """The X-ray study: every 4-epoch recipe and sampler (xray_sampling.json, mean_path.json)."""
    x, m = load("xray_sampling"), load("mean_path")
    runs, arms, cli = x["runs"], x["arms"], x["cli"]
    mp = {k: v["as_trained"]["fd"] for k, v in m["runs"].items()}
    fd = lambda run, key: runs[run][key]["test"]["fd"]
    plain = [f"seed{s}_e4/final_model" for s in (0, 1, 2)]
    pure_mean = [mp["pure_mean_seed0_e8/epoch_0004.pth"], mp["pure_mean_seed1_e4/final_model.pth"],
                 mp["pure_mean_seed2_e4/final_model.pth"]]
    hybrid_mean = [mp["mean_seed0_e8/epoch_0004.pth"], mp["mean_seed1_e4/final_model.pth"],
                   mp["mean_seed2_e4/final_model.pth"]]
    s0 = "seed0_e4/final_model"
    two = lambda a, b: f"{a:.1f} / {b:.1f}"
    rows = [
        ("real vs real (256 val vs test)", f"{x['real_vs_real']['fd']:.1f}", ""),
        ("**pure diffusion + mean path** (the default recipe), η = 1 (the default sampler)", ms(pure_mean),
         per_seed(pure_mean)),
        ("pure diffusion + mean path, 8 epochs (seed 0, the same run continued)",
         f"{mp['pure_mean_seed0_e8/final_model.pth']:.1f}", ""),
        ("the hybrid + mean path, η = 1", ms(hybrid_mean), per_seed(hybrid_mean)),
        ("the hybrid + mean path, 8 epochs (seed 0, the same run continued)",
         f"{mp['mean_seed0_e8/final_model.pth']:.1f}", ""),
        ("the hybrid, plain UNet, η = 0", ms([fd(r, "ema_eta0_ddim50") for r in plain]),
         per_seed([fd(r, "ema_eta0_ddim50") for r in plain])),
        ("the hybrid, plain UNet, η = 1", ms([fd(r, "ema_eta1_ddim50") for r in plain]),
         per_seed([fd(r, "ema_eta1_ddim50") for r in plain])),
        ("the hybrid, plain UNet, raw weights, η = 1 (seed 0)", f"{fd(s0, 'raw_eta1_ddim50'):.1f}", ""),
        ("the hybrid, plain UNet, η = 1, DDIM-10 / DDIM-25 (seed 0)",
         two(fd(s0, "ema_eta1_ddim10"), fd(s0, "ema_eta1_ddim25")), ""),
        ("the hybrid, plain UNet, η = 0, DDIM-10 / DDIM-25 (seed 0)",
         two(fd(s0, "ema_eta0_ddim10"), fd(s0, "ema_eta0_ddim25")), ""),
        ("the hybrid, plain UNet, 1 epoch (seed 0): η = 0 / η = 1",
         two(fd("seed0_e20/epoch_0001", "ema_eta0_ddim50"), fd("seed0_e20/epoch_0001", "ema_eta1_ddim50")), ""),
        ("the hybrid, plain UNet, 20 epochs (seed 0, the same run continued): η = 0 / η = 1",
         two(fd("seed0_e20/final_model", "ema_eta0_ddim50"), fd("seed0_e20/final_model", "ema_eta1_ddim50")), ""),
        ("the command line's `sample -n 256` (noise seed 0) of the hybrid, plain UNet, seed 0",
         f"{cli['default_sample']['test']['fd']:.1f}", ""),
        ("**the command line end to end, pure diffusion + mean path**: `train --data pneumoniamnist --image-size 32 "
         "--base 32 --epochs 4 --batch-size 32`, then `sample -n 256`", f"**{cli['today_default']['test']['fd']:.1f}**", ""),
        ("the same two commands with `--adv-weight 0.01` (the hybrid + mean path)",
         f"{cli['hybrid_mean_default']['test']['fd']:.1f}", ""),
        ("for scale: the seed's loop as written (no t, no EMA, base 32), 588 steps, its DDPM-1000 (seed 0)",
         f"{fd('seed_as_written_seed0/final_model', 'raw_ddpm1000'):.1f}", ""),
        ("for scale: a bare time-conditioned UNet (plain, no EMA, no GAN), 588 steps, DDPM-1000 as the seed wrote it",
         f"{fd('bare_unet_seed0/final_model', 'raw_ddpm1000'):.1f}", ""),
        ("the same bare UNet, DDPM-1000 with x̂0 clipped to [−1, 1]",
         f"{fd('bare_unet_seed0/final_model', 'raw_ddpm1000_clip'):.1f}", ""),
    ]
    pure = [arms[f"pure_seed0_e20/{e}"]["ema_eta1_ddim50"]["test"]["fd"]
            for e in ("epoch_0001", "epoch_0004", "epoch_0008", "final_model")]
    return (table(("4-epoch models, DDIM-50 from the EMA weights unless said", "FD ↓ (mean ± sd, 3 seeds)",
                   "per seed"), rows)
            + f"\n\nPure diffusion, plain UNet, seed 0, η = 1, after 1 / 4 / 8 / 20 epochs: {per_seed(pure)}.")


def mean_path():
    """The mean-path probe: ε̂'s per-image mean, the samples' brightness, FD with the mean corrected."""
    m = load("mean_path")
    labels = {
        "seed0_e4/final_model.pth": "the hybrid, plain UNet, 4 epochs, seed 0",
        "pure_seed0_e20/epoch_0008.pth": "pure diffusion, plain UNet, 8 epochs, seed 0",
        "mean_seed0_e8/epoch_0004.pth": "the hybrid + mean path, 4 epochs, seed 0",
        "mean_seed1_e4/final_model.pth": "the hybrid + mean path, 4 epochs, seed 1",
        "mean_seed2_e4/final_model.pth": "the hybrid + mean path, 4 epochs, seed 2",
        "mean_seed0_e8/final_model.pth": "the hybrid + mean path, 8 epochs, seed 0",
        "pure_mean_seed0_e8/epoch_0004.pth": "pure diffusion + mean path, 4 epochs, seed 0",
        "pure_mean_seed1_e4/final_model.pth": "pure diffusion + mean path, 4 epochs, seed 1",
        "pure_mean_seed2_e4/final_model.pth": "pure diffusion + mean path, 4 epochs, seed 2",
        "pure_mean_seed0_e8/final_model.pth": "pure diffusion + mean path, 8 epochs, seed 0",
    }
    rows = []
    for key, label in labels.items():
        r = m["runs"][key]
        sds = [v[0] for t, v in r["eps_mean_sd"].items() if int(t) >= 300]
        rows.append((label, f"{min(sds):.3f}-{max(sds):.3f}", f"{r['as_trained']['brightness_sd']:.2f}",
                     f"{r['as_trained']['fd']:.1f}", f"{r['posterior_mean']['fd']:.1f}"))
    true = [v[1] for t, v in m["runs"]["seed0_e4/final_model.pth"]["eps_mean_sd"].items() if int(t) >= 300]
    rows.insert(0, ("the true noise / the real test X-rays", f"{min(true):.3f}-{max(true):.3f}",
                    f"{m['real_test_brightness_sd']:.2f}", "", ""))
    return table(("model (`mean_path_study.py`)", "sd of ε̂'s per-image mean, t = 300-999",
                  "samples' brightness sd", "FD ↓", "FD, ε̂'s mean corrected (a diagnostic)"), rows)


# ------------------------------------------------------------------------------ the peer
def peer():
    """The Hugging Face course's recipe against ours, seed by seed (peer_diffusers.json)."""
    p = load("peer_diffusers")
    rr = p["real_vs_real"]
    rows = [("", "real vs real (256 val vs test)", "—", "—", f"{rr['fd']:.1f}", f"{rr['kid']:.3f}", f"{rr['swd']:.1f}")]
    for seed, s in p["per_seed"].items():
        for side in ("peer", "ours"):
            r = s[side]
            name = (f"peer: HF course unit 1 ({r['params'] / 1e6:.2f} M)" if side == "peer"
                    else f"ours: `cpu_quick()` ({r['params'] / 1e6:.2f} M)")
            for key, smp in r["samplers"].items():
                label = smp["label"].replace(" (diffusers DDIMPipeline)", "").replace("eta", "η")
                if side == "peer" and key == r["best"]:
                    label += " (best on val)"
                rows.append((seed, name, r["steps"], label, f"{smp['test']['fd']:.1f} ({smp['val']['fd']:.1f})",
                             f"{smp['test']['kid']:.2f}", f"{smp['test']['swd']:.1f}"))
    return table(("seed", "model", "steps in 360 s", "sampler", "FD ↓ test (val)", "KID ↓", "SWD ↓"), rows)


def peer_summary():
    """Ours against the peer at 360 s, for each of ours' recipes (the three peer results files)."""
    rows = []
    for name, label in (("peer_diffusers", "pure diffusion + mean path"),
                        ("peer_diffusers_hybrid", "the hybrid + mean path")):
        p = load(name)
        t = p["summary"]["test"]
        steps = {side: [s[side]["steps"] for s in p["per_seed"].values()] for side in ("ours", "peer")}
        rows.append((label, f"`{name}.json`", len(p["per_seed"]),
                     f"{span(steps['ours'], '')} / {span(steps['peer'], '')}",
                     ms(t["fd_ours"]), ms(t["fd_peer"]), per_seed(t["ratio_per_seed"], 2)))
    p = load("peer_diffusers_plain_seed0")
    best = lambda side: p[side]["samplers"][p[side]["best"]]["test"]["fd"]
    rows.append(("the hybrid, plain UNet (a busier machine)", "`peer_diffusers_plain_seed0.json`", 1,
                 f"{p['ours']['steps']} / {p['peer']['steps']}", f"{best('ours'):.1f}", f"{best('peer'):.1f}",
                 f"{p['fd_ratio_ours_over_peer']:.2f}"))
    return table(("ours", "results file", "seeds", "steps in 360 s, ours / peer", "FD ↓ ours",
                  "FD ↓ peer (its best sampler)", "ours / peer, per seed"), rows)


# ------------------------------------------------------------------------------ few-step
def _fewstep_train_times(f, arm):
    return span([a["wall_s"] for k, a in f["arms"].items()
                 if a["arm"] == arm and a["data"] == "pneumoniamnist" and a.get("levels", 4) == 4])


def fewstep():
    """The few-step study's headline rows, with the network calls and training times (fewstep_study.json)."""
    f = load("fewstep_study")
    h = f["headline"]
    rows = []
    for key, label, calls, arm in (
            ("the teacher itself (4 epochs), ddim4_eta0", "the teacher itself (4 epochs), DDIM-4, η = 0", 4, None),
            ("the teacher itself (4 epochs), ddim4_eta1", "the teacher itself, DDIM-4, η = 1", 4, None),
            ("pure diffusion continued, ddim4_eta1", "pure diffusion continued 4 more epochs (`--adv-weight 0`), "
             "DDIM-4, η = 1 (its better η)", 4, "continued_pure"),
            ("pure diffusion continued, ddim10_eta1", "the same, DDIM-10, η = 1", 10, ""),
            ("regression, 4 levels", "few-step, regression only (`--adv-weight 0`)", 4, "regression"),
            ("adversarial, 4 levels", "few-step, adversarial (`--adv-weight 1`)", 4, "adversarial")):
        r = h[key]
        time = "—" if arm is None else _fewstep_train_times(f, arm) if arm else ""
        rows.append((label, calls, f"{r['fd']['mean']:.1f} ± {r['fd']['sd']:.1f}", f"{r['kid']['mean']:.2f}",
                     f"{r['swd']['mean']:.1f}", f"{r['diversity_feature']['mean']:.2f}", time))
    rr = f["real_vs_real"]["pneumoniamnist"]["fd"]
    return table((f"X-rays, 32 px (real vs real: FD {rr:.1f})", "network calls", "FD ↓", "KID ↓", "SWD ↓",
                  "diversity", "train time"), rows)


def fewstep_full():
    """Every arm of the few-step study with its memorisation ratio and sampling time (benchmarks/README.md)."""
    f = load("fewstep_study")
    rows = []
    for label, r in f["headline"].items():
        rows.append((label.replace("default hybrid continued", "the hybrid continued"), r["n_seeds"],
                     f"{r['fd']['mean']:.1f} ± {r['fd']['sd']:.1f}", f"{r['kid']['mean']:.3f}", f"{r['swd']['mean']:.1f}",
                     f"{r['diversity_feature']['mean']:.3f}", f"{r['nn_ratio']['mean']:.2f}",
                     f"{1e3 * r['s_per_image']['mean']:.0f}"))
    return table(("arm (X-rays, 4 evaluations unless said)", "seeds", "FD ↓", "KID ↓", "SWD ↓", "diversity",
                  "NN ratio", "ms / image"), rows)


def fewstep_paired():
    """The few-step study's paired numbers, seed by seed, and the phantom and fewer-level arms (prose in results.md)."""
    f = load("fewstep_study")
    lines = []
    for p in f["paired"]:
        lines.append(f"seed {p['seed']}: adversarial {p['adversarial_fd']:.1f}, regression {p['regression_fd']:.1f}, "
                     f"continued pure diffusion's better DDIM-4 {p['ddim4_best_fd']:.1f} "
                     f"(adversarial / that = {p['adv_over_ddim4']:.2f}), the teacher's better DDIM-4 "
                     f"{p['teacher_ddim4_best_fd']:.1f}")
    sc = f["scores"]
    lines.append("phantoms (real vs real {:.1f}): adversarial {:.1f}, regression {:.1f}, teacher DDIM-4 / 10 / 50 at "
                 "η = 1: {:.1f} / {:.1f} / {:.1f}".format(
                     f["real_vs_real"]["phantoms"]["fd"], sc["phantoms_s0_k4_adversarial"]["own"]["fd"],
                     sc["phantoms_s0_k4_regression"]["own"]["fd"], sc["teacher_phantoms"]["ddim4_eta1"]["fd"],
                     sc["teacher_phantoms"]["ddim10_eta1"]["fd"], sc["teacher_phantoms"]["ddim50_eta1"]["fd"]))
    for k in (2, 1):
        lines.append(f"{k} level(s), seed 0: adversarial {sc[f'xray_s0_k{k}_adversarial']['own']['fd']:.1f}, "
                     f"regression {sc[f'xray_s0_k{k}_regression']['own']['fd']:.1f}")
    lines.append(f"the seed-0 teacher, DDIM-4 η = 1: {sc['teacher_xray_s0']['ddim4_eta1']['fd']:.1f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ phantoms: the recipe
def recipe_eta():
    """The recipe study's headline pair at η = 0 and η = 1 (recipe_eta.json)."""
    r = load("recipe_eta")
    rr = r["real_vs_real"]
    rows = [("real vs real", f"{rr['fd']:.1f}", f"{rr['fd']:.1f}", f"{rr['fd']:.1f}", f"{rr['kid']:.3f}",
             f"{rr['swd']:.1f}")]
    for variant, label in (("pure", "pure diffusion"), ("hybrid", "the hybrid")):
        run = next(x for x in r["runs"] if x["variant"] == variant)
        rows.append((label, f"{run['ddim50']['fd']:.0f}", f"{run['ddim50_eta1']['fd']:.1f}",
                     f"{run['ddim4_eta1']['fd']:.0f}", f"{run['ddim50_eta1']['kid']:.2f}",
                     f"{run['ddim50_eta1']['swd']:.1f}"))
    return table(("variant (3000 steps, seed 0)", "DDIM-50, η 0", "DDIM-50, η 1", "DDIM-4, η 1", "KID, DDIM-50 η 1",
                  "SWD, DDIM-50 η 1"), rows)


def pretrained():
    """The shipped 10,000-step phantom models scored (pretrained.json; data/pretrained/README.md)."""
    p = load("pretrained")
    names = {"phantoms32_pure_10k.pth": "`phantoms32_pure_10k.pth`",
             "phantoms32_hybrid_10k.pth": "`phantoms32_hybrid_10k.pth`",
             "the 3000-step model shipped before (phantoms32_base32.pth)":
                 "the hybrid after 3000 steps (`phantoms32_base32.pth`, not shipped)"}
    rr, rc = p["real_vs_real"], p["real_contrasts"]
    share = lambda c: " / ".join(f"{c[k]:.2f}" for k in ("ct", "t1", "t2"))
    rows = [("real vs real (held-out phantoms)", "—", "—", f"{rr['fd']:.2f}", f"{rr['kid']:.3g}", f"{rr['swd']:.2f}",
             share(rc))]
    for key, label in names.items():
        if key not in p:
            continue
        for s, sampler in (("ddim50", "DDIM-50"), ("ddim50_eta1", "DDIM-50, η 1"), ("ddim4", "DDIM-4")):
            v = p[key][s]
            rows.append((label, p[key]["step"], sampler, f"{v['fd']:.3g}", f"{v['kid']:.3g}", f"{v['swd']:.3g}",
                         share(v["contrasts"])))
    return table(("model", "steps", "sampler", "FD ↓", "KID ↓", "SWD ↓", "CT / T1 / T2"), rows)


# ------------------------------------------------------------------------------ class control, usefulness, privacy
def guidance():
    """Share of samples given the requested contrast, per guidance scale (guidance.json)."""
    g = load("guidance")
    names = {"0": "0 (unconditional)", "1": "1 (plain conditional)", "3": "3 (the default)"}
    rows = [(names.get(w, w), *(pct(r[c]) for c in ("ct", "t1", "t2", "mean"))) for w, r in g["rates"].items()]
    return table(("guidance w", "CT", "T1", "T2", "mean"), rows)


def tstr():
    """Train on synthetic, test on real: 3 seeds, 624 real test X-rays (tstr.json)."""
    t = load("tstr")
    rows = []
    for key, label in (("real", "real (the baseline)"), ("synthetic", f"synthetic only (w = {t['guidance']:g})"),
                       ("real+synthetic", "real + synthetic")):
        r = t[key]
        rows.append((label, r["n_train"], *(f"{r[m]['mean']:.3f} ± {r[m]['sd']:.3f}"
                                            for m in ("accuracy", "balanced_accuracy", "auroc"))))
    return table(("trained on", "n", "accuracy", "balanced accuracy", "AUROC"), rows)


def privacy():
    """The loss attack on the shipped conditional X-ray model, its controls and positive control (privacy.json)."""
    p = load("privacy")
    ci = lambda r, k: f"{r[k]['value']:.3f} [{r[k]['ci95'][0]:.3f}, {r[k]['ci95'][1]:.3f}]" if k in r else "—"
    rows = []
    for key, label in (("members_vs_val", "train vs val, true class"),
                       ("members_vs_val_no_class", "train vs val, \"no class\""),
                       ("members_vs_test", "train vs test (another class mix)"),
                       ("val_vs_test", "val vs test (both non-members)"),
                       ("control", f"positive control: a base-8 UNet over-fitted {p['control']['steps']} steps "
                                   "on 32 phantoms")):
        r = p[key]
        rows.append((label, f"{r['n_members']} / {r['n_nonmembers']}", ci(r, "auroc"), ci(r, "auroc_standardised"),
                     ci(r, "tpr_at_0.01"), ci(r, "tpr_at_0.1")))
    m = p["memorisation"]
    return (table(("attack", "members / non-members", "AUROC, raw loss", "AUROC, class-standardised",
                   "TPR at 1 % FPR", "TPR at 10 % FPR"), rows)
            + f"\n\nMemorisation: NN ratio {m['nn_ratio']:.2f} (pixels) and {m['feature_nn_ratio']:.2f} (features); "
              f"closer than the closest 5 % of held-out X-rays: {pct(m['fraction_close'])} and "
              f"{pct(m['feature_fraction_close'])}.")


def lesions():
    """Lesions in the shipped conditional phantom model's samples, read by a lesion detector (lesions.json)."""
    les = load("lesions")
    det = les["classifiers"]["lesion"]
    rows = [(w, *(pct(r[c]) for c in ("ct+lesion", "t1+lesion", "t2+lesion", "requested", "ct", "t1", "t2",
                                      "unrequested"))) for w, r in les["lesion_rate"].items()]
    return (table(("guidance w", "ct+lesion", "t1+lesion", "t2+lesion", "asked (mean)", "ct", "t1", "t2",
                   "not asked (mean)"), rows)
            + f"\n\nThe detector on {les['classifiers']['data'].split('test: ')[1].split(';')[0]}: accuracy "
              f"{pct(det['accuracy'])}; it finds " + ", ".join(f"{pct(det[c]['sensitivity'])} ({c})" for c in ("ct", "t1", "t2"))
            + " of real lesions and raises a false alarm on "
            + ", ".join(f"{pct(1 - det[c]['specificity'])} ({c})" for c in ("ct", "t1", "t2")) + " of clean slices.")


def flow():
    """Flow matching against diffusion at equal training, by network calls (flow_study.json)."""
    f = load("flow_study")
    t, calls = f["table"], (1, 2, 4, 10, 50)
    names = {"flow/euler": "flow, Euler", "flow/heun": "flow, Heun (2 steps - 1 calls)",
             "diffusion/ddim_eta0": "diffusion, DDIM η = 0", "diffusion/ddim_eta1": "diffusion, DDIM η = 1",
             "diffusion/dpm++2m": "diffusion, DPM-Solver++(2M)"}
    rows = []
    for key, label in names.items():
        cells = []
        for n in calls:
            r = t.get(f"{key}/{n}")
            cells.append("—" if r is None else ms(r["fd"]["values"]) + (f" ({r['calls']})" if r["calls"] != n else ""))
        rows.append((label, *cells))
    note = (f"FD ↓ against the 624 test X-rays, 256 samples, mean ± sd over {len(f['seeds'])} training seeds "
            f"(teachers and flow models trained alike, 4 epochs each); "
            f"real vs real {f['real_vs_real']['fd']:.1f}; {f['machine']}. Heun's cells give the calls it used in "
            "brackets where fewer than the column's.")
    return table(("sampler", *(f"{n} call{'s' * (n > 1)}" for n in calls)), rows) + "\n\n" + note


def onecall():
    """The one-call generator against its control and the teachers' samplers (onecall_study.json)."""
    f = load("onecall_study")
    rows = []
    for label, r in f["rows"].items():
        g = lambda m, d=2: ms(r[m]["values"], d) if m in r else "—"       # noqa: E731
        rows.append((label, str(r["calls"]), g("fd", 1), g("kid"), g("diversity"), g("nn_ratio"), g("auroc_max")))
    note = (f"X-rays, 256 samples, {len(f['seeds'])} training seeds (teachers: flow_study's diffusion runs); real vs real "
            f"FD {f['real_vs_real']['fd']:.1f}, real diversity {f['real_test_diversity']:.2f}; memorisation ratio about "
            f"1 = no copying; AUROC = D's best held-out AUROC in the run; {f['machine']}.")
    return table(("arm", "calls", "FD ↓", "KID ↓", "diversity", "memorisation", "D's AUROC"), rows) + "\n\n" + note


def _lr(lr):
    """5e-06 -> '5e-6'."""
    return f"{lr:.0e}".replace("e-0", "e-")


def _onecall_arms(f):
    """(arm, name) for the one-call study's arms in reading order: the GAN + regression by falling G learning rate,
    then falling weight, the controls in the same order, the GAN alone, the range penalty alone; the arm the study
    marked as the command's default is named so."""
    arms = f["arms"]
    flag = lambda a: "`" + arms[a]["args"] + "`"                                            # noqa: E731
    order = lambda a: (-arms[a]["lr_G"], -arms[a]["reg_weight"])                          # noqa: E731
    what = lambda a: f"weight {arms[a]['reg_weight']:g}, G's lr {_lr(arms[a]['lr_G'])}"    # noqa: E731
    both = sorted((a for a in arms if arms[a].get("adv_weight") and arms[a].get("reg_weight")), key=order)
    out = [(a, f"GAN + pooled regression, {what(a)} "
               + ("(the default: `fewstep --levels 1`)" if arms[a]["default"] else f"({flag(a)})"))
           for a in both]
    out += [(a, f"regression alone, {what(a)} ({flag(a)})") for a in sorted(
        (a for a in arms if arms[a].get("adv_weight") == 0 and arms[a].get("reg_weight")), key=order)]
    return out + [(a, f"{arms[a]['label'].split(' (--')[0]} ({flag(a)})") for a in ("gan", "rangeonly")]


def onecall_arms():
    """Each arm of the one-call study after 1500 steps, one call (onecall_regression_study.json)."""
    f = load("onecall_regression_study")
    r, rows = f["rows"], []
    for arm, name in _onecall_arms(f):
        if "1" in f["arms"][arm]:                 # an arm appears once it is measured
            x = r[f["arms"][arm]["1"]]
            g = lambda m, d=2: ms(x[m]["values"], d) if m in x else "—"       # noqa: E731
            rows.append((name, ", ".join(map(str, x["seed_list"])), g("fd", 1) + " (" + per_seed(x["fd"]["values"], 2) + ")",
                         g("kid"), g("diversity"), g("nn_ratio"), g("auroc_max")))
    t50 = r["teacher, ddim_eta1, 50 calls"]
    rows.append(("teacher, DDIM-50 η 1 (50 calls)", ", ".join(map(str, f["seeds"])), ms(t50["fd"]["values"]) + " (" + per_seed(t50["fd"]["values"], 2) + ")",
                 ms(t50["kid"]["values"], 2), "—", "—", "—"))
    note = (f"X-rays, 256 samples against the 624 test X-rays; real vs real FD {f['real_vs_real']['fd']:.1f}, real diversity "
            f"{f['real_test_diversity']:.2f}; memorisation ratio about 1 = no copying; AUROC = D's best held-out AUROC "
            f"in the run; {f['machine']}.")
    return table(("arm, 1500 steps", "seeds", "FD ↓ (per seed)", "KID ↓", "diversity", "memorisation", "D's AUROC"),
                 rows) + "\n\n" + note


def onecall_calls():
    """Each one-call arm at 1, 2 and 4 calls (the teacher finishing from t = 50) against the teacher's samplers
    at the same calls (onecall_regression_study.json)."""
    f = load("onecall_regression_study")
    r, rows = f["rows"], []
    for arm, name in (*_onecall_arms(f), ("read", "the teacher read once at t* = 400, no fine-tune")):
        keys = f["arms"][arm]
        if all(k in keys and r[keys[k]]["seeds"] == len(f["seeds"]) for k in ("1", "2", "4")):   # measured in full
            rows.append((name, *(ms(r[keys[k]]["fd"]["values"]) for k in ("1", "2", "4")),
                         ms(r[keys["2"]]["diversity"]["values"], 2)))
    for how, name in (("ddim_eta1", "the teacher's DDIM, η 1"), ("ddim_eta0", "the teacher's DDIM, η 0"),
                      ("dpm++2m", "the teacher's DPM-Solver++(2M)")):
        rows.append((name, *(ms(r[f"teacher, {how}, {n} call{'s' * (n > 1)}"]["fd"]["values"]) for n in (1, 2, 4)), "—"))
    note = (f"X-rays, 256 samples, 3 training seeds, FD ↓ (mean ± sd); the teacher's DDIM-50 at η 1 (50 calls): "
            f"{ms(r['teacher, ddim_eta1, 50 calls']['fd']['values'])}; real vs real FD {f['real_vs_real']['fd']:.1f}, "
            f"real diversity {f['real_test_diversity']:.2f}; {f['machine']}.")
    return table(("generator, 1500 fine-tune steps", "1 call", "2 calls", "4 calls", "diversity, 2 calls"), rows) + "\n\n" + note


def onecall_tune_seeds():
    """The second tuning round on the val X-rays: each variant on the three teachers (onecall_tune.json)."""
    f = load("onecall_tune")
    rows, r = [], f["rows"]
    key = lambda v, s: f"{v}/1500" if s == 0 else f"{v}_seed{s}/1500"                    # noqa: E731
    default = next(a for a in load("onecall_regression_study")["arms"].values() if a.get("default"))   # the command's
    for v in ("reg10", "reg20", "reg30", "reg10_lr1e-5", "reg10_lr2e-5", "reg10_lr4e-5"):   # the round's variants
        c = f["variants"][v]
        name = f"weight {c['reg_weight']:g}, G's lr {_lr(c['lr_G'])}" + (
            " (the command's default)" if (c["reg_weight"], c["lr_G"]) == (default["reg_weight"], default["lr_G"]) else "")
        got = [r[key(v, s)] for s in range(3)]
        rows.append((name, ms([g["fd"] for g in got]) + " (" + per_seed([g["fd"] for g in got]) + ")",
                     ms([g["diversity"] for g in got], 2), ms([g["auroc_max"] for g in got], 2)))
    t = [r["teacher/ddim50_eta1"]] + [r[f"teacher_seed{s}/ddim50_eta1"] for s in (1, 2)]
    rows.append(("the teacher's DDIM-50, η 1", ms([g["fd"] for g in t]) + " (" + per_seed([g["fd"] for g in t]) + ")",
                 ms([g["diversity"] for g in t], 2), "—"))
    note = (f"val FD of the EMA generator after 1500 steps, teachers of seeds 0 / 1 / 2, 256 samples against the "
            f"524 val X-rays (val diversity {f['val_diversity']:.2f}); {f['machine']}.")
    return table(("GAN + pooled regression", "val FD ↓ (per teacher)", "diversity", "D's AUROC"), rows) + "\n\n" + note


TABLES = {   # name: (function, the file that quotes it)
    "xray": (xray, "docs/results.md"),
    "mean-path": (mean_path, "docs/results.md"),
    "peer": (peer, "docs/results.md"),
    "peer-summary": (peer_summary, "docs/results.md"),
    "fewstep": (fewstep, "docs/results.md"),
    "fewstep-paired": (fewstep_paired, None),               # numbers for the prose, not a table
    "fewstep-full": (fewstep_full, "benchmarks/README.md"),
    "recipe-eta": (recipe_eta, "docs/results.md"),
    "pretrained": (pretrained, "data/pretrained/README.md"),
    "guidance": (guidance, "docs/results.md"),
    "tstr": (tstr, "docs/results.md"),
    "flow": (flow, "docs/results.md"),
    "onecall": (onecall, "docs/results.md"),
    "onecall-arms": (onecall_arms, "docs/results.md"),
    "onecall-calls": (onecall_calls, "docs/results.md"),
    "onecall-tune": (onecall_tune_seeds, "docs/results.md"),
    "privacy": (privacy, "docs/results.md"),
    "lesions": (lesions, "docs/results.md"),
}


def check() -> int:
    """Each table (with its note lines) must appear verbatim, in one piece, in the file that quotes it."""
    bad = 0
    for name, (make, target) in TABLES.items():
        if target is None:
            continue
        text, block = (ROOT / target).read_text(), make()
        missing = [] if block in text else [line for line in block.splitlines() if line not in text] or ["(order)"]
        status = "ok" if not missing else f"{len(missing)} line(s) differ"
        print(f"{name:14s} {target:28s} {status}")
        for line in missing:
            print(f"    expected: {line}")
        bad += bool(missing)
    return 1 if bad else 0


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ + "\ntables: " + ", ".join(TABLES))
        return 0
    if argv[0] == "check":
        return check()
    if argv[0] == "all":
        for name, (make, target) in TABLES.items():
            print(f"## {name} ({target or 'prose'})\n\n{make()}\n")
        return 0
    if argv[0] not in TABLES:
        print(f"unknown table {argv[0]!r}; choose one of: all, check, {', '.join(TABLES)}", file=sys.stderr)
        return 2
    print(TABLES[argv[0]][0]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
