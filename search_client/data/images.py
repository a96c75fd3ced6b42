"""A user's image folder: class folders (images at any depth below them, any format PIL reads), an
optional ``train/`` + ``val/`` (or ``test/``) layout, ImageNet's flat ``val/`` with a label file.

Images are decoded and transformed per item, in the DataLoader workers. A file that does not decode
(truncated, corrupt, not an image after all) never stops an epoch: its item comes back as a zero
image with label ``SKIPPED_LABEL``, which the losses ignore and the loop counts as skipped.
Augmentation is a pure function of a per-item seed that the sampler hands over with the index, so a
resumed run draws the same crops as an uninterrupted one, whatever process decoded them.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SKIPPED_LABEL = -100  # F.cross_entropy's default ignore_index
STATS_IMAGES = 256  # training images read to estimate a folder's mean / std
STATS_SIZE = 64  # ... each at this size: the statistics of a thumbnail are those of the image
MIN_STD = 1e-2


def image_suffixes() -> frozenset[str]:
    """Every file extension PIL has a decoder for (JPEG, PNG, WebP, BMP, TIFF, ...)."""
    from PIL import Image

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Folder:
    classes: list[str]
    paths: list[Path]
    labels: list[int]


def _images_below(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_classes(root: Path) -> Folder:
    """``root/CLASS/**/IMAGE``; refuses a folder without images and a class folder without any."""
    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise FileNotFoundError(f"cannot read image folder {root}: {e.strerror or e}") from None
    suffixes = image_suffixes()
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, cls in enumerate(classes):
        files = _images_below(root / cls, suffixes)
        if not files:
            empty.append(cls)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images under {root}: expected {root}/CLASS/*.jpg (class folders of images "
                                f"in any format PIL reads)")
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ValueError(f"class folder(s) with no images under {root}: {shown} (add images or remove the "
                         f"folder: a class that is never seen cannot be learnt)")
    return Folder(classes, paths, labels)


def read_label_file(path: Path, classes: list[str]) -> dict[str, int]:
    """``FILE CLASS`` per line (whitespace or comma separated; extra columns ignored): CLASS is a class
    folder name (ImageNet's synset, as LOC_val_solution.csv has it) or a 0-based index into the sorted
    class names; FILE may omit its extension. A first line that names no class is a header."""
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, int] = {}
    first = True
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FileNotFoundError(f"cannot read label file {path}: {e}") from None
    for n, line in enumerate(lines, 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{n}: expected 'FILE CLASS', got {line.strip()!r}")
        name, cls = fields[0], fields[1]
        header, first = first, False
        if cls in index:
            label = index[cls]
        elif cls.isdigit() and int(cls) < len(classes):
            label = int(cls)
        elif header:
            continue
        else:
            raise ValueError(f"{path}:{n}: class {cls!r} is neither a class folder of train/ nor an index "
                             f"below {len(classes)}")
        out[Path(name).stem] = label
    if not out:
        raise ValueError(f"label file {path} has no 'FILE CLASS' line")
    return out


def scan_flat(folder: Path, label_file: Path, classes: list[str]) -> Folder:
    """A flat folder of images (ImageNet's val/) labelled by ``label_file``."""
    labels_by_stem = read_label_file(label_file, classes)
    files = _images_below(folder, image_suffixes())
    paths = [p for p in files if p.stem in labels_by_stem]
    if not paths:
        raise FileNotFoundError(f"none of the {len(files)} images in {folder} is named in {label_file}")
    unlabelled = len(files) - len(paths)
    if unlabelled:
        print(f"warning: {unlabelled} image(s) in {folder} have no line in {label_file}; left out",
              file=sys.stderr)
    return Folder(classes, paths, [labels_by_stem[p.stem] for p in paths])


def open_rgb(path: Path, draft: int | None = None):
    """PIL RGB image (alpha dropped, grey widened). ``draft``: let the JPEG decoder scale down by a power
    of two while the short side stays >= draft, much cheaper than decoding full size and resizing."""
    from PIL import Image

    with Image.open(path) as im:
        if draft is not None:
            im.draft("RGB", (draft, draft))
        return im.convert("RGB")


class FileImages(Dataset):
    """Images read from disk on access (a user's folder need not fit in memory)."""

    def __init__(self, paths: list[Path], labels: list[int], transform, *, resolution: int,
                 random_transform: bool = False, draft: int | None = None):
        self.paths, self.labels, self.transform = paths, labels, transform
        self.resolution, self.draft = resolution, draft  # draft: see open_rgb (eval transforms only)
        self.random_transform = random_transform  # the sampler then hands a seed with each index
        self.indices = torch.arange(len(paths))
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        try:
            image = open_rgb(self.paths[i], self.draft)
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBomb...
            if i not in self._warned:  # once per file and process: a bad file is not a reason to stop
                self._warned.add(i)
                print(f"warning: skipping unreadable image {self.paths[i]}: {type(e).__name__}: {e}",
                      file=sys.stderr)
            return torch.zeros(3, self.resolution, self.resolution), SKIPPED_LABEL
        if seed is None:
            return self.transform(image), self.labels[i]
        # the transforms draw from torch's global generator: seed it for this item, restore it after
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = self.transform(image)  # (3, R, R)
        return x, self.labels[i]

    @property
    def targets(self) -> list[int]:
        return list(self.labels)


def channel_stats(paths: list[Path], seed: int, count: int = STATS_IMAGES) -> tuple[tuple[float, ...],
                                                                                   tuple[float, ...]]:
    """Per-channel mean / std in [0, 1] of up to ``count`` images drawn with ``seed`` (thumbnails)."""
    picked = random.Random(seed).sample(range(len(paths)), min(count, len(paths)))
    sums, squares, pixels = np.zeros(3), np.zeros(3), 0
    for i in picked:
        try:
            image = open_rgb(paths[i], draft=STATS_SIZE)
        except Exception:  # noqa: BLE001 - an unreadable file is skipped here as in training
            continue
        image.thumbnail((STATS_SIZE, STATS_SIZE))
        arr = np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255  # (pixels, 3)
        sums += arr.sum(0)
        squares += (arr**2).sum(0)
        pixels += len(arr)
    if pixels == 0:
        raise ValueError(f"none of {len(picked)} images sampled for the mean / std could be read "
                         f"(e.g. {paths[picked[0]]})")
    mean = sums / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 0.0))
    # a channel that never varies (a grey folder's colour channels agree, not vanish; a synthetic one may)
    # must not divide by ~0
    return tuple(round(float(v), 4) for v in mean), tuple(max(round(float(v), 4), MIN_STD) for v in std)


__all__ = ["SKIPPED_LABEL", "FileImages", "Folder", "channel_stats", "image_suffixes", "open_rgb",
           "read_label_file", "scan_classes", "scan_flat"]
