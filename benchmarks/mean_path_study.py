"""The brightness the seed's UNet cannot see: why the X-ray models' samples spread in brightness, and the fix.

Every block of the seed's UNet ends in a GroupNorm, which subtracts the mean of its channels; there is
no residual path around them. So the network barely sees the mean of its input x_t and cannot predict
the mean of the noise in it. The noise's per-image mean has sd 1/sqrt(N) (N = pixels x channels:
0.031 at 32 px), small, so the MSE loss barely notices; but stochastic samplers (DDIM with eta = 1,
DDPM) add fresh noise at every step, and a network that never removes its mean lets the image's
brightness random-walk. This script measures it on the X-ray study's checkpoints (xray_study.py):

1. **The network's blindness**: the sd over 256 noised test X-rays of the per-image mean of eps_pred,
   against that of the true noise, at several t.
2. **The samples' brightness spread**: the sd of the per-image mean of 256 samples (DDIM-50, eta 1,
   EMA, x0 clipped, noise seed 1000) against the test X-rays'.
3. **The cause isolated**: the same samples drawn again with the mean of eps_pred replaced by its
   posterior mean under a Gaussian fitted to the training X-rays' per-image means (mean mu, variance s2):
   E[mean(eps) | mean(x_t) = d] = sqrt(1 - a) / N / (a s2 + (1 - a) / N) * (d - sqrt(a) mu), a = alpha_hat_t.
   A diagnostic, not a method: if FD falls when only the mean is corrected, the mean was the error.
4. The fix, trained: ``UNet(mean_path=True)`` (``xray_study.py train --arm mean``), probed the same way.

FD in xray_study's FeatureNet against the test split, as the rest of the study. Writes
``benchmarks/results/mean_path.json`` with ``--write``.

    python benchmarks/mean_path_study.py probe seed0_e4/final_model.pth pure_seed0_e20/epoch_0008.pth mean_seed0_e8/final_model.pth
    # the committed file: --write keeps only the checkpoints named, so name all ten (cached ones are not re-sampled)
    python benchmarks/mean_path_study.py probe seed0_e4/final_model.pth pure_seed0_e20/epoch_0008.pth \
        mean_seed0_e8/epoch_0004.pth mean_seed1_e4/final_model.pth mean_seed2_e4/final_model.pth \
        mean_seed0_e8/final_model.pth pure_mean_seed0_e8/epoch_0004.pth pure_mean_seed0_e8/final_model.pth \
        pure_mean_seed1_e4/final_model.pth pure_mean_seed2_e4/final_model.pth --write benchmarks/results/mean_path.json
    python benchmarks/mean_path_study.py figure seed0_e4/final_model.pth mean_seed0_e8/epoch_0004.pth --n 12 \
        --write benchmarks/figures/mean_path_xray.png
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffgan_lib import load_checkpoint
from diffgan_lib.eval import extract_features
from diffgan_lib.sampling import FAST_SAMPLER
from diffgan_lib import sample

from recipe_study import write_json
from xray_study import SIZE, feature_net, score, split

T_PROBE = (999, 900, 700, 500, 300, 100)


def mean_prior(train_x: torch.Tensor) -> tuple[float, float, int]:
    """(mu, s2, N): mean and variance of the training images' per-image means, pixels per image."""
    m = train_x.mean((1, 2, 3))
    return m.mean().item(), m.var().item(), train_x[0].numel()


@torch.no_grad()
def eps_mean_spread(G, sched, x0: torch.Tensor, seed: int = 0) -> dict:
    """{t: (sd of mean(eps_pred), sd of mean(eps))} over the images x0 (B, C, S, S) noised to t."""
    out = {}
    for t in T_PROBE:
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + t))
        tt = torch.full((x0.shape[0],), t, dtype=torch.long)
        eps_pred = G(sched.add_noise(x0, tt, eps)[0], tt)
        out[t] = (eps_pred.mean((1, 2, 3)).std().item(), eps.mean((1, 2, 3)).std().item())
    return out


def with_posterior_mean(G, sched, mu: float, s2: float, n_pix: int):
    """G with the mean of its eps_pred replaced by E[mean(eps) | mean(x_t)] (the diagnostic of item 3)."""
    alpha_hat, plain = sched.alpha_hat, G.forward

    def forward(x, t=None, labels=None):
        eps_pred = plain(x, t, labels)
        a = alpha_hat.to(x.device)[t].view(-1, 1, 1, 1)
        d = x.mean((1, 2, 3), keepdim=True)
        post = (1 - a).sqrt() / n_pix / (a * s2 + (1 - a) / n_pix) * (d - a.sqrt() * mu)
        return eps_pred - eps_pred.mean((1, 2, 3), keepdim=True) + post

    G.forward = forward          # an instance attribute: nn.Module.__call__ finds it first
    return G


def cmd_probe(a) -> None:
    net = feature_net(a.out)
    test, train_x = split("test"), split("train")
    f_test = extract_features(net, test)
    mu, s2, n_pix = mean_prior(train_x)
    res = {"protocol": f"32 px PneumoniaMNIST; eps_pred probed on {a.n} test X-rays noised to t (noise seed t); "
                       f"{a.n} samples, DDIM-{FAST_SAMPLER['steps']} eta {FAST_SAMPLER['eta']:g}, EMA, x0 clipped, "
                       "noise seed 1000; FD/KID in xray_study's FeatureNet against the test split",
           "machine": f"{platform.platform()}, {torch.get_num_threads()} thread(s)",
           "prior": {"mu": mu, "s2": s2, "n_pix": n_pix},
           "real_test_brightness_sd": test.mean((1, 2, 3)).std().item(), "runs": {}}
    print(f"test X-rays: per-image mean sd {res['real_test_brightness_sd']:.3f}; prior mu {mu:.3f}, sd {s2 ** .5:.3f}")
    for name in a.checkpoints:
        cache = (a.out / name).with_suffix(f".meanpath{a.n}.json")     # one file per checkpoint: resumable
        if cache.exists():
            res["runs"][name] = row = json.loads(cache.read_text())
            print(f"{name}: as trained FD {row['as_trained']['fd']:.2f}, mean corrected "
                  f"{row['posterior_mean']['fd']:.2f} (cached in {cache.name})")
            continue
        G, _, sched = load_checkpoint(a.out / name, device="cpu", which="ema")
        G.eval()
        row = {"mean_path": bool(getattr(G, "mean_path", False)),
               "eps_mean_sd": {str(t): v for t, v in eps_mean_spread(G, sched, test[:a.n]).items()}}
        for fix in (False, True):
            if fix:
                G = with_posterior_mean(G, sched, mu, s2, n_pix)
            t0 = time.time()
            x = sample(G, sched, n=a.n, image_size=SIZE, **FAST_SAMPLER, seed=1000, clip_x0=True,
                       progress=False).clamp(-1, 1)
            s = score(x, test, net, f_test)
            row["posterior_mean" if fix else "as_trained"] = {
                "fd": s["fd"], "kid": s["kid"], "swd": s["swd"], "brightness_sd": x.mean((1, 2, 3)).std().item(),
                "brightness_mean": x.mean().item(), "sample_s": round(time.time() - t0, 1)}
        res["runs"][name] = row
        write_json(cache, row)
        e = row["eps_mean_sd"]
        print(f"{name}: sd of mean(eps_pred) / mean(eps) at t = {', '.join(f'{t}: {e[str(t)][0]:.4f}/{e[str(t)][1]:.4f}' for t in T_PROBE)}")
        for key in ("as_trained", "posterior_mean"):
            r = row[key]
            print(f"   {key:15s} FD {r['fd']:6.2f}  brightness sd {r['brightness_sd']:.3f}  mean {r['brightness_mean']:.3f}",
                  flush=True)
    if a.write:
        a.write.parent.mkdir(parents=True, exist_ok=True)
        write_json(a.write, res)
        print("wrote", a.write)


def cmd_figure(a) -> None:
    """Real test X-rays, then the samples of each checkpoint from the same noise (seed 1000), one row each."""
    import matplotlib
    matplotlib.use("Agg")
    from diffgan_lib.course.viz import show_images
    rows = {"real test X-rays": split("test")[:a.n]}
    for name in a.checkpoints:
        G, _, sched = load_checkpoint(a.out / name, device="cpu", which="ema")
        label = f"{name.removesuffix('.pth')}\n({'mean path' if getattr(G, 'mean_path', False) else 'plain UNet'})"
        rows[label] = sample(G.eval(), sched, n=a.n, image_size=SIZE, **FAST_SAMPLER, seed=1000, clip_x0=True,
                             progress=False).clamp(-1, 1)
    spread = ", ".join(f"{k.split(chr(10))[0]} {v.mean((1, 2, 3)).std():.2f}" for k, v in rows.items())
    fig = show_images(torch.cat(list(rows.values())), ncols=a.n, row_labels=list(rows),
                      suptitle=f"same noise in each column; DDIM-{FAST_SAMPLER['steps']}, eta {FAST_SAMPLER['eta']:g}, "
                               f"EMA; brightness spread (sd of these {a.n} per-image means): {spread}")
    a.write.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.write, bbox_inches="tight")
    print("wrote", a.write)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("probe", "figure"))
    p.add_argument("checkpoints", nargs="+", help="checkpoints under --out, e.g. seed0_e4/final_model.pth")
    p.add_argument("--out", type=Path, default=Path("runs/xray"), help="xray_study.py's folder (default runs/xray)")
    p.add_argument("--n", type=int, default=256, help="test images probed and samples drawn (default 256)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", type=Path, help="also write the results as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.command == "figure" and not a.write:
        p.error("figure needs --write PATH.png")
    {"probe": cmd_probe, "figure": cmd_figure}[a.command](a)


if __name__ == "__main__":
    main()
