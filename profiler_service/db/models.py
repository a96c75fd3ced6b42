"""Typed ORM models. The initial Alembic revision mirrors these; a test checks they agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on the way out; SQLite keeps no zone, so it is put back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("name", name="uq_devices_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Table(Base):
    __tablename__ = "tables"
    __table_args__ = (UniqueConstraint("device_id", "backend", "threads", "batch", "dtype",
                                       name="uq_tables_config"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    backend: Mapped[str] = mapped_column(String(50))
    threads: Mapped[int]
    batch: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(20), default="float32")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Hash of the content, recomputed on every write: clients cache tables by it.
    etag: Mapped[str] = mapped_column(String(64), default="")
    calibration: Mapped[dict[str, Any] | None]


class Measurement(Base):
    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("table_id", "key", name="uq_measurements_table_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    table_id: Mapped[str] = mapped_column(ForeignKey("tables.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))
    median_ms: Mapped[float] = mapped_column(Float)
    mean_ms: Mapped[float] = mapped_column(Float)
    std_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    count: Mapped[int]
    ref_ms: Mapped[float | None] = mapped_column(Float)  # the drift reference timed with it (raw)
    nominal_ms: Mapped[float | None] = mapped_column(Float)  # the nominal the figures are scaled to
    reference: Mapped[str | None] = mapped_column(String(100))  # whose nominal: the drift reference's name
    # The job that last wrote this row: a resumed job skips what it already stored.
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "device_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))  # a job kind's name (profiler_service/jobs/registry.py)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    # The device whose worker runs it: on a shared PostgreSQL each worker claims only its own.
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    table_id: Mapped[str | None] = mapped_column(ForeignKey("tables.id", ondelete="CASCADE"), index=True)
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    table_id: Mapped[str] = mapped_column(ForeignKey("tables.id", ondelete="CASCADE"), index=True)
    arch: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="queued")
    median_ms: Mapped[float | None] = mapped_column(Float)
    mean_ms: Mapped[float | None] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float)
    p10_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int | None]
    ref_ms: Mapped[float | None] = mapped_column(Float)
    nominal_ms: Mapped[float | None] = mapped_column(Float)
    reference: Mapped[str | None] = mapped_column(String(100))
    predicted_ms: Mapped[float | None] = mapped_column(Float)
    missing: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class DriftReference(Base):
    """The nominal latency of a drift reference for one device, backend and thread count: results are
    scaled to it (``clock/drift.py``). Estimated from a burst of the reference alone (its quietest
    stretches, ``clock/burst.py``); a quieter estimate later, or a slower one the device itself shows
    (``clock/drift.py record_quiet``), makes a new version, and stored figures are rescaled to it, so
    every table and network of this configuration shares one clock."""

    __tablename__ = "drift_references"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    backend: Mapped[str] = mapped_column(String(50), primary_key=True)
    threads: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(100), primary_key=True)  # which workload (measure/reference.py)
    nominal_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # 'burst' (measured alone at its quietest) or 'first-observation' (the interleaved median of the
    # first result, where no burst has run yet: replaced by the first burst)
    source: Mapped[str] = mapped_column(String(20), default="first-observation")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NominalBurst(Base):
    """One burst of a drift reference alone (``clock/burst.py``) and what the store made of it: the
    burst's own estimate, the worker's recent bursts pooled, and the nominal (and its version) after it.
    The history is the device's clock audited: how far its quiet speed moved from one burst to the next
    is the floor under any two latencies read minutes apart (``clock/history.py``)."""

    __tablename__ = "nominal_bursts"
    __table_args__ = (Index("ix_nominal_bursts_config", "device_id", "backend", "threads", "reference", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    backend: Mapped[str] = mapped_column(String(50))
    threads: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    burst_ms: Mapped[float] = mapped_column(Float)
    pooled_ms: Mapped[float] = mapped_column(Float)
    nominal_ms: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer)
    # cores other processes kept busy meanwhile (None: the machine does not say)
    others_cores: Mapped[float | None] = mapped_column(Float, nullable=True)
