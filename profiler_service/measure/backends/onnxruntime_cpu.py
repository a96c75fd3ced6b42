"""onnxruntime on the CPU: fp32 (the default runtime of a CPU deployment) and static int8 (QDQ).

fp32 exports each module to ONNX once and runs it in an InferenceSession with pinned intra/inter-op
threads and full graph optimisation; an op is timed the way it runs inside a network (measure/context.py).
int8 quantises that ONNX file statically (``onnxruntime.quantization.quantize_static``: QDQ, per-channel
int8 weights, activations calibrated on ``base.calibration_inputs``), cached beside it.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from profiler_service.measure.backends.base import Backend, cache_path, calibration_inputs, deployed, write_once
from profiler_service.measure.backends.onnx_export import OPSET, export_onnx, onnx_cache_path
from profiler_service.measure.context import OUTPUT, InNetwork, ProfileGap, op_kernel_runs, timed_kernel_ms
from profiler_service.measure.protocol import Protocol, summarize, time_callable
from shared.ops import build_op
from shared.schemas import OpStats
from shared.specs import OpSpec

PROFILE_TRIES = 3  # an op whose kernel profile comes back incomplete is timed again in a fresh session


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    requires = ("onnxruntime",)

    def session(self, model_path: Path, profile_prefix: str | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])

    def model_path(self, module, input_shape, cache_key) -> Path:
        return export_onnx(module, input_shape, onnx_cache_path(self.cache_dir, cache_key, input_shape))

    def runner(self, module, input_shape, cache_key):
        sess = self.session(self.model_path(module, input_shape, cache_key))
        feed = {"x": np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)}
        return lambda: sess.run(None, feed)

    def context_path(self, spec: OpSpec, batch: int) -> Path:
        """The op between a producer and a consumer (measure/context.py), exported once."""
        shape = spec.input_shape(batch)
        return export_onnx(InNetwork(build_op(spec), spec), shape,
                           onnx_cache_path(self.cache_dir, f"ctx:{spec.key}", shape), output_name=OUTPUT)

    def prepare_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> None:
        if protocol.op_context != "network":
            return super().prepare_op(spec, batch, protocol)
        self.session(self.context_path(spec, batch))

    def measure_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> OpStats:
        if protocol.op_context != "network":
            return super().measure_op(spec, batch, protocol)
        shape = spec.input_shape(batch)
        path = self.context_path(spec, batch)
        for _ in range(PROFILE_TRIES):
            try:
                return self.settled(lambda: self.kernel_time(path, shape, protocol), protocol)
            except ProfileGap as e:  # timed again, in a fresh session with a fresh profile
                gap = e
        raise RuntimeError(f"onnxruntime's profile of {spec.key} was incomplete {PROFILE_TRIES} times ({gap}); "
                           "measure it again, or with PROFILER_OP_CONTEXT=isolated")

    def kernel_time(self, path: Path, shape: tuple[int, ...], protocol: Protocol) -> OpStats:
        """The op's own kernels' time from onnxruntime's per-node profile; the stopping rule runs on wall time."""
        feed = {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        with tempfile.TemporaryDirectory() as tmp:
            sess = self.session(path, profile_prefix=str(Path(tmp) / "op"))
            calls: list[bool] = []
            wall = time_callable(lambda: sess.run(None, feed), protocol, self.timer,
                                 reference=self.reference(protocol), calls=calls)
            per_run, events = op_kernel_runs(sess.end_profiling())
        # the profile holds every run in order; keep the timed ones (not the warm-up, not the re-warms)
        stats = summarize(timed_kernel_ms(per_run, events, calls))
        return stats.model_copy(update={"ref_ms": wall.ref_ms})

    def info(self) -> dict:
        import onnxruntime as ort

        return {**super().info(), "onnxruntime": ort.__version__, "graph_optimization": "all",
                "inter_op_threads": 1, "opset": OPSET}


def int8_activation_type() -> str:
    """uint8 activations on x86 (MLAS's U8S8 kernels; S8S8 ran a 40x40 MBConv 1.6x slower there), int8 on
    ARM (its dot-product kernels are S8S8, onnxruntime's recommendation for QDQ models there)."""
    return "uint8" if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686") else "int8"


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """Static int8: every op timed whole (no per-node profile: the op's kernels fuse with the Q/DQ pairs
    around them), so the calibration learns what a network's edges cost."""

    name = "onnxruntime-int8"
    precision = "int8"

    def model_path(self, module, input_shape, cache_key) -> Path:
        import onnxruntime

        fp32 = export_onnx(deployed(module), input_shape,
                           onnx_cache_path(self.cache_dir, cache_key, input_shape, variant="deployed"))
        act = int8_activation_type()
        tag = f"{fp32.name}|qdq-per-channel-s8-{act}|onnxruntime{onnxruntime.__version__}"
        return write_once(cache_path(self.cache_dir, tag, ".onnx"),
                          lambda tmp: quantize_qdq(fp32, tmp, input_shape, act))

    def measure_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> OpStats:
        return Backend.measure_op(self, spec, batch, protocol)

    def prepare_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> None:
        Backend.prepare_op(self, spec, batch, protocol)

    def info(self) -> dict:
        return {**super().info(), "quantization": "static QDQ, per-channel int8 weights",
                "activations": int8_activation_type()}


def quantize_qdq(fp32: Path, out: Path, input_shape: tuple[int, ...], activation: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": x} for x in calibration_inputs(input_shape)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8)
