"""Images in: paths and safe writes, the generated head phantoms, medical file formats, and the loaders
that turn any of them into batches in [-1, 1]. Imports only ``core``."""
from .files import check_writable, local_path, shipped_path
from .loaders import ImageDataset, load_images, make_dataloader, training_record
from .phantoms import CONTRASTS, PHANTOM_CLASSES, PhantomDataset, check_image_size, make_phantom, phantom_class

__all__ = ["local_path", "check_writable", "shipped_path", "ImageDataset", "load_images", "make_dataloader",
           "training_record", "PhantomDataset", "make_phantom", "CONTRASTS", "PHANTOM_CLASSES", "phantom_class",
           "check_image_size"]
