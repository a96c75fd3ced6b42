"""A burst: the drift reference timed alone, interleaved as in a measurement, read at the median of its
blocks when nothing else ran, at their lower quartile when something did.

Results are stored as ``stats * nominal_ms / ref_ms`` (``clock/drift.py``). For the figures a table
serves to be the device's real speed, ``nominal_ms`` must be the reference's latency when nothing else
runs: not its first observation, which on a shared machine may fall in a slow stretch (one table served
54.9 ms for a network that ran at 43.0 ms). So each worker, before its first job on a configuration and
reference, times the reference in a dedicated burst of short blocks and reads the speed from the block
medians (below): a block's median, not a single run, is a speed without the luck of one fast run.

How long and which quantile: a virtual machine's host wanders by itself. With nothing else running, the
reference's speed has been seen to move ~4% over tens of seconds: eight ~11 s bursts gave whole-burst
medians of 3.49-3.76 ms and fastest blocks of 3.31-3.65 ms. The fastest block of a 5 s burst was therefore
both early (2-5% under the speed a network shows over a minute, so every served figure was ~5% fast) and
unrepeatable (two fresh services 7% apart). The burst lasts at least ``protocol.nominal_s`` (20 s by
default: longer than the wander's period). Where no other process shared it, its blocks' median is the
device's speed, wander included, as a network measured or timed directly then sees it; where one did, the
lower quartile of its block medians, which a quarter of the burst in quiet blocks still reaches when the
rest is busy (``quiet_speed``). The store takes a quieter estimate at once, and a slower one only from a
burst that no other process shared (``BurstStats.others_cores``, ``clock/drift.py``): then the device
itself runs slower now.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from profiler_service.clock.tenants import OthersWatch, unshared
from profiler_service.measure.protocol import Protocol
from shared.schemas import OpStats

BLOCK_RUNS = 15
BLOCKS = 12  # at least, however short nominal_s
WARMUP_RUNS = 10
QUANTILE = 0.25


class BurstStats(OpStats):
    """A burst's statistics, its block medians, and how many cores other processes kept busy meanwhile
    (None: unknown)."""

    others_cores: float | None = None
    blocks_ms: list[float] = []


class RecentBursts:
    """The quiet speed over the bursts of the last ``window_s``, pooled over their blocks: the median of the
    blocks of the bursts no other process shared, else the lower quartile of all.

    One burst is 20 s of a host that may swing: with nothing else running, 2 s stretches of the reference
    have run 5.0-6.6 ms, and successive 2 s bursts read 0.48-0.67 ms at 32 px. A nominal set from the
    latest burst alone would follow every swing, rescaling every table back and forth; pooled over a few
    bursts it moves when the device has been slower for minutes, not seconds.

    Which statistic: with nothing else running the spread of the blocks is the device's own (the host's
    wander), and a network measured then, or timed directly, sees all of it: its median is the device's
    speed, and the lower quartile sits ~2% under it (the blocks' median was seen 1.8-2.4% over their lower
    quartile, and every network served from the quartile 3-8% under its direct median). Only where other
    processes shared a burst are its slow blocks theirs, and the lower quartile keeps to the quiet
    stretches.
    """

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._bursts: list[tuple[float, list[float], bool]] = []

    def add(self, at_s: float, stats: BurstStats) -> float:
        self._bursts = [b for b in self._bursts if at_s - b[0] <= self.window_s]
        self._bursts.append((at_s, list(stats.blocks_ms) or [stats.median_ms], unshared(stats.others_cores)))
        alone = [m for _, blocks, ok in self._bursts if ok for m in blocks]
        pool = alone or [m for _, blocks, _ in self._bursts for m in blocks]
        return quiet_speed(pool, alone=bool(alone))


def quiet_speed(blocks_ms: list[float] | np.ndarray, *, alone: bool) -> float:
    """The device's speed from block medians: their median where the device was ours alone, else their lower
    quartile (the stretches the other processes left quiet). One block median itself, not an interpolation."""
    return float(np.quantile(blocks_ms, 0.5 if alone else QUANTILE, method="lower"))


def quiet_ms(samples_ms: np.ndarray | list[float]) -> float:
    """Raw runs read as a shared burst is: the lower quartile of the medians of consecutive blocks, the
    speed of the quieter stretches (the plain median under one block)."""
    medians = block_medians(samples_ms)
    if len(medians) == 0:
        return float(np.median(samples_ms))
    return quiet_speed(medians, alone=False)


def block_medians(samples_ms: np.ndarray | list[float], block: int = BLOCK_RUNS) -> np.ndarray:
    a = np.asarray(samples_ms, dtype=np.float64)
    n = len(a) // block
    return np.median(a[: n * block].reshape(n, block), axis=1)


def burst(reference: Callable[[], object], timer: Callable[[], float], protocol: Protocol,
          filler: Callable[[], object] | None = None) -> BurstStats:
    """Time the reference for at least ``BLOCKS`` blocks and ``protocol.nominal_s`` seconds, in whole blocks;
    ``median_ms`` is the quiet-speed estimate, the rest describe the burst.

    With ``filler`` (a small network standing in for the op being measured), every timed reference run
    sits where it sits inside a measurement (``protocol.time_callable``): after other work worth the
    time of its untimed and timed runs, then after ``protocol.ref_warm_runs`` untimed reference runs.
    The correction divides by the reference timed that way, so its nominal must be read that
    way too: timed back to back, the reference ran ~5% faster than interleaved even on a quiet machine,
    and every served figure came out ~5% under the device's speed.
    """
    for _ in range(WARMUP_RUNS):
        reference()
    samples: list[float] = []
    others = OthersWatch()
    start = timer()
    while len(samples) < BLOCKS * BLOCK_RUNS or len(samples) % BLOCK_RUNS or timer() - start < protocol.nominal_s:
        if filler is not None:
            spent, due = 0.0, protocol.ref_runs * (samples[-1] if samples else 0.0)
            while True:
                t0 = timer()
                filler()
                spent += (timer() - t0) * 1e3
                if spent >= due:
                    break
            for _ in range(protocol.ref_warm_runs):
                reference()
        t0 = timer()
        reference()
        samples.append((timer() - t0) * 1e3)
    a = np.asarray(samples)
    blocks, cores = block_medians(a), others.cores()
    q = quiet_speed(blocks, alone=unshared(cores))
    return BurstStats(median_ms=q, mean_ms=float(a.mean()), std_ms=float(a.std(ddof=1)),
                      p10_ms=float(np.percentile(a, 10)), p90_ms=float(np.percentile(a, 90)), count=len(a),
                      ref_ms=q, others_cores=cores, blocks_ms=blocks.tolist())
