"""diffgan_lib: the helper library of the diffgan course (Diffusion + GAN for medical images).

The library is layered; each sub-package imports only the ones above it in this list:
``core`` (scheduler, UNet, discriminator, losses, EMA, guidance, the few-step generator) ->
``data`` (paths, phantoms, file formats, loaders) -> ``sampling`` (DDPM, DDIM, few-step samplers) ->
``engine`` (config, run, step, the one training loop, checkpoints, run folders, torchrun) ->
``eval`` (features, metrics, usefulness, privacy) -> ``course`` (notebook helpers, figures, widgets,
exercises); ``cli`` is the command line on top. The names below are the public ones, the seed's among
them (``DiffusionScheduler``, ``UNet``, ``Discriminator``, ``train``, ``sample``, ``load_checkpoint``,
``generate_and_visualize``...); everything else is importable from its sub-package.
"""
from .core import Discriminator, DiffusionScheduler, DoubleConv, UNet, diffusion_loss, gan_losses, pick_device
from .data import PhantomDataset, load_images, make_dataloader
from .engine import (CheckpointError, FewStepConfig, Run, TrainConfig, build_run, fewstep_train, load_checkpoint,
                     resume_run, save_checkpoint, train, train_step)
from .eval import evaluate
from .sampling import generate_and_visualize, sample, to_unit

__version__ = "0.2.0"

__all__ = [
    "DiffusionScheduler", "UNet", "DoubleConv", "Discriminator", "diffusion_loss", "gan_losses",
    "TrainConfig", "FewStepConfig", "train", "fewstep_train", "train_step", "Run", "build_run", "resume_run",
    "sample", "generate_and_visualize", "to_unit", "load_checkpoint", "save_checkpoint", "CheckpointError",
    "make_dataloader", "load_images", "PhantomDataset", "pick_device", "evaluate",
]
