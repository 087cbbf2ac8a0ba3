"""Batches for training: ``make_dataloader`` from phantoms, the shipped X-rays or your scans, ``ImageDataset``,
and ``training_record`` (which images a dataset holds, in plain values a checkpoint keeps as ``members``).

``make_dataloader`` takes two names: "phantoms" (generated) and "pneumoniamnist" (real chest X-rays
shipped in data/, with labels ``PNEUMONIAMNIST_CLASSES``), or a path read by ``images.load_images``
(its docstring says how each format is scaled to [-1, 1]). A folder in torchvision's ImageFolder
layout, root/class_name/*.png, gives class labels with ``labels="folders"`` (class k = the k-th
sub-folder name in sorted order).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from ..core.device import env_world, launched, pick_device
from .files import local_path, shipped_path
from .formats import file_kind, read_labels
from .images import load_images
from .phantoms import PhantomDataset

__all__ = ["ImageDataset", "make_dataloader", "class_folders", "training_record", "SOURCES", "LABEL_SOURCES",
           "PNEUMONIAMNIST_PATH", "PNEUMONIAMNIST_CLASSES", "load_images"]

LABEL_SOURCES = (None, "folders")    # ImageDataset(labels=...): none (or a .npz's own), or the sub-folders
PNEUMONIAMNIST_CLASSES = ("normal", "pneumonia")   # label 0, label 1
PNEUMONIAMNIST_PATH = shipped_path("pneumoniamnist_28.npz", must_exist=False)   # the clone's or $DIFFGAN_DATA's
SOURCES = ("phantoms", "pneumoniamnist")
def _resolve_source(source: str | Path) -> Path:
    """A path, or the shipped dataset that a name stands for: "pneumoniamnist" (any case)."""
    if isinstance(source, str) and source.lower() == "pneumoniamnist":
        if not PNEUMONIAMNIST_PATH.is_file():
            raise FileNotFoundError(f"PneumoniaMNIST is not at {PNEUMONIAMNIST_PATH}: it ships in the course "
                                    "repository's data/ folder; work in a clone of the repository, or set "
                                    "DIFFGAN_DATA to a copy of its data/ folder, or pass the path of a MedMNIST .npz")
        return PNEUMONIAMNIST_PATH
    return local_path(source, "data path")


def _labels_for(path: Path, split: str, n_images: int) -> torch.Tensor:
    """(N,) int64 class labels of a MedMNIST .npz split, checked against the number of images."""
    if not (path.is_file() and file_kind(path) == "npz"):
        raise ValueError(f"return_labels=True needs labels, and {path} has none: only 'phantoms', "
                         "'pneumoniamnist' and MedMNIST-layout .npz files carry them, or a folder with one "
                         "sub-folder per class (root/class_name/*.png) loaded with labels='folders'; "
                         "drop return_labels")
    labels = torch.from_numpy(read_labels(path, split))
    if len(labels) != n_images:
        raise ValueError(f"{path.name}: '{split}_labels' has {len(labels)} entries for {n_images} images; "
                         "the file is inconsistent: fix it or load without return_labels")
    return labels


def class_folders(path: Path) -> tuple[str, ...]:
    """The classes of a folder in torchvision's ImageFolder layout (root/class_name/*.png): the sorted
    names of its sub-folders (hidden ones left out). ValueError unless ``path`` is a folder with >= 2."""
    if not path.is_dir():
        raise ValueError(f"labels='folders' takes the class names from the sub-folders of a folder, but {path} "
                         "is not a folder; pass a folder laid out as root/class_name/*.png, or drop labels= "
                         "(a MedMNIST .npz or 'pneumoniamnist' carries its labels: return_labels=True)")
    names = tuple(sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise ValueError(f"labels='folders' needs at least 2 class folders in {path} (root/class_name/*.png), "
                         f"found {found}; put each class's images in a sub-folder named after it, or drop "
                         "labels='folders' (--labels folders) to train without classes")
    return names


def _folder_labels(names: list[str], class_names: tuple[str, ...], path: Path) -> torch.Tensor:
    """(N,) int64: the index in ``class_names`` of each image's top sub-folder (names from load_images)."""
    loose = [n for n in names if "/" not in n]
    if loose:
        raise ValueError(f"{path} mixes {len(loose)} image(s) lying directly in it (e.g. {loose[0]}) with class "
                         f"folders ({', '.join(class_names)}); with labels='folders' every image must lie in "
                         "its class's folder: move them into one, or drop labels=")
    top = [n.split("/", 1)[0] for n in names]
    empty = [c for c in class_names if c not in set(top)]
    linked = [c for c in empty if (path / c).is_symlink()]
    if linked:
        raise ValueError(f"class folder(s) {', '.join(repr(c) for c in linked)} in {path} are symbolic links to "
                         "folders, which the loader does not follow; put the folder itself (or links to its files) "
                         "there")
    if empty:
        raise ValueError(f"class folder(s) {', '.join(repr(c) for c in empty)} in {path} hold no readable images; "
                         "every sub-folder is a class (root/class_name/*.png): add images or move the folder out")
    index = {c: k for k, c in enumerate(class_names)}
    return torch.tensor([index[c] for c in top], dtype=torch.int64)


class ImageDataset(Dataset):
    """Real images held in memory; ``ds[i]`` is (C, S, S) float32 in [-1, 1] (``ds.images`` is all).

    ``ImageDataset(path, image_size, channels=1, n=None, return_labels=False, labels=None, **kwargs)``
    takes ``load_images``'s keyword arguments; ``path`` may also be "pneumoniamnist" (the shipped chest
    X-rays); ``n`` keeps only the first n images (quick CPU runs). ``ds.names[i]`` is image i's file
    (``load_images(return_names=True)``). Labels, ``ds.labels`` int64 (N,), come from a MedMNIST .npz,
    or with ``labels="folders"`` from a folder in torchvision's ImageFolder layout: root/class_name/*.png
    (any format load_images reads; below a class folder, sub-folders are read too), class k =
    ``ds.class_names[k]``, the sorted folder names. ``ds.class_names`` is None when unknown. With
    ``return_labels=True`` ``ds[i]`` is ``(image, label)``, label an int64 scalar tensor, so a
    DataLoader gives (x, y) with y of shape (B,).
    """

    def __init__(self, path: str | Path, image_size: int, channels: int = 1, n: int | None = None,
                 return_labels: bool = False, labels: str | None = None, **kwargs):
        self.path = _resolve_source(path)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"n must be a positive int or None (all images), got {n!r}")
        if labels not in LABEL_SOURCES:
            raise ValueError(f"labels={labels!r}: use None (no labels, or the .npz's own) or 'folders' (one "
                             "sub-folder per class: root/class_name/*.png)")
        self.class_names = class_folders(self.path) if labels == "folders" else None
        self.images, self.names = load_images(self.path, image_size, channels=channels, return_names=True,
                                              warn_resize=self.path != PNEUMONIAMNIST_PATH, **kwargs)   # 28 px, known
        self.split = kwargs.get("split", "train") if self.path.is_file() and file_kind(self.path) == "npz" else None
        if labels == "folders":
            self.labels = _folder_labels(self.names, self.class_names, self.path)
        else:
            self.labels = _labels_for(self.path, self.split or "train", len(self.images)) if return_labels else None
            if self.labels is not None and self.path == PNEUMONIAMNIST_PATH:
                self.class_names = PNEUMONIAMNIST_CLASSES
        self.return_labels = bool(return_labels)
        if n is not None:
            self.images, self.names = self.images[:n], self.names[:n]
            self.labels = None if self.labels is None else self.labels[:n]
            kept = {name.split("/")[0] for name in self.names}
            missing = [] if labels != "folders" else sorted(set(self.class_names) - kept)
            if missing:
                raise ValueError(f"n={n} keeps the first {n} images in sorted order, and none of class(es) "
                                 f"{', '.join(missing)}; raise n or leave it out")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return (self.images[index], self.labels[index]) if self.return_labels else self.images[index]

    def __repr__(self) -> str:
        return f"ImageDataset({str(self.path)!r}, {len(self)} images of shape {tuple(self.images.shape[1:])})"


def make_dataloader(source: str | Path, image_size: int, batch_size: int, channels: int = 1,
                    n: int | None = None, num_workers: int | None = None, seed: int | None = None,
                    shuffle: bool = True, drop_last: bool = True, device=None, **kwargs) -> DataLoader:
    """A DataLoader of (B, C, S, S) float32 batches in [-1, 1] from a name or a path.

    source: "phantoms" (generated head slices), "pneumoniamnist" (real chest X-rays shipped in data/;
    ``split=`` "train" 4708, "val" 524 or "test" 624 images; ``return_labels=True`` gives (x, y) with
    y int64 (B,), 0 normal, 1 pneumonia, see ``PNEUMONIAMNIST_CLASSES``), both case-insensitive, or a
    folder or file of your own scans (``load_images``).
    n: number of phantoms (default 1024), or keep the first n real images; seed: fixes the phantoms
    (default 0) and the shuffling order (a seeded torch.Generator; None = a new order every run);
    num_workers: None means 0, loading in the notebook's own process: phantoms take about a
    millisecond and real images are preloaded, so worker processes would add start-up time (and
    spawn trouble on Windows/macOS) for no gain. pin_memory is on only when ``device`` is CUDA.
    Under torchrun (WORLD_SIZE set) the loader is sharded: a DistributedSampler gives each process
    its own 1/WORLD_SIZE of the images (phantoms are made from their index, so they shard too), and
    ``batch_size`` is per process (the global batch is batch_size x WORLD_SIZE).
    Other keyword arguments go to ``PhantomDataset`` (e.g. ``return_labels=True``: batches become
    (images, {"contrast": (B,), "lesion": (B,)})) or to ``ImageDataset`` / ``load_images``
    (return_labels, normalize, window, split...; ``labels="folders"`` with ``return_labels=True``:
    classes from the sub-folders of a folder, root/class_name/*.png, names in ``loader.dataset.class_names``).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(source, str) and source.lower() == "phantoms":
        if kwargs.get("labels") is not None:
            raise ValueError(f"labels={kwargs['labels']!r} reads classes from the sub-folders of a folder of your "
                             "scans; the phantoms carry their own labels: drop labels= and pass return_labels=True")
        ds = PhantomDataset(n=1024 if n is None else n, image_size=image_size, channels=channels,
                            seed=0 if seed is None else seed, **kwargs)
    else:
        ds = ImageDataset(source, image_size, channels=channels, n=n, **kwargs)
    if drop_last and len(ds) < batch_size:
        raise ValueError(f"the dataset has {len(ds)} images, fewer than batch_size={batch_size}, so "
                         "drop_last=True would give no batch at all; lower batch_size or pass drop_last=False")
    num_workers = 0 if num_workers is None else num_workers
    rank, world = env_world()
    if launched():   # under torchrun: each process reads its own shard, reshuffled by train()'s set_epoch
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle,
                                     seed=0 if seed is None else seed, drop_last=drop_last)
        if drop_last and len(sampler) < batch_size:
            raise ValueError(f"each of the {world} processes gets {len(sampler)} of the {len(ds)} images, fewer "
                             f"than batch_size={batch_size} (per process); lower batch_size or use more images")
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=num_workers, persistent_workers=num_workers > 0,
                          pin_memory=pick_device(device).type == "cuda")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=pick_device(device).type == "cuda", generator=generator)


def _indices_record(indices: list[int]) -> dict:
    """{"range": [a, b]} for the indices a, a + 1, ..., b - 1, else {"indices": [...]}; plain ints."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        return {"range": [indices[0], indices[0] + len(indices)]}
    return {"indices": [int(i) for i in indices]}


def training_record(dataset) -> dict | None:
    """Which images ``dataset`` holds, in plain values (what a checkpoint stores as ``members``).

    PhantomDataset: {"source": "phantoms", "seed", "image_size", "contrasts", "lesion_prob"} (phantom i
    depends only on these and i); ImageDataset: {"source": "pneumoniamnist" or the resolved path,
    "split" (a .npz), "files" (a folder: every loaded image's name, ``ds.names``)}. Both add
    "count" and the images' indices (into ``files`` for a folder): "range": [a, b] for a..b-1, else
    "indices": [...]. ``torch.utils.data.Subset`` (nested too) narrows the indices. None for any
    other dataset (a TensorDataset, a list): it cannot say where its images came from.
    """
    picked = None
    while isinstance(dataset, Subset):
        outer = [int(i) for i in dataset.indices]
        picked = outer if picked is None else [outer[i] for i in picked]
        dataset = dataset.dataset
    if isinstance(dataset, PhantomDataset):
        record = {"source": "phantoms", "seed": dataset.seed, "image_size": dataset.image_size,
                  "contrasts": list(dataset.contrasts), "lesion_prob": dataset.lesion_prob}
    elif isinstance(dataset, ImageDataset):
        own = dataset.path == PNEUMONIAMNIST_PATH
        record = {"source": "pneumoniamnist" if own else str(dataset.path.resolve())}
        if dataset.split is not None:
            record["split"] = dataset.split
        if dataset.path.is_dir():
            record["files"] = list(dataset.names)
    else:
        return None
    picked = list(range(len(dataset))) if picked is None else picked
    return {**record, "count": len(picked), **_indices_record(picked)}


