"""The networks and the maths: the noise scheduler, the UNet, the discriminator, the losses, the EMA,
classifier-free guidance, the few-step generator, and device selection. Imports nothing else of diffgan_lib."""
from .device import describe_device, pick_device
from .discriminator import Discriminator, score_map_shape
from .ema import EMA
from .fewstep import FewStepGenerator, PairDiscriminator, level_timesteps, posterior_sample
from .guidance import drop_labels, guided_eps
from .losses import (D_LOSS_AT_CHANCE, diffusion_forward, diffusion_loss, discriminator_loss, fake_images, gan_losses,
                     generator_adv_loss)
from .scheduler import DiffusionScheduler
from .unet import DoubleConv, UNet, count_parameters

__all__ = ["DiffusionScheduler", "UNet", "DoubleConv", "count_parameters", "Discriminator", "score_map_shape", "EMA",
           "FewStepGenerator", "PairDiscriminator", "level_timesteps", "posterior_sample", "drop_labels", "guided_eps",
           "D_LOSS_AT_CHANCE", "diffusion_forward", "diffusion_loss", "discriminator_loss", "fake_images", "gan_losses",
           "generator_adv_loss", "pick_device", "describe_device"]
