"""How one task is built and timed: an op alone, or a whole network from its op keys."""

from __future__ import annotations

import dataclasses
import hashlib

from profiler_service.measure.backends import Backend
from profiler_service.measure.protocol import Protocol
from shared.arch import net_from_keys
from shared.schemas import OpStats
from shared.specs import parse_key


def measure_task(backend: Backend, task: tuple, batch: int, protocol: Protocol) -> OpStats:
    kind, label = task[0], task[1]
    if kind == "reference":  # the nominal-speed burst (measure/nominal.py)
        from profiler_service.measure.nominal import burst

        return burst(backend.reference(protocol), backend.timer, protocol, filler=backend.filler(protocol))
    if kind == "op":
        return backend.measure_op(parse_key(label), batch, protocol)
    keys = task[2]
    first = parse_key(keys[0])
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    module, shape, net_protocol = net_from_keys(keys), first.input_shape(batch), network_protocol(protocol)
    windows = [backend.measure(module, shape, f"net:{digest}", net_protocol) for _ in range(NETWORK_WINDOWS)]
    return middle_window(windows)


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
