"""How one task is built and timed: an op alone, a whole network from its op keys, or several networks
whose windows take turns."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

from profiler_service.measure.backends import Backend
from profiler_service.measure.protocol import Protocol
from shared.arch import net_from_keys
from shared.schemas import OpStats
from shared.specs import parse_key


class TaskError(RuntimeError):
    """A task failed; ``label`` names what was being measured (an op key, a network's label)."""

    def __init__(self, label: str | None, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.label = label


def run_task(backend: Backend, task: list, batch: int, protocol: Protocol) -> Iterator[tuple[str, OpStats]]:
    """(label, statistics) per result of a task: one for an op, a network or the reference's burst, one per
    network for ``["nets", None, {label: keys}]``; a failure as TaskError naming what failed."""
    if task[0] == "nets":
        yield from measure_networks(backend, task[2], batch, protocol)
        return
    try:
        stats = measure_task(backend, task, batch, protocol)
    except TaskError:
        raise
    except Exception as e:  # noqa: BLE001 - reported to the parent, which owns error handling
        raise TaskError(task[1], e) from e
    yield task[1], stats


def measure_task(backend: Backend, task: tuple, batch: int, protocol: Protocol) -> OpStats:
    kind, label = task[0], task[1]
    if kind == "reference":  # the nominal-speed burst (clock/burst.py)
        from profiler_service.clock.burst import burst

        return burst(backend.reference(protocol), backend.timer, protocol, filler=backend.filler(protocol))
    if kind == "op":
        return backend.measure_op(parse_key(label), batch, protocol)
    return next(measure_networks(backend, {label: task[2]}, batch, protocol))[1]


def measure_networks(backend: Backend, nets: dict[str, list[str]], batch: int,
                     protocol: Protocol) -> Iterator[tuple[str, OpStats]]:
    """Each network (label -> ordered op keys) timed in ``NETWORK_WINDOWS`` windows, the windows taken in
    turns across the networks: every network's first window, then every one's second, and so on. Yields
    (label, statistics) as each network's last window lands.

    Why in turns: on this host the whole reference has stretches of ten seconds or so in which it alone
    slows by 5-10% while the networks beside it hold their speed (session 14, 96 px: three networks timed
    for 45 s in 0.8 s windows, the reference at 1.30-1.40 ms, then 1.50-1.56 ms for ten seconds, every
    network's ratio to it 6-8% under its usual). Three windows back to back sit in one such stretch, and a
    network job's figure was off by what the stretch did (30 unseen networks at 96 px: mean -4.8%, down
    to -11.6%, against a calibration spread of 1.9%). Taken in turns, a network's windows lie a whole round
    apart, and the middle one comes from outside a stretch that caught one of them."""
    protocol = network_protocol(protocol)
    windows: dict[str, list[OpStats]] = {label: [] for label in nets}
    for round_ in range(NETWORK_WINDOWS):
        for label, keys in nets.items():
            try:
                windows[label].append(_window(backend, keys, batch, protocol))
            except Exception as e:  # noqa: BLE001
                raise TaskError(label, e) from e
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
    one of them is kept whole (its statistics stay those of one window, not a blend). On this VM a 96 px
    network's ratio to its reference moved with a CV of 1.36% between single windows and 0.93% between
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
