"""diffgan_lib: the helper library of the diffgan course (Diffusion + GAN for medical images).

The seed design's names are re-exported here: ``DiffusionScheduler``, ``DoubleConv``, ``UNet``,
``Discriminator``, ``diffusion_loss``, ``gan_losses``, ``train``, ``sample``, ``save_checkpoint``,
``load_checkpoint``, ``generate_and_visualize``; see each module for shapes and ranges.
"""
from .checkpoints import CheckpointError, load_checkpoint, load_training_state, save_checkpoint, training_members
from .config import TrainConfig
from .data import ImageDataset, load_images, make_dataloader, training_record
from .device import describe_device, pick_device
from .discriminator import Discriminator, score_map_shape
from .features import FeatureNet, extract_features, train_feature_net
from .losses import (D_LOSS_AT_CHANCE, diffusion_forward, diffusion_loss, discriminator_loss, fake_images,
                     gan_losses, generator_adv_loss)
from .metrics import (diversity, evaluate, frechet_distance, kid, memorisation, real_vs_real_baseline,
                      sliced_wasserstein)
from .guidance import drop_labels, guided_eps
from .privacy import closest_training_images, denoising_losses, membership_inference, overfit_control
from .phantoms import CONTRASTS, PHANTOM_CLASSES, PhantomDataset, check_image_size, make_phantom, phantom_class
from .sampling import generate_and_visualize, image_grid, sample, save_image_files, save_image_grid, to_unit
from .scheduler import DiffusionScheduler
from .run import Run, build_run, resume_run
from .training import TrainResult, train, train_step, train_step_as_written
from .unet import DoubleConv, UNet, count_parameters
from .usefulness import auroc, balanced_accuracy, synthetic_set, tstr, tstr_table

__version__ = "0.1.0"

__all__ = [
    "DiffusionScheduler", "DoubleConv", "UNet", "Discriminator", "diffusion_loss", "gan_losses",
    "generator_adv_loss", "diffusion_forward", "fake_images", "score_map_shape", "count_parameters",
    "pick_device", "describe_device", "D_LOSS_AT_CHANCE",
    "PhantomDataset", "make_phantom", "CONTRASTS", "PHANTOM_CLASSES", "phantom_class", "guided_eps", "drop_labels", "check_image_size", "load_images", "ImageDataset",
    "make_dataloader", "FeatureNet", "train_feature_net", "extract_features", "frechet_distance", "kid",
    "sliced_wasserstein", "diversity", "memorisation", "evaluate", "real_vs_real_baseline",
    "TrainConfig", "train", "train_step", "train_step_as_written", "TrainResult", "Run", "build_run",
    "resume_run", "discriminator_loss", "save_checkpoint", "load_checkpoint",
    "load_training_state", "CheckpointError", "training_members", "training_record", "sample", "to_unit",
    "generate_and_visualize",
    "save_image_grid", "save_image_files", "image_grid",
    "tstr", "tstr_table", "synthetic_set", "auroc", "balanced_accuracy",
    "membership_inference", "denoising_losses", "overfit_control", "closest_training_images",
]
