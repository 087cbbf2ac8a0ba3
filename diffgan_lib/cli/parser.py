"""The command line's options and their help texts (``python -m diffgan_lib --help``)."""
from __future__ import annotations

import argparse

__all__ = ["build_parser", "EXAMPLES"]


EXAMPLES = """examples:
  python -m diffgan_lib train --data phantoms --epochs 5 --out runs/quick
  python -m diffgan_lib train --data scans/ --image-size 64 --epochs 50 --out runs/scans
  python -m diffgan_lib train --data scans/ --conditional --labels folders --out runs/classes   # scans/CLASS/*.png
  python -m diffgan_lib train --resume runs/quick/final_model.pth --epochs 10
  python -m diffgan_lib sample --checkpoint runs/quick/final_model.pth -n 16 --out runs/quick/samples
  python -m diffgan_lib fewstep --init runs/quick/final_model.pth --data phantoms --max-steps 300 --out runs/fs
  python -m diffgan_lib sample --checkpoint runs/fs/final_model.pth -n 64 --out runs/fs/samples   # 4 evaluations
  torchrun --standalone --nproc_per_node 2 -m diffgan_lib train --data phantoms --batch-size 16 --out runs/ddp
  torchrun --nnodes 2 --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
      -m diffgan_lib train --data scans/ --out runs/big     # the same command on each of 2 machines"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m diffgan_lib", description="Train diffusion models of medical images (pure "
                "diffusion by default; the seed's Diffusion + GAN hybrid with --adv-weight 0.01), fine-tune a "
                "few-step generator with a GAN, and sample them. Images are scaled to [-1, 1] for training.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,sample,fewstep}")
    _train_options(sub)
    _sample_options(sub)
    _fewstep_options(sub)
    return p


def _train_options(sub) -> None:
    t = sub.add_parser("train", help="train a model and write checkpoints",
                       description="Train the UNet G (and, with --adv-weight > 0, the PatchGAN D of the seed's "
                       "hybrid) and write epoch_XXXX.pth, final_model.pth and history.json into --out. Ctrl-C (or SIGTERM) stops after the "
                       "current step, saves interrupted.pth and exits 130 (143). Under torchrun every process "
                       "trains on its own shard of the data and rank 0 writes the files.")
    t.add_argument("--data", default="phantoms", help="'phantoms' (generated head slices, the default), "
                   "'pneumoniamnist' (real chest X-rays shipped in data/, 4708 training images) or a path: a "
                   "folder of PNG/JPEG/TIFF/DICOM, a NIfTI volume or a MedMNIST .npz (8-bit images keep their "
                   "levels, v / 127.5 - 1; see data/README.md)")
    t.add_argument("--image-size", type=int, help="side S of the training images, a multiple of 8, >= 32 "
                   "(default: 32 on CPU, 128 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--base", type=int, help="UNet / discriminator width, a multiple of 8 (default: 32 on "
                   "CPU, 64 on CUDA; the checkpoint's when resuming)")
    t.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grayscale, 3 RGB (default 1)")
    t.add_argument("--epochs", type=int, help="total epochs, counted from the start of the run also when "
                   "resuming (default 10; with --max-steps alone, as many as those steps need)")
    t.add_argument("--max-steps", type=int, help="stop after this many optimisation steps in total, counted "
                   "from the start of the run")
    t.add_argument("--batch-size", type=int, default=32, help="images per step in each process (default 32, "
                   "what every measured recipe used); "
                   "under torchrun the global batch is batch-size x the number of processes")
    t.add_argument("--n-images", type=int, help="number of phantoms (default 1024), or keep only the first "
                   "N real images (yours or PneumoniaMNIST's)")
    t.add_argument("--out", help="folder for checkpoints (default ./checkpoints, or the --resume file's folder); "
                   "one run per folder: a folder holding another run's checkpoints is refused")
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (its configuration is reused)")
    t.add_argument("--overwrite", action="store_true", help="delete the checkpoints, history.json and training "
                   "grids of an earlier run in --out first (with --resume into the file's own folder: allow "
                   "replacing a longer run's final_model.pth)")
    t.add_argument("--lr", type=float, help="learning rate of both G and D (default 2e-4; lower it to resume a "
                   "run that diverged)")
    t.add_argument("--adv-weight", type=float, help="weight w of the adversarial term on x0_pred in diff + w * adv "
                   "(default 0: pure diffusion, which measured better; 0.01 = the seed's kind of hybrid; with "
                   "--resume: the checkpoint's unless given)")
    t.add_argument("--mean-path", action=argparse.BooleanOptionalAction, default=None,
                   help="give the UNet a path for each image's mean brightness past its GroupNorms "
                   "(UNet(mean_path=True); on by default, --no-mean-path for the seed's plain UNet; fixed for a "
                   "run: not with --resume)")
    t.add_argument("--objective", choices=("diffusion", "flow"), help="what the network learns: diffusion "
                   "(predict the noise, the default) or flow (rectified flow: the velocity of straight paths from "
                   "images to noise; sample it with --solver euler|heun)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="number format: auto (the "
                   "default) = bf16 autocast on a GPU with bf16 and on a CPU with native bf16 (AVX-512 BF16 / AMX, "
                   "about 2x faster there), float32 elsewhere; fp16 is for CUDA")
    t.add_argument("--timesteps", type=int, help="diffusion steps T (default 1000; the checkpoint's when resuming)")
    t.add_argument("--checkpoint-every", type=int, help="epochs between epoch_XXXX.pth files (default 10)")
    t.add_argument("--keep-last", type=int, help="keep only the newest N epoch_XXXX.pth files (default: all)")
    t.add_argument("--save-every", type=int, help="steps between saves of last.pth, overwritten each time: "
                   "what a long run resumes from after a crash (default: never)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
    t.add_argument("--seed", type=int, default=0, help="seeds the weights, noise and shuffling (default 0)")
    t.add_argument("--conditional", action="store_true", help="train a class-conditional model for classifier-free "
                   "guidance: phantoms get 6 classes (ct, ct+lesion, t1, ... t2+lesion), pneumoniamnist 2 (normal, "
                   "pneumonia), a folder of your scans one per sub-folder (with --labels folders); 10%% of the labels "
                   "are dropped to 'no class' while training")
    t.add_argument("--labels", choices=("folders",), help="with --conditional and --data a folder: the classes are its "
                   "sub-folders, DATA/CLASS_NAME/*.png as torchvision's ImageFolder (names sorted; each image in "
                   "its class's folder)")


def _sample_options(sub) -> None:
    s = sub.add_parser("sample", help="generate images from a checkpoint",
                       description="Generate images with a trained generator (the EMA weights by default) "
                       "and write grid.png, images/sample_XXX.png and samples.npy (float32 in [0, 1]) into --out.")
    s.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pth written by train")
    s.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--sampler", choices=("ddim", "ddpm"), help="ddim: --steps steps (fast, the default); ddpm: "
                   "all T steps, the original sampler. A few-step model uses its own levels: leave it out")
    s.add_argument("--steps", type=int, help="DDIM steps, or a flow model's ODE steps (default 50; not for ddpm or "
                   "a few-step model); a one-call model's network calls per image (default 1; K >= 2: its image is "
                   "re-noised to t = 50 and its teacher finishes it in K - 1 steps)")
    s.add_argument("--teacher", metavar="CKPT", help="a one-call model with --steps >= 2: its teacher's file (default: "
                   "the one its record names, beside the checkpoint or among the shipped models; the hash is checked)")
    s.add_argument("--solver", choices=("euler", "heun"), help="a flow model's ODE solver: euler (one network call a "
                   "step, the default) or heun (second order, two calls a step)")
    s.add_argument("--eta", type=float, help="DDIM noise: 1 fresh noise each step, like DDPM (default: measured "
                   "far better on young models), 0 deterministic (not for a few-step model)")
    s.add_argument("--clip-x0", action=argparse.BooleanOptionalAction, default=True,
                   help="clamp each step's predicted clean image to [-1, 1] (default on; --no-clip-x0 "
                   "is the original unclipped update)")
    s.add_argument("--image-size", type=int, help="side of the samples (default: the training size)")
    s.add_argument("--batch-size", type=int, help="images per network call (default 256, which bounds memory)")
    s.add_argument("--which", default="ema", choices=("ema", "raw"), help="generator weights: ema (default) or raw")
    s.add_argument("--out", default="samples", help="output folder (default ./samples); the grid.png, "
                   "samples.npy and images/sample_*.png of an earlier sample run there are replaced")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    s.add_argument("--label", help="a conditional model: the class to generate, by name or index (see --list-labels)")
    s.add_argument("--guidance", type=float, help="a conditional model: classifier-free guidance scale w "
                   "(0 unconditional, 1 plain conditional, default 3)")
    s.add_argument("--list-labels", action="store_true", help="print the checkpoint's class names and exit")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")


def _fewstep_options(sub) -> None:
    f = sub.add_parser("fewstep", help="fine-tune a few-step generator from a diffusion model",
                       description="Read a trained diffusion model (--init: a train checkpoint or a data/pretrained "
                       "export) as a generator of K big denoising jumps and fine-tune it DDGAN-style: a discriminator "
                       "on (next state, current state, level) plus an alpha_hat-weighted reconstruction term. Writes "
                       "final_model.pth (kind 'fewstep'), which sample uses with K network evaluations. One process.")
    f.add_argument("--init", required=True, metavar="CKPT", help="the teacher: a diffusion checkpoint")
    f.add_argument("--data", default="phantoms", help="'phantoms', 'pneumoniamnist' or a path, as for train "
                   "(the images are resized to the teacher's side)")
    f.add_argument("--levels", type=int, help="K, the number of network calls per image: 1 = the one-call "
                   "generator, fine-tuned against a discriminator on the teacher's own features; 2-8 = DDGAN-style "
                   "jumps (default 4: t = 999, 749, 499, 249); a resumed run keeps its own")
    f.add_argument("--max-steps", type=int, default=300, help="fine-tune steps in total (default 300)")
    f.add_argument("--freeze", choices=("none", "encoder", "most"), help="--levels 1: keep G's encoder as the "
                   "teacher's (only the decoder trains; an export then stores only the decoder and finds the teacher "
                   "by its hash); most: also the deepest decoder block (90 %% of the weights); default none")
    f.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    f.add_argument("--adv-weight", type=float, help="weight of the adversarial term (default 1; "
                   "0 = the regression-only control, no discriminator; a resumed run keeps its own)")
    f.add_argument("--reg-weight", type=float, help="--levels 1: weight of the regression of G(z)'s 4x4-pooled "
                   "layout onto the teacher's DDIM-25 image of the same z (default 10; 0 = the GAN term alone)")
    f.add_argument("--lr", type=float, help="G's learning rate (default 4e-5 with --levels 1, 5e-5 otherwise; "
                   "a resumed run keeps its own)")
    f.add_argument("--pairs", type=int, help="--levels 1: how many (latent, teacher image) pairs the teacher makes "
                   "first, kept in --out for a resume (default 2048: about 3 min on one CPU core at 32 px)")
    f.add_argument("--n-images", type=int, help="number of phantoms (default 1024) or keep the first N real images")
    f.add_argument("--out", default="runs/fewstep", help="folder for final_model.pth (default runs/fewstep)")
    f.add_argument("--resume", metavar="CKPT", help="continue a fine-tune (same --init) to --max-steps")
    f.add_argument("--overwrite", action="store_true", help="replace an earlier run's checkpoints in --out")
    f.add_argument("--seed", type=int, help="seeds D's weights, the levels and the noise (default 0)")
    f.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best one here)")
