"""Real image folders for the tests, written with PIL: a colour per class, noise, several formats, nested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"blue": (40, 60, 200), "green": (40, 190, 60), "red": (210, 50, 40)}


def image(rgb: tuple[int, int, int], size: tuple[int, int], seed: int) -> Image.Image:
    """A class-coloured image with noise (so JPEG has texture to encode), ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


def write_folder(root: Path, per_class: int = 4, *, classes: dict = COLOURS, size: tuple[int, int] = (48, 36),
                 nested: bool = False, formats: tuple[str, ...] = ("jpg",)) -> list[Path]:
    """root/CLASS/[sub/]i.FORMAT; returns the files in write order."""
    written = []
    for c, (name, rgb) in enumerate(classes.items()):
        for i in range(per_class):
            folder = root / name / (f"part{i % 2}" if nested else "")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}_{i}.{formats[i % len(formats)]}"
            image(rgb, size, seed=100 * c + i).save(path)
            written.append(path)
    return written


def corrupt(path: Path) -> None:
    """A JPEG cut short after its header: PIL opens it, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: max(len(data) // 3, 200)])
