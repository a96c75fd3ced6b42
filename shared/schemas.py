"""Pydantic wire schemas of the REST API (DESIGN.md): the fields named there are fixed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

# Runtimes a worker may offer (each an optional install but onnxruntime and torch); a table of an int8 runtime
# says dtype "int8".
Backend = Literal["onnxruntime", "onnxruntime-int8", "openvino", "litert", "litert-int8", "torch", "torch-cuda"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class OpStats(BaseModel):
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    count: int
    # median of the device's reference workload, timed interleaved with this measurement (drift control);
    # where set, the statistics above are scaled to the device's nominal speed (profiler_service drift.py)
    ref_ms: float | None = None
    # the nominal reference latency the statistics are scaled to (the device's quiet speed, versioned per
    # device/backend/threads): figures with the same nominal_ms share one clock
    nominal_ms: float | None = None


class JobCreate(BaseModel):
    """Profile a whole space, or an explicit list of keys."""

    space: str | None = None
    resolution: int | None = Field(default=None, ge=8, le=1024)
    width_mult: float | None = Field(default=None, ge=0.1, le=4.0)
    num_classes: int | None = Field(default=None, ge=1, le=100_000)
    keys: list[str] | None = Field(default=None, min_length=1, max_length=5000)
    backend: Backend = "onnxruntime"
    threads: int = Field(default=1, ge=1, le=256)
    batch: int = Field(default=1, ge=1, le=256)
    table_id: str | None = Field(default=None, description="add to this table instead of the default one")

    @model_validator(mode="after")
    def _space_xor_keys(self) -> JobCreate:
        if (self.space is None) == (self.keys is None):
            raise ValueError("give exactly one of 'space' or 'keys'")
        return self


class JobOut(BaseModel):
    id: str
    status: JobStatus
    done: int
    total: int
    table_id: str | None
    error: str | None = None
    kind: str = "profile"
    created_at: datetime | None = None
    finished_at: datetime | None = None


class TableMeta(BaseModel):
    id: str
    device: str
    backend: str
    threads: int
    batch: int
    dtype: str
    updated_at: datetime | None
    etag: str
    calibration: dict | None = None


class TableSummary(TableMeta):
    entries: int


class TableOut(TableMeta):
    entries: dict[str, OpStats]


class LookupRequest(BaseModel):
    keys: list[str] = Field(min_length=1, max_length=10_000)


class LookupResponse(BaseModel):
    found: dict[str, OpStats]
    missing: list[str]


class ImportResponse(BaseModel):
    id: str
    entries: int


class ArchIn(BaseModel):
    space: str
    resolution: int = Field(ge=8, le=1024)
    width_mult: float = Field(default=1.0, ge=0.1, le=4.0)
    # None: the space's own default (10 for proxyless-cifar, 1000 for proxyless-mobile)
    num_classes: int | None = Field(default=None, ge=1, le=100_000)
    choices: list[str] = Field(min_length=1, max_length=1000)


class NetworkCreate(BaseModel):
    """The architecture as our ARCH_JSON, or as a ProxylessNAS / once-for-all ``net.config``."""

    table_id: str
    arch: ArchIn | None = None
    net_config: dict | None = Field(default=None, description="a proxyless-mobile net.config instead of arch")
    resolution: int | None = Field(default=None, ge=8, le=1024,
                                   description="input size for a net.config that does not carry one (224)")

    @model_validator(mode="after")
    def _arch_xor_net_config(self) -> NetworkCreate:
        if (self.arch is None) == (self.net_config is None):
            raise ValueError("give exactly one of 'arch' or 'net_config'")
        return self


class NetworkOut(BaseModel):
    id: str
    status: JobStatus
    table_id: str
    arch: dict
    measured: OpStats | None = None
    predicted_ms: float | None = None
    calibrated_ms: float | None = None
    missing: list[str] = Field(default_factory=list)
    error: str | None = None


class DeviceOut(BaseModel):
    name: str
    fingerprint: dict
    backends: list[str]


class NominalBurstOut(BaseModel):
    """One burst of the drift reference alone, and the nominal it left."""

    at: datetime
    burst_ms: float  # this burst's quiet-speed estimate
    pooled_ms: float  # the worker's recent bursts pooled: what it offered the store
    nominal_ms: float  # the nominal after it
    version: int
    others_cores: float | None = None
    shared: bool  # other processes kept the device busy meanwhile (or the machine did not say)


class ClockOut(BaseModel):
    """One configuration's clock: the nominal its figures are scaled to, and the bursts behind it, newest
    first. ``spread_pct``: how far the last hour's unshared bursts lay apart ((max - min) / median, in %),
    the device's own floor under two latencies read minutes apart; None with fewer than two."""

    backend: str
    threads: int
    reference: str
    nominal_ms: float
    version: int
    source: str
    updated_at: datetime
    bursts: list[NominalBurstOut]
    spread_pct: float | None = None
    spread_bursts: int = 0


class SpaceOut(BaseModel):
    name: str
    description: str
    defaults: dict
    layers: int
    candidates: list[list[str]]


class CalibrationCreate(BaseModel):
    """Fit from networks already measured (``network_ids``: answered at once), or have the device draw
    ``samples`` random networks of a space from ``seed``, measure them and fit (a job: 202 + JobOut)."""

    network_ids: list[str] | None = Field(default=None, min_length=3, max_length=1000)
    samples: int | None = Field(default=None, ge=3, le=500)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    space: str | None = None
    resolution: int | None = Field(default=None, ge=8, le=1024)
    width_mult: float | None = Field(default=None, ge=0.1, le=4.0)
    num_classes: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _ids_xor_samples(self) -> CalibrationCreate:
        if (self.network_ids is None) == (self.samples is None):
            raise ValueError("give exactly one of 'network_ids' or 'samples'")
        if self.samples is not None and self.space is None:
            raise ValueError("'samples' needs 'space' (and usually 'resolution'): the networks are drawn from it")
        return self


class DeviceSummary(BaseModel):
    """A device of the fleet (every worker sharing this database), for the overview page."""

    name: str
    fingerprint: dict
    tables: int
    entries: int
    updated_at: datetime | None = Field(description="the latest update of any of its tables")


class HeatmapLayer(BaseModel):
    index: int
    label: str
    ms: list[float | None] = Field(description="per op of `ops`: its latency; null where it is no candidate "
                                               "here or the table lacks it (then listed in `missing`)")
    keys: list[str | None] = Field(description="per op: its table key; null where it is no candidate or zero")


class TableHeatmap(BaseModel):
    """A table seen through one search space: searchable layers x candidate ops, in ms."""

    table_id: str
    space: str
    resolution: int
    width_mult: float
    num_classes: int
    resolutions: list[int] = Field(description="input resolutions this table holds a stem for")
    ops: list[str]
    layers: list[HeatmapLayer]
    fixed: dict[str, float | None] = Field(description="the space's fixed ops (stem, head): key -> ms")
    missing: list[str]
    needed: int
