"""Runtime plug-ins: one module per runtime behind ``base.Backend``, registered here by name.

To add a runtime: subclass ``Backend`` in a module of this package (``runner`` builds a zero-argument
callable from a module; ``requires`` and ``extra`` say what it needs installed), and add it to
``_PLUGINS``. The API, the worker and the benchmark child find it by name from then on.
"""

from __future__ import annotations

from pathlib import Path

from profiler_service.measure.backends.base import Backend, deployed
from profiler_service.measure.backends.litert import LiteRTBackend, LiteRTInt8Backend
from profiler_service.measure.backends.onnx_export import OPSET, export_onnx, onnx_cache_path
from profiler_service.measure.backends.onnxruntime_cpu import OnnxRuntimeBackend, OnnxRuntimeInt8Backend
from profiler_service.measure.backends.openvino_cpu import OpenVinoBackend
from profiler_service.measure.backends.torch_eager import TorchBackend, TorchCudaBackend
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE

__all__ = ["BACKENDS", "OPSET", "Backend", "BackendUnavailable", "LiteRTBackend", "LiteRTInt8Backend",
           "OnnxRuntimeBackend", "OnnxRuntimeInt8Backend", "OpenVinoBackend", "TorchBackend", "TorchCudaBackend",
           "available_backends", "backend_class", "deployed", "export_onnx", "get_backend", "known_backends",
           "onnx_cache_path", "precision_of", "unavailable_reason"]

_PLUGINS: tuple[type[Backend], ...] = (OnnxRuntimeBackend, OnnxRuntimeInt8Backend, OpenVinoBackend, LiteRTBackend,
                                       LiteRTInt8Backend, TorchBackend, TorchCudaBackend)
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in _PLUGINS}
PACKAGE = "proxyless-latency"


class BackendUnavailable(ValueError):
    """A runtime that is unknown, or known but not installed (or without its hardware) on this worker."""


def known_backends() -> list[str]:
    return list(BACKENDS)


def available_backends() -> list[str]:
    """The runtimes this machine can run now, in registry order."""
    return [name for name, cls in BACKENDS.items() if cls.usable()]


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {known_backends()}")
    return BACKENDS[name]


def precision_of(name: str) -> str:
    """The arithmetic a runtime's tables hold ("float32", "int8"): their dtype."""
    return backend_class(name).precision


def unavailable_reason(name: str) -> str | None:
    """None when ``name`` runs here; otherwise one sentence saying why, and what to install where it helps."""
    cls = backend_class(name) if name in BACKENDS else None
    if cls is None:
        return f"{name!r} is not available: no such runtime; known: {known_backends()}"
    if cls.usable():
        return None
    if not cls.installed() and cls.extra:
        return (f"{name!r} is not available on this worker: its runtime is not installed "
                f"(pip install '{PACKAGE}[{cls.extra}]'); available here: {available_backends()}")
    return (f"{name!r} is not available on this worker: {cls.needs}; "
            f"available here: {available_backends()}")


def get_backend(name: str, *, threads: int, cache_dir: str | Path, reference: str = DEFAULT_REFERENCE) -> Backend:
    reason = unavailable_reason(name)
    if reason:
        raise BackendUnavailable(reason)
    return BACKENDS[name](threads=threads, cache_dir=cache_dir, reference=reference)
