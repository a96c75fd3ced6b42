"""The measurement protocol: warm up, then time until the median is known to a set precision.

A latency is a statistic, not a number. We stop when the 95% confidence half-width of the median
(distribution-free, from order statistics) is within ``rel_ci`` of the median, or when the time budget
is spent, whichever comes first; ``min_runs`` keeps the tails meaningful.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from shared.schemas import OpStats


@dataclass(frozen=True)
class Protocol:
    rel_ci: float = 0.02
    budget_s: float = 3.0
    warmup_runs: int = 10
    warmup_s: float = 0.1
    min_runs: int = 20
    max_runs: int = 5000
    # "network": an op is timed the way it runs inside a network (see measure/context.py);
    # "isolated": the op alone, call overhead and graph-edge reorders included.
    op_context: str = "network"
    # A measurement whose p90/p10 - 1 exceeds max_spread was disturbed (another process took the core
    # for part of it); it is repeated after a pause, up to `retries` times, keeping the steadiest.
    max_spread: float = 0.3
    # A measurement whose drift reference ran more than max_slowdown over the device's quiet speed
    # (quiet_ref_ms: the nominal, set per job by the worker) was timed while another tenant held the
    # machine; it is repeated too. The correction cannot mend it: contention slows the reference more
    # than the network beside it (a 96 px validation run: networks timed at 1.15-1.53x slow-down came out
    # 2-9% fast after correction, the quiet ones -1% on average). Waits double from retry_wait_s.
    max_slowdown: float = 0.10
    quiet_ref_ms: float | None = None
    retries: int = 3
    retry_wait_s: float = 1.0
    # The drift reference (measure/reference.py) is timed between samples and its median returned as
    # ref_ms, the device's speed meanwhile. It runs once the op's samples since its last run add up to
    # its runs' duration (1 + ref_warm_runs of them), and at least min_ref_runs times. Each timed reference
    # run follows ref_warm_runs untimed ones, and the op then runs op_rewarm_runs times untimed: each
    # evicts the other's working set. Measured on 2-core VMs, one untimed run
    # was not enough for the reference after a 160 px network: it read 4-12% over its nominal, so every
    # served network came out that much under the device's speed; after three it read -1..+1%. A 0.3 ms
    # network timed right after the reference, not re-warmed, read +7-14%. 0 and 0 is the cold interleave.
    drift_reference: bool = True
    min_ref_runs: int = 15
    ref_warm_runs: int = 3
    op_rewarm_runs: int = 1
    # The nominal burst (clock/burst.py) times the reference alone at least this long.
    nominal_s: float = 20.0

    @property
    def ref_runs(self) -> int:
        """Reference runs per timed one (the untimed warm runs and the timed run)."""
        return 1 + self.ref_warm_runs


def median_ci_halfwidth(sorted_ms: np.ndarray) -> float:
    """Half-width of the distribution-free 95% CI of the median (binomial order statistics)."""
    n = len(sorted_ms)
    if n < 6:
        return math.inf
    d = 1.96 * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - d)))
    hi = min(n - 1, int(math.ceil(n / 2 + d)))
    return float(sorted_ms[hi] - sorted_ms[lo]) / 2


def summarize(samples_ms: list[float] | np.ndarray, ref_ms: list[float] | None = None,
              paired: list[int] | None = None) -> OpStats:
    """Statistics of the samples; ``ref_ms`` is the reference's median, or with ``paired`` (for each sample,
    the index of the reference run timed next to it) the reference the samples were timed against:
    ``median(samples) / median(sample_i / ref[paired_i])``. On a host whose speed switches between two
    modes every few seconds (seen on these VMs: a reference at 4.2 ms for a few seconds, 6.1 ms for the
    next ten), the op's median and the reference's median may land in different modes, a 40% error; the
    median of each sample over the reference beside it does not mix the modes. On a steady host the two
    readings agree."""
    a = np.asarray(samples_ms, dtype=np.float64)
    median = float(np.median(a))
    ref = None
    if ref_ms:
        ref = float(np.median(ref_ms))
        if paired is not None and min(ref_ms) > 0:
            ref = median / float(np.median(a / np.asarray(ref_ms, dtype=np.float64)[np.asarray(paired)]))
    return OpStats(median_ms=median, mean_ms=float(a.mean()), std_ms=float(a.std(ddof=1)) if len(a) > 1
                   else 0.0, p10_ms=float(np.percentile(a, 10)), p90_ms=float(np.percentile(a, 90)),
                   count=len(a), ref_ms=ref)


def _converged(samples: list[float], protocol: Protocol) -> bool:
    if len(samples) < protocol.min_runs:
        return False
    a = np.sort(np.asarray(samples))
    med = a[len(a) // 2]
    return median_ci_halfwidth(a) <= protocol.rel_ci * med


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while timing, as ``timeit`` does. In a benchmark child that has
    imported torch and onnxruntime a full collection walks the whole heap: 100-200 ms, logged every 2-3 s
    in a profiling job (each run's output list is a tracked object). A timed run it lands in, of the op or
    of the drift reference, carries that pause."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_callable(fn: Callable[[], object], protocol: Protocol,
                  timer: Callable[[], float] = time.perf_counter,
                  before: Callable[[], object] | None = None,
                  reference: Callable[[], object] | None = None,
                  calls: list[bool] | None = None) -> OpStats:
    """Time ``fn`` per the protocol. ``timer`` returns seconds (a CUDA backend passes a synchronising one);
    ``before`` runs untimed ahead of every timed call (to set the cache state a network would leave);
    ``reference`` is timed between samples (about as much time as ``fn`` gets) into ``ref_ms``.
    ``calls``, when given, gets one entry per ``fn()`` call in order, True for a timed one (a profiler
    that records every run, such as onnxruntime's, picks the timed runs' figures with it)."""
    with gc_paused():
        return _time_loop(fn, protocol, timer, before, reference, calls)


def _time_loop(fn: Callable[[], object], protocol: Protocol, timer: Callable[[], float],
               before: Callable[[], object] | None, reference: Callable[[], object] | None,
               calls: list[bool] | None) -> OpStats:
    log = calls if calls is not None else []

    def run(timed: bool) -> None:
        fn()
        log.append(timed)

    t_end = timer() + protocol.warmup_s
    for i in range(10**9):
        run(False)
        if reference is not None and i < protocol.warmup_runs:
            reference()
        if i + 1 >= protocol.warmup_runs and timer() >= t_end:
            break
    samples: list[float] = []
    ref: list[float] = []
    paired: list[int] = []  # per sample, the reference run timed next to it (the one before; the first's after)
    deadline = time.perf_counter() + protocol.budget_s
    next_check = protocol.min_runs
    owed = 0.0  # fn time since the last reference run, in ms
    if reference is not None:
        for _ in range(protocol.op_rewarm_runs):  # the warm-up ended on a reference run
            run(False)
    while len(samples) < protocol.max_runs:
        if before is not None:
            before()
        t0 = timer()
        run(True)
        t1 = timer()
        samples.append((t1 - t0) * 1e3)
        paired.append(max(len(ref) - 1, 0))
        owed += samples[-1]
        if reference is not None and (not ref or owed >= protocol.ref_runs * ref[-1]):
            for _ in range(protocol.ref_warm_runs):
                reference()
            t1 = timer()
            reference()
            ref.append((timer() - t1) * 1e3)
            owed = 0.0
            for _ in range(protocol.op_rewarm_runs):
                if before is not None:
                    before()
                run(False)
        n = len(samples)
        if n >= next_check:
            # Checking costs a sort; a geometric schedule keeps it off the hot loop.
            if (reference is None or len(ref) >= protocol.min_ref_runs) and _converged(samples, protocol):
                break
            next_check = n + max(5, n // 10)
        # The budget bounds a slow op (never fewer than 5 samples, so a median exists).
        if n >= 5 and time.perf_counter() >= deadline:
            break
    return summarize(samples, ref, paired)


def spread(stats: OpStats) -> float:
    return stats.p90_ms / stats.p10_ms - 1 if stats.p10_ms > 0 else float("inf")


def slowdown(stats: OpStats, protocol: Protocol) -> float:
    """The reference's median during the measurement over its quiet speed (1.0 without either)."""
    if not protocol.quiet_ref_ms or not stats.ref_ms:
        return 1.0
    return stats.ref_ms / protocol.quiet_ref_ms


def disturbance(stats: OpStats, protocol: Protocol) -> float:
    """How far a result lies past the protocol's bounds, in units of each bound: at most 1 is steady."""
    return max(spread(stats) / protocol.max_spread, (slowdown(stats, protocol) - 1) / protocol.max_slowdown)


class Settler:
    """Runs a measurement until one result is steady (spread and slow-down within bounds), else keeps the
    least disturbed. Lives as long as a benchmark child: after ``STUCK_AFTER`` measurements in a row stayed
    slowed through all their retries, the device is busy for a while, not briefly disturbed, and waiting
    out each op would only stretch the job; slow-down retries pause until a result comes in unslowed."""

    STUCK_AFTER = 3

    def __init__(self) -> None:
        self.stuck = 0

    def __call__(self, measure: Callable[[], OpStats], protocol: Protocol) -> OpStats:
        patient = self.stuck < self.STUCK_AFTER
        best: OpStats | None = None
        for attempt in range(protocol.retries + 1):
            if attempt:
                time.sleep(protocol.retry_wait_s * 2 ** (attempt - 1))
            stats = measure()
            if best is None or disturbance(stats, protocol) < disturbance(best, protocol):
                best = stats
            if spread(stats) <= protocol.max_spread and (not patient or disturbance(stats, protocol) <= 1):
                break
        slowed = slowdown(best, protocol) - 1 > protocol.max_slowdown
        self.stuck = self.stuck + 1 if slowed else 0
        return best
