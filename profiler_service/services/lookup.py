"""Lookups served from an in-memory index of a table, rebuilt when the table's ETag changes.

A search fleet sends small lookups many times a second. Through the ORM and pydantic each one cost a
query of its keys, an ``OpStats`` per hit and a validated response model: at 50 clients the server
spent its core on that and p99 reached 405 ms. Here a lookup reads
the table's ETag (one indexed row), takes the index built for that ETag, and joins pre-rendered JSON
fragments: no per-entry objects, no response re-validation. A changed table has a new ETag, so an index
is never served stale; the worker of another process (a fleet on PostgreSQL) changes the ETag too.
"""

from __future__ import annotations

import json
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_service.db.engine import Database
from profiler_service.db.models import Measurement, Table
from profiler_service.services.errors import NotFound
from profiler_service.services.render_cache import RenderCache
from profiler_service.services.tables import STAT_FIELDS, check_key
from shared import specs

ZERO_FRAGMENT = json.dumps({"median_ms": 0.0, "mean_ms": 0.0, "std_ms": 0.0, "p10_ms": 0.0, "p90_ms": 0.0,
                            "count": 0, "ref_ms": None, "nominal_ms": None})


class LookupIndex(RenderCache[dict[str, str]]):
    """``(table_id, etag) -> {key: JSON of its OpStats}``: a few tables, least recently used, each built
    once however many lookups miss it together."""

    def get(self, session: Session, table_id: str, etag: str) -> dict[str, str]:
        return self.get_or_render((table_id, etag), lambda: build_index(session, table_id))


def table_etag(session: Session, table_id: str) -> str:
    etag = session.scalar(select(Table.etag).where(Table.id == table_id))
    if etag is None:
        raise NotFound(f"table {table_id!r} not found")
    return etag


def _number(v: float | int | None) -> str:
    # stored values are checked finite; a row that is not anyway serves null, never invalid JSON
    return repr(v) if v is not None and math.isfinite(v) else "null"


def build_index(session: Session, table_id: str) -> dict[str, str]:
    """Every entry's ``OpStats`` JSON, in key order (the order a pulled table lists them). Formatted by hand:
    ``json.dumps`` of a dict per entry took most of the 70 ms a 10,000-entry index costs."""
    rows = session.execute(select(Measurement.key, *[getattr(Measurement, f) for f in STAT_FIELDS])
                           .where(Measurement.table_id == table_id).order_by(Measurement.key))
    return {key: "{" + ",".join(f'"{f}":{_number(v)}' for f, v in zip(STAT_FIELDS, values, strict=True)) + "}"
            for key, *values in rows}


def join_entries(entries: dict[str, str]) -> str:
    """The members of a JSON object of ``key -> OpStats`` from pre-rendered fragments (no braces)."""
    return ",".join(f"{json.dumps(k)}:{v}" for k, v in entries.items())


def lookup_body(session: Session, index: LookupIndex, table_id: str, keys: list[str]) -> bytes:
    """The ``LookupResponse`` JSON for ``keys``: found (request order, zero ops at no cost) and missing
    (each once). Malformed keys raise ``Invalid`` naming the first, as before."""
    entries = index.get(session, table_id, table_etag(session, table_id))
    found: dict[str, str] = {}
    missing: dict[str, None] = {}
    for i, key in enumerate(keys):
        frag = entries.get(key)
        if frag is not None:  # stored keys were checked when they were stored: parse only the others
            found[key] = frag
        elif check_key(key, f"keys[{i}]").type == specs.ZERO:
            found[key] = ZERO_FRAGMENT
        else:
            missing[key] = None
    return f'{{"found":{{{join_entries(found)}}},"missing":{json.dumps(list(missing))}}}'.encode()


def lookup_read(db: Database, index: LookupIndex, table_id: str, keys: list[str]) -> bytes:
    """:func:`lookup_body` in its own read session (a SQLite WAL reader: never behind a writer)."""
    with db.session(write=False) as session:
        return lookup_body(session, index, table_id, keys)
