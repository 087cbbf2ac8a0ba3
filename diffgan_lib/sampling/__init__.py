"""Images out of a trained model: one sampler object per method (DDPM and DDIM in ``chains``, FewStep and OneCall
in ``generators``), the seed's ``sample`` and ``generate_and_visualize``, and image files. Imports ``core`` and
``data``."""
from .images import image_grid, save_image_files, save_image_grid, to_unit, write_sample_set
from .chains import DDIM, DDPM
from .generators import FewStep, OneCall
from .samplers import FAST_SAMPLER, generate_and_visualize, sample, sample_grid

__all__ = ["DDPM", "DDIM", "FewStep", "OneCall", "FAST_SAMPLER", "sample", "sample_grid", "generate_and_visualize", "to_unit",
           "image_grid", "save_image_grid", "save_image_files", "write_sample_set"]
