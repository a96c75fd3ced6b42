"""What the benchmark child is asked and what it answers, as typed messages: one ``ChildJob`` as JSON on its
stdin, one ``ChildMessage`` per JSON line on its stdout."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from profiler_service.clock.burst import BurstStats
from profiler_service.measure.protocol import Protocol
from shared.schemas import OpStats

# ---- parent -> child: the tasks, in order ---------------------------------------------------------


class OpTask(BaseModel):
    """One op, timed alone; its result is labelled with its key."""

    kind: Literal["op"] = "op"
    key: str


class NetworkTask(BaseModel):
    """A whole network built from its ordered op keys, timed end to end."""

    kind: Literal["network"] = "network"
    label: str
    keys: list[str]


class NetworkBatchTask(BaseModel):
    """Several whole networks (label -> ordered op keys), their windows in turns (``measure/tasks.py``)."""

    kind: Literal["networks"] = "networks"
    nets: dict[str, list[str]]


class BurstTask(BaseModel):
    """The drift reference alone (``clock/burst.py``): the device's quiet speed, before the other tasks."""

    kind: Literal["burst"] = "burst"


Task = Annotated[OpTask | NetworkTask | NetworkBatchTask | BurstTask, Field(discriminator="kind")]


class ChildJob(BaseModel):
    tasks: list[Task]
    backend: str
    threads: int
    batch: int
    protocol: Protocol
    cache_dir: str
    reference: str  # the drift reference's name (measure/reference.py)


# ---- child -> parent: one line per message ----------------------------------------------------------


class Measured(BaseModel):
    """An op's or a network's statistics; ``label`` is the op key or the network's label."""

    kind: Literal["measured"] = "measured"
    label: str
    stats: OpStats


class BurstMeasured(BaseModel):
    kind: Literal["burst"] = "burst"
    stats: BurstStats


class Failed(BaseModel):
    """The job stopped here; ``label`` names the op or network it failed on, where there was one."""

    kind: Literal["failed"] = "failed"
    label: str | None = None
    error: str


class OpFailed(BaseModel):
    """One op the runtime could not convert or run; the job goes on with the other ops."""

    kind: Literal["op-failed"] = "op-failed"
    label: str
    error: str


class Finished(BaseModel):
    """Every task done."""

    kind: Literal["finished"] = "finished"


ChildMessage = Annotated[Measured | BurstMeasured | Failed | OpFailed | Finished, Field(discriminator="kind")]
CHILD_MESSAGE: TypeAdapter[Measured | BurstMeasured | Failed | OpFailed | Finished] = TypeAdapter(ChildMessage)
