"""Backends: a tiny interface (build a runnable from a module, time it per the protocol).

``onnxruntime`` is the default (what a CPU deployment runs): each module is exported to ONNX once
(cached on disk by key, shape and exporter version) and run in an InferenceSession with pinned
intra/inter-op threads and full graph optimisation. ``torch`` is eager PyTorch; ``torch-cuda`` times
with CUDA events and exists only where CUDA does.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from profiler_service.measure.context import OUTPUT, InNetwork, ProfileGap, op_kernel_runs, timed_kernel_ms
from profiler_service.measure.protocol import Protocol, Settler, summarize, time_callable
from profiler_service.measure.reference import FILLER_RESOLUTION, filler_module, reference_module
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from shared.files import write_failure
from shared.ops import build_op
from shared.schemas import OpStats
from shared.specs import OpSpec

OPSET = 17
PROFILE_TRIES = 3  # an op whose kernel profile comes back incomplete is timed again in a fresh session


class Backend(ABC):
    name: str

    def __init__(self, *, threads: int, cache_dir: str | Path, reference: str = DEFAULT_REFERENCE):
        self.threads = threads
        self.cache_dir = Path(cache_dir)
        self.reference_name = reference  # which drift reference (measure/reference.py) this job times
        self._reference: Callable[[], object] | None = None
        self.settled = Settler()  # one per child: it remembers whether the device has been busy a while
        torch.set_num_threads(threads)

    def reference(self, protocol: Protocol) -> Callable[[], object] | None:
        """The drift reference's runner on this backend (built once), or None when the protocol has none."""
        if not protocol.drift_reference:
            return None
        if self._reference is None:
            module, shape = reference_module(self.reference_name)
            self._reference = self.runner(module, shape, f"reference:{self.reference_name}")
        return self._reference

    def filler(self, protocol: Protocol) -> Callable[[], object] | None:
        """The nominal burst's stand-in for a measured op: the default reference's blocks at a small input."""
        if not protocol.drift_reference:
            return None
        module, shape = filler_module()
        return self.runner(module, shape, f"reference-filler:{DEFAULT_REFERENCE}@{FILLER_RESOLUTION}")

    @abstractmethod
    def runner(self, module: nn.Module, input_shape: tuple[int, ...], cache_key: str) -> Callable[[], object]:
        """A zero-argument callable that runs the module once on a fixed input."""

    def timer(self) -> float:
        return time.perf_counter()

    def measure(self, module: nn.Module, input_shape: tuple[int, ...], cache_key: str,
                protocol: Protocol) -> OpStats:
        run = self.runner(module, input_shape, cache_key)
        ref = self.reference(protocol)
        return self.settled(lambda: time_callable(run, protocol, self.timer, reference=ref), protocol)

    def measure_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> OpStats:
        return self.measure(build_op(spec), spec.input_shape(batch), spec.key, protocol)

    def info(self) -> dict:
        return {"backend": self.name, "threads": self.threads}


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Path, output_name: str = "y") -> Path:
    """Export once; the rename makes a concurrent or killed export never leave a half-written file."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    x = torch.randn(*input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (x,), str(tmp), input_names=["x"], output_names=[output_name],
                              opset_version=OPSET, dynamo=False)
        tmp.replace(path)
    except OSError as e:  # a full cache disk: named, and no half-written model left behind
        tmp.unlink(missing_ok=True)
        raise write_failure(path, e) from None
    return path


def onnx_cache_path(cache_dir: Path, cache_key: str, input_shape: tuple[int, ...]) -> Path:
    tag = f"{cache_key}|{input_shape}|torch{torch.__version__}|opset{OPSET}"
    return cache_dir / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}.onnx"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

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

    def runner(self, module, input_shape, cache_key):
        path = export_onnx(module, input_shape, onnx_cache_path(self.cache_dir, cache_key, input_shape))
        sess = self.session(path)
        feed = {"x": np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)}
        return lambda: sess.run(None, feed)

    def measure_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> OpStats:
        if protocol.op_context != "network":
            return super().measure_op(spec, batch, protocol)
        shape = spec.input_shape(batch)
        module = InNetwork(build_op(spec), spec)
        path = export_onnx(module, shape, onnx_cache_path(self.cache_dir, f"ctx:{spec.key}", shape),
                           output_name=OUTPUT)
        for _ in range(PROFILE_TRIES):
            try:
                return self.settled(lambda: self._kernel_time(path, shape, protocol), protocol)
            except ProfileGap as e:  # timed again, in a fresh session with a fresh profile
                gap = e
        raise RuntimeError(f"onnxruntime's profile of {spec.key} was incomplete {PROFILE_TRIES} times ({gap}); "
                           "measure it again, or with PROFILER_OP_CONTEXT=isolated")

    def _kernel_time(self, path: Path, shape: tuple[int, ...], protocol: Protocol) -> OpStats:
        feed = {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        with tempfile.TemporaryDirectory() as tmp:
            sess = self.session(path, profile_prefix=str(Path(tmp) / "op"))
            # The protocol's stopping rule runs on wall time; the statistic is the op's own kernel time.
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


class TorchBackend(Backend):
    name = "torch"
    device = "cpu"

    def runner(self, module, input_shape, cache_key):
        module = module.eval().to(self.device)
        x = torch.randn(*input_shape, device=self.device)

        def run():
            with torch.inference_mode():
                return module(x)
        return run


class TorchCudaBackend(TorchBackend):
    """CUDA timing: synchronise before reading the clock, so the time covers the kernels, not the launch."""

    name = "torch-cuda"
    device = "cuda"

    def timer(self) -> float:
        torch.cuda.synchronize()
        return time.perf_counter()


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (OnnxRuntimeBackend, TorchBackend, TorchCudaBackend)}


def available_backends() -> list[str]:
    names = ["onnxruntime", "torch"]
    if torch.cuda.is_available():
        names.append("torch-cuda")
    return names


def get_backend(name: str, *, threads: int, cache_dir: str | Path, reference: str = DEFAULT_REFERENCE) -> Backend:
    if name not in available_backends():
        raise ValueError(f"backend {name!r} is not available here; available: {available_backends()}")
    return BACKENDS[name](threads=threads, cache_dir=cache_dir, reference=reference)
