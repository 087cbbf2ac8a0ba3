"""Images out of a trained model: one sampler object per method (DDPM, DDIM, FewStep, OneCall), the seed's
``sample`` and ``generate_and_visualize``, and image files. Imports ``core`` and ``data``."""
from .images import image_grid, save_image_files, save_image_grid, to_unit, write_sample_set
from .generators import FewStep, OneCall
from .samplers import DDIM, DDPM, FAST_SAMPLER, generate_and_visualize, sample, sample_grid

__all__ = ["DDPM", "DDIM", "FewStep", "OneCall", "FAST_SAMPLER", "sample", "sample_grid", "generate_and_visualize", "to_unit",
           "image_grid", "save_image_grid", "save_image_files", "write_sample_set"]
