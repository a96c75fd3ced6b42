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
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from profiler_service.measure.backends import available_backends, unavailable_reason
from profiler_service.measure.nominal import LABEL as NOMINAL_LABEL
from profiler_service.measure.nominal import BurstStats
from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from shared.schemas import OpStats

__all__ = ["MeasureError", "available_backends", "measure_network", "measure_networks", "measure_ops"]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class MeasureError(RuntimeError):
    """The benchmark failed; ``label`` names the op or network it failed on, where the child said."""

    def __init__(self, message: str, label: str | None = None):
        super().__init__(message)
        self.label = label


def _run(tasks: list[list], *, backend: str, threads: int, batch: int, protocol: Protocol,
         cache_dir: str | Path, on_result: Callable[[str, OpStats], None],
         should_cancel: Callable[[], bool] = lambda: False,
         on_nominal: Callable[[BurstStats], None] | None = None, reference: str = DEFAULT_REFERENCE) -> bool:
    """True when every task finished, False when cancelled; MeasureError when the child failed.

    With ``on_nominal`` (and a drift reference), the child first times the reference alone in a burst
    (measure/nominal.py) and hands its quiet-speed estimate there, before any task's result."""
    if on_nominal is not None and protocol.drift_reference:
        tasks = [["reference", NOMINAL_LABEL], *tasks]
    reason = unavailable_reason(backend)
    if reason:
        raise MeasureError(reason)
    job = {"tasks": tasks, "backend": backend, "threads": threads, "batch": batch,
           "protocol": asdict(protocol), "cache_dir": str(cache_dir), "reference": reference}
    env = {**os.environ, **{k: str(threads) for k in _THREAD_ENV}}
    # A fresh interpreter (not multiprocessing) so the child never re-imports the caller's __main__.
    # stderr goes to a file, not a pipe: a runtime's converter logs enough to fill a pipe nobody reads until
    # the child ends, and the child would then block on its next log line for ever
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "profiler_service.measure.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    failed: dict[str, str] = {}  # op key -> why the runtime could not measure it
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
                errors.seek(0)
                tail = errors.read()[-2000:].strip()
                raise MeasureError(f"benchmark process died (exit code {proc.returncode}): {tail}")
            kind, label, payload = json.loads(line)
            if kind == "op-failed":
                failed[label] = payload
                continue
            if kind == "done":
                if failed:
                    raise MeasureError(ops_failed_message(failed, backend), next(iter(failed)))
                return True
            if kind == "error":
                raise MeasureError(f"{label}: {payload}" if label else payload, label)
            if kind == "result" and label == NOMINAL_LABEL and on_nominal is not None:
                on_nominal(BurstStats(**payload))
                continue
            on_result(label, OpStats(**payload))
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        errors.close()


def ops_failed_message(failed: dict[str, str], backend: str, shown: int = 5) -> str:
    """One line per op the runtime could not measure (the first few), after the count."""
    lines = [f"{key}: {why}" for key, why in list(failed.items())[:shown]]
    more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
    return f"{len(failed)} op(s) could not be measured on {backend} (the others are stored): " + "; ".join(lines) + more


def measure_ops(keys: list[str], *, backend: str, threads: int, batch: int, protocol: Protocol,
                cache_dir: str | Path, on_result: Callable[[str, OpStats], None],
                should_cancel: Callable[[], bool] = lambda: False,
                on_nominal: Callable[[BurstStats], None] | None = None, reference: str = DEFAULT_REFERENCE) -> bool:
    """Measure each op key in turn; ``on_result`` gets each as it lands. An op the runtime cannot convert or
    run does not stop the others: they are measured and handed over, then MeasureError names every such op."""
    return _run([["op", k] for k in keys], backend=backend, threads=threads, batch=batch, protocol=protocol,
                cache_dir=cache_dir, on_result=on_result, should_cancel=should_cancel, on_nominal=on_nominal,
                reference=reference)


def measure_network(keys: list[str], *, backend: str, threads: int, batch: int, protocol: Protocol,
                    cache_dir: str | Path, should_cancel: Callable[[], bool] = lambda: False,
                    on_nominal: Callable[[BurstStats], None] | None = None,
                    reference: str = DEFAULT_REFERENCE) -> OpStats:
    """Measure a whole network built from its ordered op keys, end to end, with the same protocol."""
    out: list[OpStats] = []
    done = _run([["net", "network", list(keys)]], backend=backend, threads=threads, batch=batch,
                protocol=protocol, cache_dir=cache_dir, on_result=lambda _k, s: out.append(s),
                should_cancel=should_cancel, on_nominal=on_nominal, reference=reference)
    if not done:
        raise MeasureError("cancelled")
    return out[0]


def measure_networks(nets: dict[str, list[str]], *, backend: str, threads: int, batch: int, protocol: Protocol,
                     cache_dir: str | Path, on_result: Callable[[str, OpStats], None],
                     should_cancel: Callable[[], bool] = lambda: False,
                     on_nominal: Callable[[BurstStats], None] | None = None,
                     reference: str = DEFAULT_REFERENCE) -> bool:
    """Measure several whole networks (label -> ordered op keys) in one child, their windows in turns
    (``measure/tasks.py measure_networks``); ``on_result`` per network as each is done."""
    return _run([["nets", None, {label: list(keys) for label, keys in nets.items()}]], backend=backend, threads=threads,
                batch=batch, protocol=protocol, cache_dir=cache_dir, on_result=on_result,
                should_cancel=should_cancel, on_nominal=on_nominal, reference=reference)
