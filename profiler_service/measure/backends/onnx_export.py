"""ONNX export, cached on disk: what onnxruntime, its int8 form and OpenVINO all read."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from profiler_service.measure.backends.base import cache_path, write_once

OPSET = 17


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path, output_name: str = "y") -> Path:
    """Export once (``base.write_once``)."""
    def write(tmp: Path) -> None:
        x = torch.randn(*input_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (x,), str(tmp), input_names=["x"], output_names=[output_name],
                              opset_version=OPSET, dynamo=False)
    return write_once(path, write)


def onnx_cache_path(cache_dir: Path, cache_key: str, input_shape: tuple[int, ...], variant: str = "") -> Path:
    """``variant`` names a different module for the same key (deployed weights), so the two never share a file."""
    tag = f"{cache_key}|{input_shape}|torch{torch.__version__}|opset{OPSET}" + (f"|{variant}" if variant else "")
    return cache_path(cache_dir, tag, ".onnx")
