"""Runs benchmarks in a child process, one at a time, never in the API's event loop.

The child owns the thread pools (pinned through the environment before torch/onnxruntime start them)
and can be killed on cancel without leaving the server in a strange state; results stream back as JSON
lines one op at a time so the caller can store each as it lands.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from profiler_service.clock.burst import LABEL as NOMINAL_LABEL
from profiler_service.clock.burst import BurstStats
from profiler_service.measure.backends import available_backends
from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from shared.schemas import OpStats

__all__ = ["EngineConfig", "MeasureError", "available_backends", "measure_network", "measure_networks", "measure_ops"]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class MeasureError(RuntimeError):
    """The benchmark failed; ``label`` names the op or network it failed on, where the child said."""

    def __init__(self, message: str, label: str | None = None):
        super().__init__(message)
        self.label = label


@dataclass(frozen=True)
class EngineConfig:
    """How the benchmark child times a job: where (backend, threads), at which batch size, with which protocol
    and drift reference, the exported-model cache, and who takes the nominal burst.

    With ``on_nominal`` (and a protocol with a drift reference), the child first times the reference alone in
    a burst (clock/burst.py) and hands its quiet-speed estimate there, before any task's result."""

    backend: str
    threads: int
    batch: int
    protocol: Protocol
    cache_dir: str | Path
    reference: str = DEFAULT_REFERENCE
    on_nominal: Callable[[BurstStats], None] | None = None


def _never() -> bool:
    return False


def _run(tasks: list[list], engine: EngineConfig, *, on_result: Callable[[str, OpStats], None],
         should_cancel: Callable[[], bool] = _never) -> bool:
    """True when every task finished, False when cancelled; MeasureError when the child failed."""
    if engine.on_nominal is not None and engine.protocol.drift_reference:
        tasks = [["reference", NOMINAL_LABEL], *tasks]
    if engine.backend not in available_backends():
        raise MeasureError(f"backend {engine.backend!r} is not available; available: {available_backends()}")
    job = {"tasks": tasks, "backend": engine.backend, "threads": engine.threads, "batch": engine.batch,
           "protocol": asdict(engine.protocol), "cache_dir": str(engine.cache_dir), "reference": engine.reference}
    env = {**os.environ, **{k: str(engine.threads) for k in _THREAD_ENV}}
    # A fresh interpreter (not multiprocessing) so the child never re-imports the caller's __main__.
    proc = subprocess.Popen([sys.executable, "-m", "profiler_service.measure.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            if should_cancel():
                return False
            if not sel.select(0.2):
                continue
            line = proc.stdout.readline()
            if not line:
                proc.wait(10)
                tail = proc.stderr.read()[-2000:].strip()
                raise MeasureError(f"benchmark process died (exit code {proc.returncode}): {tail}")
            kind, label, payload = json.loads(line)
            if kind == "done":
                return True
            if kind == "error":
                raise MeasureError(f"{label}: {payload}" if label else payload, label)
            if kind == "result" and label == NOMINAL_LABEL and engine.on_nominal is not None:
                engine.on_nominal(BurstStats(**payload))
                continue
            on_result(label, OpStats(**payload))
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def measure_ops(keys: list[str], engine: EngineConfig, *, on_result: Callable[[str, OpStats], None],
                should_cancel: Callable[[], bool] = _never) -> bool:
    """Measure each op key in turn; ``on_result`` gets each as it lands."""
    return _run([["op", k] for k in keys], engine, on_result=on_result, should_cancel=should_cancel)


def measure_network(keys: list[str], engine: EngineConfig, *,
                    should_cancel: Callable[[], bool] = _never) -> OpStats:
    """Measure a whole network built from its ordered op keys, end to end, with the same protocol."""
    out: list[OpStats] = []
    done = _run([["net", "network", list(keys)]], engine, on_result=lambda _k, s: out.append(s),
                should_cancel=should_cancel)
    if not done:
        raise MeasureError("cancelled")
    return out[0]


def measure_networks(nets: dict[str, list[str]], engine: EngineConfig, *,
                     on_result: Callable[[str, OpStats], None], should_cancel: Callable[[], bool] = _never) -> bool:
    """Measure several whole networks (label -> ordered op keys) in one child, their windows in turns
    (``measure/tasks.py measure_networks``); ``on_result`` per network as each is done."""
    return _run([["nets", None, {label: list(keys) for label, keys in nets.items()}]], engine,
                on_result=on_result, should_cancel=should_cancel)
