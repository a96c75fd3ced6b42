"""OpenVINO's CPU plugin, fp32: the same ONNX file, compiled with the latency hint and pinned threads.

``INFERENCE_PRECISION_HINT`` is f32 because without it a CPU with bf16 (or fp16) support runs reduced
precision by default, and the table would silently be of another arithmetic than it says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from profiler_service.measure.backends.base import Backend, deployed
from profiler_service.measure.backends.onnx_export import export_onnx, onnx_cache_path


class OpenVinoBackend(Backend):
    name = "openvino"
    requires = ("openvino",)
    extra = "openvino"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._core = None

    def core(self):
        if self._core is None:
            import openvino

            self._core = openvino.Core()
        return self._core

    def config(self) -> dict:
        return {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"}

    def model_path(self, module, input_shape, cache_key) -> Path:
        return export_onnx(deployed(module), input_shape,
                           onnx_cache_path(self.cache_dir, cache_key, input_shape, variant="deployed"))

    def runner(self, module, input_shape, cache_key):
        compiled = self.core().compile_model(str(self.model_path(module, input_shape, cache_key)), "CPU",
                                             self.config())
        import openvino

        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
        # the input is set once: a timed run is the inference alone, not a copy of the input into it
        request.set_input_tensor(openvino.Tensor(x, shared_memory=True))

        def run():
            return request.infer(), x  # x held here: the shared tensor does not keep its array alive
        return run

    def info(self) -> dict:
        import openvino

        return {**super().info(), "openvino": openvino.__version__, "device": "CPU", **self.config()}
