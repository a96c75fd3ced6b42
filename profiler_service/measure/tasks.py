"""How one task is built and timed: an op alone, or a whole network from its op keys."""

from __future__ import annotations

import hashlib

from profiler_service.measure.backends import Backend
from profiler_service.measure.protocol import Protocol
from shared.arch import net_from_keys
from shared.schemas import OpStats
from shared.specs import parse_key


def measure_task(backend: Backend, task: tuple, batch: int, protocol: Protocol) -> OpStats:
    kind, label = task[0], task[1]
    if kind == "op":
        return backend.measure_op(parse_key(label), batch, protocol)
    keys = task[2]
    first = parse_key(keys[0])
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return backend.measure(net_from_keys(keys), first.input_shape(batch), f"net:{digest}", protocol)
