"""torchvision's transforms, and the ImageNet train / eval transforms of the official search.

The official ProxylessNAS search (``data_providers/imagenet.py``) trains on
RandomResizedCrop(R, scale=(0.08, 1)) + horizontal flip + ColorJitter(brightness 32/255, saturation
0.5) and evaluates (its valid split carved from train, and the test split) on Resize(ceil(R / 0.875))
+ CenterCrop(R), i.e. resize 256 / centre crop 224 at R = 224. Both run on PIL images inside the
DataLoader workers.

Importing torchvision: the only torchvision 0.28.0 wheel on PyPI is linked against the CUDA build of
torch, so with the CPU wheel of torch 2.13.0 its C++ ops library does not load, and its module
``_meta_registrations`` then fails on ``register_fake("torchvision::nms")`` for an operator that was
never defined, which aborts ``import torchvision``. Nothing here uses those detection ops: when the
library is absent, the two operator schemas that module registers against are declared (no kernel)
so the import completes, and the transforms, which are plain Python on PIL and torch, work as usual.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import torch

RESIZE_RATIO = 0.875  # eval: resize the short side to R / 0.875 (256 for 224), then centre crop R
TRAIN_SCALE = (0.08, 1.0)  # RandomResizedCrop area range (the official resize_scale 0.08)
JITTER_BRIGHTNESS = 32.0 / 255.0  # the official distort_color='normal'
JITTER_SATURATION = 0.5

_SCHEMAS = {"nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
_fallback_library: torch.library.Library | None = None


def _declare_missing_ops() -> None:
    global _fallback_library
    if _fallback_library is not None:
        return
    _fallback_library = torch.library.Library("torchvision", "FRAGMENT")  # kept alive: it owns the schemas
    for name, schema in _SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            _fallback_library.define(schema)


def transforms_module() -> ModuleType:
    """``torchvision.transforms``, importable with the CPU torch wheel (see the module doc)."""
    try:
        return importlib.import_module("torchvision.transforms")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package, so the retry runs its __init__ again
    _declare_missing_ops()
    return importlib.import_module("torchvision.transforms")


def eval_resize(resolution: int) -> int:
    return int(math.ceil(resolution / RESIZE_RATIO))


def train_transform(resolution: int, mean: tuple[float, ...], std: tuple[float, ...], *,
                    augment: bool = True):
    """PIL image -> normalised (3, R, R) float tensor, augmented as the official search trains."""
    transforms = transforms_module()
    if not augment:
        return eval_transform(resolution, mean, std)
    return transforms.Compose([
        transforms.RandomResizedCrop(resolution, scale=TRAIN_SCALE),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=JITTER_BRIGHTNESS, saturation=JITTER_SATURATION),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def eval_transform(resolution: int, mean: tuple[float, ...], std: tuple[float, ...]):
    """PIL image -> normalised (3, R, R): resize the short side to R / 0.875, centre crop R."""
    transforms = transforms_module()
    return transforms.Compose([
        transforms.Resize(eval_resize(resolution)),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


__all__ = ["eval_resize", "eval_transform", "train_transform", "transforms_module"]
