"""Course helpers shared by the notebooks: a trained checkpoint on demand, and the shipped one.

``ensure_checkpoint`` lets notebook 06 (and 07) run on their own: it returns the checkpoint that
notebook 05 wrote, or trains a small one (32 px phantoms, CPU-sized) when it is missing.
``PRETRAINED`` (the seed's hybrid, adv_weight 0.01) and ``PRETRAINED_PURE`` (pure diffusion) are 10,000-step CPU runs
at 32 px, base 32, from the same seed, made by :func:`make_pretrained` (``python -m diffgan_lib.course
pretrain``) and shipped in ``data/pretrained/`` for the lessons that need a trained model.
"""
from __future__ import annotations

from pathlib import Path

from ..data.files import shipped_path
from ..data.loaders import make_dataloader
from ..engine.config import TrainConfig
from ..engine.models import export_for_sampling
from ..engine.rundir import run_files
from ..engine.train import train

__all__ = ["ensure_checkpoint", "quick_config", "make_pretrained", "load_results", "PRETRAINED", "PRETRAINED_PURE",
           "PRETRAINED_ONECALL_XRAY", "PRETRAINED_ONECALL_PHANTOMS", "PRETRAINED_XRAY", "PRETRAINED_FLOW_XRAY", "PRETRAINED_COND_PHANTOMS", "PRETRAINED_COND_XRAY",
           "PRETRAINED_XRAY_FEATURES", "RECIPES", "RESULTS_DIR"]

PRETRAINED_DIR = shipped_path("pretrained", must_exist=False)     # the clone's data/, or $DIFFGAN_DATA's
PRETRAINED = PRETRAINED_DIR / "phantoms32_hybrid_10k.pth"       # the seed's hybrid (adv_weight 0.01), plain UNet
PRETRAINED_PURE = PRETRAINED_DIR / "phantoms32_pure_10k.pth"    # pure diffusion, plain UNet
PRETRAINED_ONECALL_XRAY = PRETRAINED_DIR / "xray32_onecall.pth"           # one call, fine-tuned from PRETRAINED_XRAY
PRETRAINED_ONECALL_PHANTOMS = PRETRAINED_DIR / "phantoms32_onecall.pth"   # one call, fine-tuned from PRETRAINED_PURE
PRETRAINED_XRAY = PRETRAINED_DIR / "xray32_pure_4ep.pth"        # pure diffusion + mean path, 4 epochs of PneumoniaMNIST
PRETRAINED_FLOW_XRAY = PRETRAINED_DIR / "xray32_flow_4ep.pth"   # rectified flow, the same network and 4 epochs
PRETRAINED_COND_PHANTOMS = PRETRAINED_DIR / "phantoms32_conditional.pth"   # 6 phantom classes, 3000 steps
PRETRAINED_COND_XRAY = PRETRAINED_DIR / "xray32_conditional.pth"           # normal / pneumonia, 4 epochs
PRETRAINED_XRAY_FEATURES = PRETRAINED_DIR / "xray32_featurenet.pt"   # the X-ray study's FeatureNet (load_feature_net)
RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def load_results(name: str) -> dict:
    """A committed results file ``benchmarks/results/<name>.json``, written by a named benchmark script.

    Notebooks show tables that take longer than their time budget to compute from these files.
    """
    import json
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in RESULTS_DIR.glob("*.json"))) or "none"
        raise FileNotFoundError(f"{path} is missing (known results: {known}); it is written by a script in "
                                "benchmarks/ (see benchmarks/README.md)")
    return json.loads(path.read_text())


def quick_config(image_size: int = 32, base: int = 16, seed: int = 0, **changes) -> TrainConfig:
    """The CPU-quick config of the course notebooks: small UNet, EMA, only a final checkpoint, and
    the seed's hybrid, which the lessons teach: a GAN term of weight 0.01 on x0_pred.

    ``TrainConfig`` itself trains pure diffusion (adv_weight 0, its comment says why); pass
    ``adv_weight=0`` here for that. The notebooks train for a few hundred steps, so the GAN term
    starts after 50 steps instead of the default 500 (which suits runs of thousands of steps).
    """
    return TrainConfig.cpu_quick(**{**dict(seed=seed, checkpoint_every=0, adv_weight=0.01, adv_warmup_steps=50),
                                    **changes}).replace(image_size=image_size, base=base)


def ensure_checkpoint(path, steps: int = 150, image_size: int = 32, base: int = 16, seed: int = 0,
                      batch_size: int = 16, n_images: int = 512, device=None, progress: bool = True) -> Path:
    """Return ``path`` if the checkpoint exists; else train ``steps`` steps on phantoms and save it there.

    The run writes ``final_model.pth`` (and ``history.json``) into ``path``'s folder and renames
    the final file to ``path``'s name if that differs. About 40-80 s on a 2-core CPU with the defaults.
    When that folder already holds another run (say notebook 05 was interrupted: interrupted.pth),
    nothing of it is touched: the small model is trained in its subfolder ``course_fallback`` and
    that path is returned (and printed).
    """
    path = Path(path).expanduser()
    if path.exists():
        return path
    if run_files(path.parent):
        fallback = path.parent / "course_fallback" / path.name
        print(f"{path.parent} holds another run ({', '.join(p.name for p in run_files(path.parent)[:3])}); "
              f"using {fallback} so that nothing of it is overwritten")
        return ensure_checkpoint(fallback, steps, image_size, base, seed, batch_size, n_images, device, progress)
    dl = make_dataloader("phantoms", image_size, batch_size, n=n_images, seed=seed)
    epochs = -(-steps // len(dl))
    result = train(dl, epochs=epochs, max_steps=steps, save_dir=path.parent, device=device,
                   config=quick_config(image_size, base, seed), progress=progress)
    written = Path(result.checkpoint)
    if written.resolve() != path.resolve():
        written.replace(path)
    return path


# changes to TrainConfig.cpu_quick() that made the shipped phantom models: the plain UNet (no mean path), in
# float32 (as they were made, so that they rebuild the same on a CPU with bf16); "hybrid" is the seed's hybrid
# (GAN term on x0_pred, w = 0.01), "pure" pure diffusion
RECIPES = {"hybrid": {"adv_weight": 0.01, "mean_path": False, "precision": "fp32"},
           "pure": {"adv_weight": 0.0, "mean_path": False, "precision": "fp32"}}


def make_pretrained(out=PRETRAINED, steps: int = 10_000, stop_at: int | None = None, work_dir="runs/pretrain",
                    seed: int = 0, recipe: str = "hybrid", save_every: int = 250) -> Path:
    """Train ``TrainConfig.cpu_quick(mean_path=False)`` with ``recipe`` ("hybrid": adv_weight 0.01; "pure": adv_weight 0)
    on 32 px phantoms, batch 32, for ``steps`` steps (or until ``stop_at``), then write the small
    sampling-only copy to ``out``.

    Every step sees fresh phantoms (one epoch of 32 * steps). ``work_dir/last.pth`` is saved every
    ``save_every`` steps, and a later call with the same arguments resumes from it, so a long run
    survives being stopped. Deterministic on a CPU for a given seed and thread count. About
    0.4-0.9 s per step on one core of a 2-core CPU.
    """
    recipe = {"default": "hybrid"}.get(recipe, recipe)      # the name the hybrid's command once used
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: choose one of {', '.join(RECIPES)}")
    cfg = TrainConfig.cpu_quick(seed=seed, checkpoint_every=0, save_every=save_every, **RECIPES[recipe])
    dl = make_dataloader("phantoms", image_size=32, batch_size=32, n=32 * steps, seed=seed)
    last = Path(work_dir) / "last.pth"
    result = train(dl, epochs=1, save_dir=work_dir, config=cfg, max_steps=stop_at or steps,
                   resume=last if last.exists() else None)
    if result.stopped_by:
        raise KeyboardInterrupt(f"stopped at step {result.run.step}; call again to resume from {result.checkpoint}")
    return export_for_sampling(result.checkpoint, out)


def main(argv=None) -> None:
    """``python -m diffgan_lib.course pretrain --recipe pure --steps 10000 --work DIR --out FILE``, or
    ``python -m diffgan_lib.course export CKPT --out FILE`` (any run's final_model.pth, e.g. an X-ray
    model from ``python -m diffgan_lib train --data pneumoniamnist``, or a few-step model)."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m diffgan_lib.course",
                                description="Train (or resume) a shipped phantom model and export it, or export a run.")
    p.add_argument("command", choices=["pretrain", "export"])
    p.add_argument("checkpoint", nargs="?", help="export: the full checkpoint to export")
    p.add_argument("--recipe", default="hybrid", choices=sorted(RECIPES))
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="pretrain: folder of the full checkpoints (last.pth, final_model.pth)")
    p.add_argument("--out", required=True, help="the exported float16 sampling-only file")
    p.add_argument("--keep-d", action="store_true", help="export: keep the discriminator too (sampling needs none)")
    a = p.parse_args(argv)
    if a.command == "export":
        if not a.checkpoint:
            p.error("export needs the checkpoint to export: python -m diffgan_lib.course export CKPT --out FILE")
        try:
            print(export_for_sampling(a.checkpoint, a.out, keep_D=a.keep_d))
        except (OSError, ValueError) as err:
            p.exit(2, f"{p.prog} export: error: {err}\n")
        return
    if not a.work:
        p.error("pretrain needs --work DIR (the folder of its full checkpoints)")
    print(make_pretrained(a.out, steps=a.steps, work_dir=a.work, seed=a.seed, recipe=a.recipe))

