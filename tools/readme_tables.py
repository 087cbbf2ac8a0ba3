"""Print the README's result tables from the committed results files (so the README quotes, never retypes).

    python tools/readme_tables.py xray       # benchmarks/results/xray_sampling.json (+ peer_diffusers.json)
    python tools/readme_tables.py fewstep    # benchmarks/results/fewstep_study.json
"""
import json
import re
import statistics
import sys
from pathlib import Path

RES = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def ms(vals):
    return f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}" if len(vals) > 1 else f"{vals[0]:.1f}"


def xray():
    x = json.loads((RES / "xray_sampling.json").read_text())
    runs, rr = x["runs"], x["real_vs_real"]
    seeds = sorted(r for r in runs if re.fullmatch(r"seed\d+_e4/final_model", r))      # the plain default's
    print(f"real vs real FD {rr['fd']:.1f}; 4-epoch runs: {seeds}")
    print("| sampling of the 4-epoch default (3 training seeds) | FD ↓ test, mean ± sd | per seed |")
    print("|---|---|---|")
    for key, label in (("ema_eta0_ddim50", "EMA, DDIM-50, η = 0 (the old default)"),
                       ("ema_eta1_ddim50", "EMA, DDIM-50, η = 1 (**the new default**)")):
        vals = [runs[r][key]["test"]["fd"] for r in seeds if key in runs[r]]
        print(f"| {label} | {ms(vals)} | {' / '.join(f'{v:.1f}' for v in vals)} |")
    for key, label in (("raw_eta1_ddim50", "raw weights, DDIM-50, η = 1 (seed 0)"),
                       ("ema_eta1_ddim10", "EMA, DDIM-10, η = 1 (seed 0)"), ("ema_eta1_ddim25", "EMA, DDIM-25, η = 1 (seed 0)"),
                       ("ema_eta0_ddim10", "EMA, DDIM-10, η = 0 (seed 0)")):
        if key in runs["seed0_e4/final_model"]:
            print(f"| {label} | {runs['seed0_e4/final_model'][key]['test']['fd']:.1f} | |")
    for run, label in (("seed0_e20/epoch_0001", "1 epoch (seed 0)"), ("seed0_e20/final_model", "20 epochs (seed 0)")):
        for key in ("ema_eta0_ddim50", "ema_eta1_ddim50"):
            if key in runs.get(run, {}):
                print(f"| {label}, {key} | {runs[run][key]['test']['fd']:.1f} | |")
    if "cli" in x:
        c = x["cli"]
        print(f"CLI: 1 epoch equals study seed 0: {c['train_1_epoch_equals_study_seed0']} (max |dw| "
              f"{c['max_abs_weight_difference']:.2e}); default sample -n 256 FD test {c['default_sample']['test']['fd']:.2f}")
        for key in ("hybrid_mean_default", "today_default"):
            if key in c:
                print(f"CLI, {key} (mean path {c[key]['mean_path']}, adv_weight {c[key].get('adv_weight')}) trained "
                      f"4 epochs and sampled -n 256: FD test {c[key]['test']['fd']:.2f}")
    for name, r in sorted({**runs, **x.get("arms", {})}.items()):
        if name.startswith(("pure_", "mean_", "bare_", "seed_as")):
            print(f"| {name} | " + " | ".join(f"{k}: {v['test']['fd']:.1f}" for k, v in r.items()) + " |")
    print({k: v for k, v in x.get("train", {}).items()})
    mp = RES / "mean_path.json"
    if mp.exists():
        m = json.loads(mp.read_text())
        print(f"mean_path.json: test brightness sd {m['real_test_brightness_sd']:.3f}")
        for name, r in m["runs"].items():
            print(f"| {name} | {r['as_trained']['fd']:.1f} | {r['posterior_mean']['fd']:.1f} | "
                  f"{r['as_trained']['brightness_sd']:.3f} | {r['eps_mean_sd']['700'][0]:.4f} / {r['eps_mean_sd']['700'][1]:.4f} |")


def fewstep():
    f = json.loads((RES / "fewstep_study.json").read_text())
    print(f"real vs real {f['real_vs_real']}")
    print("| arm (X-rays, 4 evaluations unless said) | seeds | FD ↓ | KID ↓ | SWD ↓ | diversity | NN ratio | ms / image |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in f["headline"].items():
        print(f"| {label} | {r['n_seeds']} | {r['fd']['mean']:.1f} ± {r['fd']['sd']:.1f} | {r['kid']['mean']:.3f} | "
              f"{r['swd']['mean']:.1f} | {r['diversity_feature']['mean']:.3f} | {r['nn_ratio']['mean']:.2f} | "
              f"{1e3 * r['s_per_image']['mean']:.0f} |")
    for p in f["paired"]:
        print(p)
    for name, arm in f["arms"].items():
        print(name, arm["wall_s"])
    for name, sc in f["scores"].items():
        if not name.startswith("xray_s") or "_k1" in name or "_k2" in name:
            for key, v in sc.items():
                print(f"{name} {key}: FD {v['fd']:.2f} KID {v['kid']:.3f} SWD {v['swd']:.1f} ms/img {1e3 * v['s_per_image']:.0f}")


if __name__ == "__main__":
    {"xray": xray, "fewstep": fewstep}[sys.argv[1]]()
