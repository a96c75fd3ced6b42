"""LiteRT (TFLite) with its XNNPACK delegate: fp32, and full-integer int8 as a phone's int8 model runs.

Modules are converted with ``litert_torch`` (PyTorch -> .tflite) and run by ``ai_edge_litert``'s
interpreter, whose default delegate is XNNPACK: the same kernels as on an ARM phone or board.

Channels last at the edges: the converter keeps a module's NCHW interface by adding a TRANSPOSE at its
input and output, which one op timed alone would pay twice and a whole network once. A deployed TFLite
model takes NHWC, so every module is converted with channels-last inputs (and outputs, where they are
images) and no transpose is timed anywhere.

int8 is the PT2E flow: a symmetric per-channel int8 quantiser, calibrated on ``base.calibration_inputs``,
then converted; the interpreter runs every op in int8 under XNNPACK (QS8 kernels), the residual adds
included, with int8 at the model's edges: a full-integer model, as a phone's int8 model is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import operator
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from profiler_service.measure.backends.base import Backend, cache_path, calibration_inputs, deployed, write_once

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # LiteRT's C++ logging, read when its library loads


def _quiet() -> contextlib.ExitStack:
    """The converter reports its progress on stdout and stderr: keep it out of the benchmark's channels."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    for name in ("absl", "litert_torch", "torchao", "torch._export"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return stack


def channels_last_io(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    """The module with an NHWC input (and NHWC output where its output is an image), and a sample input."""
    import litert_torch

    x = torch.randn(*input_shape)
    with torch.no_grad():
        out_dims = module(x).dim()
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if out_dims == 4 else [])
    return wrapped, x.permute(0, 2, 3, 1).contiguous()


class LiteRTBackend(Backend):
    name = "litert"
    requires = ("ai_edge_litert", "litert_torch")
    extra = "litert"
    recipe = "fp32"

    def model_path(self, module: nn.Module, input_shape: tuple[int, ...], cache_key: str) -> Path:
        import litert_torch

        tag = (f"{cache_key}|{input_shape}|litert-{self.recipe}|nhwc|litert_torch{litert_torch.__version__}"
               f"|torch{torch.__version__}")
        return write_once(cache_path(self.cache_dir, tag, ".tflite"),
                          lambda tmp: self.convert(deployed(module), input_shape, tmp))

    def convert(self, module: nn.Module, input_shape: tuple[int, ...], out: Path) -> None:
        import litert_torch

        wrapped, sample = channels_last_io(module, input_shape)
        with _quiet():
            litert_torch.convert(wrapped.eval(), (sample,)).export(str(out))

    def interpreter(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=self.threads)
        interp.allocate_tensors()
        return interp

    def runner(self, module, input_shape, cache_key):
        interp = self.interpreter(self.model_path(module, input_shape, cache_key))
        detail = interp.get_input_details()[0]
        n, c, h, w = input_shape
        x = np.random.default_rng(0).standard_normal((n, h, w, c), dtype=np.float32)
        if detail["dtype"] != np.float32:  # an integer input: quantised with the model's own scale
            scale, zero = detail["quantization"]
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
        interp.set_tensor(detail["index"], x)  # set once: a timed run is the inference alone
        return interp.invoke

    def info(self) -> dict:
        import ai_edge_litert

        version = getattr(ai_edge_litert, "__version__", None)
        return {**super().info(), "ai_edge_litert": version, "delegate": "XNNPACK", "io": "NHWC"}


def mark_adds(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Name each tensor add as the ``+`` it came from, so the quantiser sees it.

    The quantiser finds adds by the source function recorded on each node (``source_fn_stack``), which
    torch 2.13's ``torch.export`` no longer records. Unmarked, every residual add stayed in float: a
    DEQUANTIZE, a float ADD and a QUANTIZE in each residual block, op alone and in a network alike, which
    is not the full-integer model a phone runs."""
    for node in graph_module.graph.nodes:
        if (node.op == "call_function" and node.target == torch.ops.aten.add.Tensor
                and not node.meta.get("source_fn_stack")):
            node.meta["source_fn_stack"] = [(node.name, operator.add)]
    return graph_module


class LiteRTInt8Backend(LiteRTBackend):
    name = "litert-int8"
    precision = "int8"
    recipe = "int8-pt2e-symmetric-per-channel-integer-adds"

    def convert(self, module: nn.Module, input_shape: tuple[int, ...], out: Path) -> None:
        import litert_torch
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        wrapped, sample = channels_last_io(module, input_shape)
        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                                 is_dynamic=False))
        with _quiet():
            prepared = prepare_pt2e(mark_adds(torch.export.export(wrapped.eval(), (sample,)).module()), quantizer)
            for x in calibration_inputs(input_shape):
                prepared(torch.from_numpy(x).permute(0, 2, 3, 1).contiguous())
            quantized = convert_pt2e(prepared, fold_quantize=False)
            litert_torch.convert(quantized, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
                str(out))

    def info(self) -> dict:
        return {**super().info(), "quantization": "full-integer int8 (PT2E, symmetric per-channel weights)"}

