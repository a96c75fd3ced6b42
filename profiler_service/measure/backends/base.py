"""The runtime interface: build a runnable from a module, time it by the measurement protocol.

A runtime plug-in subclasses ``Backend``, names the Python modules it needs (``requires``) and the
package extra that brings them (``extra``), and registers itself (``backends/__init__.py``). What it
converts it caches on disk by key, shape and converter version, so a second profile of the same space
converts nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from profiler_service.measure.protocol import Protocol, Settler, time_callable
from profiler_service.measure.reference import FILLER_RESOLUTION, filler_module, reference_module
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from shared.files import write_failure
from shared.ops import build_op
from shared.schemas import OpStats
from shared.specs import OpSpec


class Backend(ABC):
    name: str
    precision: str = "float32"  # what the table's dtype says: the arithmetic the runtime runs
    requires: tuple[str, ...] = ()  # importable modules the runtime needs
    extra: str | None = None  # the package extra that installs them
    needs: str = "its runtime is missing"  # what else it needs, said when it cannot run

    def __init__(self, *, threads: int, cache_dir: str | Path, reference: str = DEFAULT_REFERENCE):
        self.threads = threads
        self.cache_dir = Path(cache_dir)
        self.reference_name = reference  # which drift reference (measure/reference.py) this job times
        self._reference: Callable[[], object] | None = None
        self.settled = Settler()  # one per child: it remembers whether the device has been busy a while
        torch.set_num_threads(threads)

    @classmethod
    def installed(cls) -> bool:
        """Whether every module the runtime needs can be imported here (checked without importing it)."""
        try:
            return all(importlib.util.find_spec(m) is not None for m in cls.requires)
        except ImportError:  # a dotted name whose parent is missing, or an import hook that refuses it
            return False

    @classmethod
    def usable(cls) -> bool:
        """Installed, and the hardware it needs is present (a GPU runtime overrides this)."""
        return cls.installed()

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
        """A zero-argument callable that runs the module once on a fixed input (shape in NCHW)."""

    def timer(self) -> float:
        return time.perf_counter()

    def measure(self, module: nn.Module, input_shape: tuple[int, ...], cache_key: str,
                protocol: Protocol) -> OpStats:
        run = self.runner(module, input_shape, cache_key)
        ref = self.reference(protocol)
        return self.settled(lambda: time_callable(run, protocol, self.timer, reference=ref), protocol)

    def measure_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> OpStats:
        return self.measure(build_op(spec), spec.input_shape(batch), spec.key, protocol)

    def prepare_op(self, spec: OpSpec, batch: int, protocol: Protocol) -> None:
        """Convert (into the cache) and load what ``measure_op`` times, without timing it: a table's
        conversion cost on its own (bench/profile_table.py)."""
        self.runner(build_op(spec), spec.input_shape(batch), spec.key)

    def info(self) -> dict:
        return {"backend": self.name, "threads": self.threads, "precision": self.precision}


def deployed(module: nn.Module) -> nn.Module:
    """The module as a trained one would be deployed: eval mode, every BatchNorm with a non-zero scale and
    running statistics of its own.

    A freshly built residual block starts its last BatchNorm at zero scale (shared/ops.py); a converter
    that folds BatchNorm into the convolution before it then sees an all-zero branch and removes it (LiteRT
    turned a 40x40 MBConv into an empty graph), and a quantiser would calibrate on a constant. Seeded, so
    the same module converts to the same file every time."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return module.eval()


def cache_path(cache_dir: Path, tag: str, suffix: str) -> Path:
    """Where a converted model lives: named by a hash of everything that decides its bytes."""
    return cache_dir / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}{suffix}"


def write_once(path: Path, write: Callable[[Path], None]) -> Path:
    """Make ``path`` with ``write(tmp)`` unless it exists; the rename means a concurrent or killed conversion
    never leaves a half-written file behind."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as e:  # a full cache disk: named as the failed write it is
        raise write_failure(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def calibration_inputs(shape: tuple[int, ...], count: int = 8, seed: int = 0) -> list:
    """The int8 calibration recipe shared by every int8 runtime: ``count`` standard-normal inputs, seeded.

    The same recipe for ops and for whole networks, so a network's requantisation at block edges is what
    its own calibration makes of it, not something the op table was quantised differently for."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]
