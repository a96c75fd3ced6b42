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
    return backend.measure(net_from_keys(keys), first.input_shape(batch), f"net:{digest}", network_protocol(protocol))


def network_protocol(protocol: Protocol) -> Protocol:
    """A whole network is the ground truth that calibration and validation rest on, and there are few
    of them: at least 40 samples and 40 reference runs (about a second at 224 px on a CPU core), which
    halves the sampling noise of the drift-corrected figure against 15. The budget still bounds it."""
    return dataclasses.replace(protocol, min_runs=max(protocol.min_runs, NETWORK_MIN_RUNS),
                               min_ref_runs=max(protocol.min_ref_runs, NETWORK_MIN_RUNS))


NETWORK_MIN_RUNS = 40
