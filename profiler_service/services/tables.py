"""Latency tables: one per (device, backend, threads, batch, dtype); entries keyed by op key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from profiler_service.db.models import Device, Measurement, Table, utcnow
from profiler_service.services.devices import ensure_device
from profiler_service.services.errors import Invalid, NotFound
from shared import specs
from shared.schemas import OpStats, TableMeta, TableOut, TableSummary

STAT_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "count", "ref_ms", "nominal_ms")
# Keys are checked for shape only here (lookups, imports): device limits guard what gets *built*.
SYNTAX_LIMITS = specs.Limits(max_channels=10**6, max_resolution=10**5, max_batch=10**6,
                         max_activation_mb=float("inf"))
# Rows per INSERT: 11 bound values each stays well under SQLite's 32,766 variables per statement.
_UPSERT_ROWS = 1000


def get_table(session: Session, table_id: str) -> Table:
    table = session.get(Table, table_id)
    if table is None:
        raise NotFound(f"table {table_id!r} not found")
    return table


def find_table(session: Session, device_id: int, backend: str, threads: int, batch: int,
               dtype: str = "float32") -> Table | None:
    return session.scalar(select(Table).where(
        Table.device_id == device_id, Table.backend == backend, Table.threads == threads,
        Table.batch == batch, Table.dtype == dtype))


def get_or_create_table(session: Session, device: Device, backend: str, threads: int, batch: int,
                        dtype: str = "float32") -> Table:
    table = find_table(session, device.id, backend, threads, batch, dtype)
    if table is None:
        table = Table(device_id=device.id, backend=backend, threads=threads, batch=batch, dtype=dtype)
        session.add(table)
        session.flush()
        table.etag = compute_etag(session, table)
    return table


def get_or_create_by_name(session: Session, device_name: str, backend: str, threads: int, batch: int,
                          dtype: str = "float32") -> Table:
    return get_or_create_table(session, ensure_device(session, device_name), backend, threads, batch, dtype)


def check_key(key: str, where: str = "key") -> specs.OpSpec:
    """Parse a key for its shape only; SpecError becomes Invalid naming the key."""
    try:
        return specs.parse_key(key, SYNTAX_LIMITS)
    except specs.SpecError as e:
        raise Invalid(where, f"{quote(key)}: {e}") from None


def quote(text: str, n: int = 120) -> str:
    """A key quoted in an error, cut short: the message must not echo a megabyte back."""
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} characters)"


def entries(session: Session, table_id: str, keys: Iterable[str] | None = None) -> dict[str, OpStats]:
    # Plain rows, not ORM objects: a lookup or a 10,000-entry pull is mostly this loop.
    stmt = (select(Measurement.key, *[getattr(Measurement, f) for f in STAT_FIELDS])
            .where(Measurement.table_id == table_id).order_by(Measurement.key))
    if keys is not None:
        stmt = stmt.where(Measurement.key.in_(list(keys)))
    return {key: OpStats(**dict(zip(STAT_FIELDS, values, strict=True)))
            for key, *values in session.execute(stmt)}


def entry_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Measurement.table_id, func.count()).group_by(Measurement.table_id))
    return {tid: n for tid, n in rows}


def compute_etag(session: Session, table: Table) -> str:
    """Hash of everything a client caches: identity, calibration and every entry."""
    rows = session.execute(select(Measurement.key, *[getattr(Measurement, f) for f in STAT_FIELDS])
                           .where(Measurement.table_id == table.id).order_by(Measurement.key)).all()
    doc = {"id": table.id, "backend": table.backend, "threads": table.threads, "batch": table.batch,
           "dtype": table.dtype, "calibration": table.calibration, "entries": [list(r) for r in rows]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def touch(session: Session, table: Table) -> None:
    """Call after any write to the table's content: the ETag must change with it."""
    session.flush()
    table.etag = compute_etag(session, table)
    table.updated_at = utcnow()


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Measurement)


def upsert_measurements(session: Session, table: Table, stats: Mapping[str, OpStats],
                        job_id: str | None = None, reference: str | None = None) -> int:
    """Insert or replace entries (ON CONFLICT), many rows per statement: a re-profiled key never has two
    rows, and a 200k-entry import holds the write lock for seconds, not a minute. ``reference`` names the
    drift reference the figures were timed against (None: not known, as in an import)."""
    now = utcnow()
    rows = [{"table_id": table.id, "key": key, "job_id": job_id, "measured_at": now,
             "reference": reference if st.ref_ms is not None else None,
             **{f: getattr(st, f) for f in STAT_FIELDS}} for key, st in stats.items()]
    for i in range(0, len(rows), _UPSERT_ROWS):
        stmt = _insert(session).values(rows[i:i + _UPSERT_ROWS])
        updated = (*STAT_FIELDS, "reference", "job_id", "measured_at")
        session.execute(stmt.on_conflict_do_update(index_elements=["table_id", "key"],
                                                   set_={c: stmt.excluded[c] for c in updated}))
    touch(session, table)
    return len(stats)


def keys_stored_by_job(session: Session, job_id: str) -> set[str]:
    return set(session.scalars(select(Measurement.key).where(Measurement.job_id == job_id)))


def _meta(table: Table, device_name: str) -> dict:
    return {"id": table.id, "device": device_name, "backend": table.backend, "threads": table.threads,
            "batch": table.batch, "dtype": table.dtype, "updated_at": table.updated_at, "etag": table.etag,
            "calibration": table.calibration}


def _device_name(session: Session, table: Table) -> str:
    return session.scalar(select(Device.name).where(Device.id == table.device_id)) or ""


def list_tables(session: Session) -> list[TableSummary]:
    counts = entry_counts(session)
    rows = session.execute(select(Table, Device.name).join(Device, Device.id == Table.device_id)
                           .order_by(Device.name, Table.backend, Table.threads, Table.batch)).all()
    return [TableSummary(**_meta(t, name), entries=counts.get(t.id, 0)) for t, name in rows]


def summary(session: Session, table: Table) -> TableSummary:
    n = session.scalar(select(func.count()).where(Measurement.table_id == table.id)) or 0
    return TableSummary(**_meta(table, _device_name(session, table)), entries=n)


def table_meta(session: Session, table: Table) -> TableMeta:
    return TableMeta(**_meta(table, _device_name(session, table)))


def table_out(session: Session, table: Table) -> TableOut:
    return TableOut(**_meta(table, _device_name(session, table)), entries=entries(session, table.id))
