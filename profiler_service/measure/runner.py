"""Runs benchmarks in a child process, one at a time, never in the API's event loop.

The child owns the thread pools (pinned through the environment before torch/onnxruntime start them)
and can be killed on cancel without leaving the server in a strange state; results stream back as typed
messages (``measure/messages.py``), one JSON line per op, so the caller can store each as it lands.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profiler_service.clock.burst import BurstStats
from profiler_service.measure.backends import available_backends, unavailable_reason
from profiler_service.measure.messages import (
    CHILD_MESSAGE,
    BurstMeasured,
    BurstTask,
    ChildJob,
    Failed,
    Finished,
    Measured,
    NetworkBatchTask,
    NetworkTask,
    OpFailed,
    OpTask,
    Task,
)
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


def _run(tasks: list[Task], engine: EngineConfig, *, on_result: Callable[[str, OpStats], None],
         should_cancel: Callable[[], bool] = _never) -> bool:
    """True when every task finished, False when cancelled; MeasureError when the child failed."""
    if engine.on_nominal is not None and engine.protocol.drift_reference:
        tasks = [BurstTask(), *tasks]
    reason = unavailable_reason(engine.backend)
    if reason:
        raise MeasureError(reason)
    job = ChildJob(tasks=tasks, backend=engine.backend, threads=engine.threads, batch=engine.batch,
                   protocol=engine.protocol, cache_dir=str(engine.cache_dir), reference=engine.reference)
    env = {**os.environ, **{k: str(engine.threads) for k in _THREAD_ENV}}
    # A fresh interpreter (not multiprocessing) so the child never re-imports the caller's __main__.
    # stderr goes to a file, not a pipe: a runtime's converter logs enough to fill a pipe nobody reads until
    # the child ends, and the child would then block on its next log line for ever
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "profiler_service.measure.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
    proc.stdin.write(job.model_dump_json())
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
            match CHILD_MESSAGE.validate_json(line):
                case OpFailed(label=label, error=error):
                    failed[label] = error
                case Finished():
                    if failed:
                        raise MeasureError(ops_failed_message(failed, engine.backend), next(iter(failed)))
                    return True
                case Failed(label=label, error=error):
                    raise MeasureError(f"{label}: {error}" if label else error, label)
                case BurstMeasured(stats=stats):
                    if engine.on_nominal is not None:
                        engine.on_nominal(stats)
                case Measured(label=label, stats=stats):
                    on_result(label, stats)
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


def measure_ops(keys: list[str], engine: EngineConfig, *, on_result: Callable[[str, OpStats], None],
                should_cancel: Callable[[], bool] = _never) -> bool:
    """Measure each op key in turn; ``on_result`` gets each as it lands. An op the runtime cannot convert or
    run does not stop the others: they are measured and handed over, then MeasureError names every such op."""
    return _run([OpTask(key=k) for k in keys], engine, on_result=on_result, should_cancel=should_cancel)


def measure_network(keys: list[str], engine: EngineConfig, *,
                    should_cancel: Callable[[], bool] = _never) -> OpStats:
    """Measure a whole network built from its ordered op keys, end to end, with the same protocol."""
    out: list[OpStats] = []
    done = _run([NetworkTask(label="network", keys=list(keys))], engine, on_result=lambda _k, s: out.append(s),
                should_cancel=should_cancel)
    if not done:
        raise MeasureError("cancelled")
    return out[0]


def measure_networks(nets: dict[str, list[str]], engine: EngineConfig, *,
                     on_result: Callable[[str, OpStats], None], should_cancel: Callable[[], bool] = _never) -> bool:
    """Measure several whole networks (label -> ordered op keys) in one child, their windows in turns
    (``measure/tasks.py networks_in_turns``); ``on_result`` per network as each is done."""
    return _run([NetworkBatchTask(nets={label: list(keys) for label, keys in nets.items()})], engine,
                on_result=on_result, should_cancel=should_cancel)
