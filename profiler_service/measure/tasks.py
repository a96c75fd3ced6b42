"""How one task is built and timed: an op alone, a whole network from its op keys, or several networks
whose windows take turns."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from profiler_service.measure.backends import Backend
from profiler_service.measure.messages import (
    BurstMeasured,
    BurstTask,
    Measured,
    NetworkBatchTask,
    NetworkTask,
    OpTask,
    Task,
)
from profiler_service.measure.protocol import Protocol
from shared.arch import net_from_keys
from shared.schemas import OpStats
from shared.specs import parse_key

StatsT = TypeVar("StatsT", bound=OpStats)


class TaskError(RuntimeError):
    """A task failed; ``label`` names what was being measured (an op key, a network's label)."""

    def __init__(self, label: str | None, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.label = label


def run_task(backend: Backend, task: Task, batch: int, protocol: Protocol) -> Iterator[Measured | BurstMeasured]:
    """The messages a task answers: one for an op, a network or the burst, one per network of a batch as each
    lands; a failure as TaskError naming what failed."""
    match task:
        case BurstTask():
            from profiler_service.clock.burst import burst

            yield BurstMeasured(stats=_labelled(None, lambda: burst(backend.reference(protocol), backend.timer,
                                                                     protocol, filler=backend.filler(protocol))))
        case OpTask(key=key):
            yield Measured(label=key, stats=_labelled(key, lambda: backend.measure_op(parse_key(key), batch,
                                                                                       protocol)))
        case NetworkTask(label=label, keys=keys):
            yield from (Measured(label=net, stats=stats)
                        for net, stats in networks_in_turns(backend, {label: keys}, batch, protocol))
        case NetworkBatchTask(nets=nets):
            yield from (Measured(label=net, stats=stats)
                        for net, stats in networks_in_turns(backend, nets, batch, protocol))


def _labelled(label: str | None, measure: Callable[[], StatsT]) -> StatsT:
    try:
        return measure()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which owns error handling
        raise TaskError(label, e) from e


def networks_in_turns(backend: Backend, nets: dict[str, list[str]], batch: int,
                      protocol: Protocol) -> Iterator[tuple[str, OpStats]]:
    """Each network (label -> ordered op keys) timed in ``NETWORK_WINDOWS`` windows, the windows taken in
    turns across the networks: every network's first window, then every one's second, and so on. Yields
    (label, statistics) as each network's last window lands.

    Why in turns: a virtual machine's host has stretches of ten seconds or so in which the whole reference
    alone slows by 5-10% while the networks beside it hold their speed (at 96 px, three networks timed for
    45 s in 0.8 s windows: the reference at 1.30-1.40 ms, then 1.50-1.56 ms for ten seconds, every
    network's ratio to it 6-8% under its usual). Three windows back to back sit in one such stretch, and a
    network job's figure was off by what the stretch did (30 unseen networks at 96 px: mean -4.8%, down
    to -11.6%, against a calibration spread of 1.9%). Taken in turns, a network's windows lie a whole round
    apart, and the middle one comes from outside a stretch that caught one of them."""
    protocol = network_protocol(protocol)
    windows: dict[str, list[OpStats]] = {label: [] for label in nets}
    for round_ in range(NETWORK_WINDOWS):
        for label, keys in nets.items():
            windows[label].append(_labelled(label, lambda keys=keys: _window(backend, keys, batch, protocol)))
            if round_ == NETWORK_WINDOWS - 1:
                yield label, middle_window(windows.pop(label))


def _window(backend: Backend, keys: list[str], batch: int, protocol: Protocol) -> OpStats:
    """One window: the network in a fresh session with its own warm-up (the export is cached by its keys)."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    shape = parse_key(keys[0]).input_shape(batch)
    return backend.measure(net_from_keys(keys), shape, f"net:{digest}", protocol)


def middle_window(windows: list[OpStats]) -> OpStats:
    """The window whose served figure (median over the reference beside it) is the median of the windows'.

    A network is timed in ``NETWORK_WINDOWS`` windows, each in a fresh session with its own warm-up, and
    one of them is kept whole (its statistics stay those of one window, not a blend). On a virtual machine a
    96 px network's ratio to its reference moved with a CV of 1.36% between single windows and 0.93% between
    medians of three (6 nets x 12 windows); the windows' runs are no steadier for being more, since the
    ratio moves with the host's state from one second to the next."""
    def served(s: OpStats) -> float:
        return s.median_ms / s.ref_ms if s.ref_ms else s.median_ms

    return sorted(windows, key=served)[len(windows) // 2]


def network_protocol(protocol: Protocol) -> Protocol:
    """A whole network is the ground truth that calibration and validation rest on, and there are few
    of them: at least 40 samples and 40 reference runs (about a second at 224 px on a CPU core), which
    halves the sampling noise of the drift-corrected figure against 15. The budget still bounds it."""
    return dataclasses.replace(protocol, min_runs=max(protocol.min_runs, NETWORK_MIN_RUNS),
                               min_ref_runs=max(protocol.min_ref_runs, NETWORK_MIN_RUNS))


NETWORK_MIN_RUNS = 40
NETWORK_WINDOWS = 3
