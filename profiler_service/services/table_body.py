"""A whole table as the body a client pulls: rendered, and compressed, once per version of the table.

A search fleet pulls the same 10,000-entry table again and again; a fleet starting together pulls it all
at once. Rendering it is ~100 ms of the server's core and the JSON is 2 MiB, so each version is rendered
once (single flight) and gzipped once (~50x smaller: 50 first pulls held lookups behind 100 MiB of
responses, bench/api_load.py). A client whose copy is current gets no body (its ETag matched).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from profiler_service.db.engine import Database
from profiler_service.db.models import Table
from profiler_service.services import tables, yaml_io
from profiler_service.services.lookup import LookupIndex, join_entries
from profiler_service.services.render_cache import RenderCache

MEDIA_TYPES = {"json": "application/json", "yaml": yaml_io.YAML_MEDIA_TYPE}


@dataclass(frozen=True)
class TableBody:
    etag: str  # the HTTP ETag (quoted) of this representation
    media_type: str
    body: bytes | None  # None: the client's copy is current
    gzipped: bool = False


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def json_body(session: Session, table: Table, index: LookupIndex) -> bytes:
    """``TableOut`` JSON joined from the lookup index's entry fragments: the index is built once per version
    for lookups anyway, and through pydantic the same 10,000 entries took another ~100 ms."""
    entries = index.get(session, table.id, table.etag)
    meta = tables.table_meta(session, table).model_dump_json()
    return f'{meta[:-1]},"entries":{{{join_entries(entries)}}}}}'.encode()


def read_table_body(db: Database, cache: RenderCache[bytes], index: LookupIndex, table_id: str,
                    fmt: Literal["json", "yaml"], gzip_ok: bool, if_none_match: str | None) -> TableBody:
    """In one read session (a SQLite WAL reader: never behind a writer): the table's version, then its
    body from ``cache`` or rendered."""
    with db.session(write=False) as session:
        table = tables.get_table(session, table_id)
        etag = f'"{table.etag}"' if fmt == "json" else f'"{table.etag}-yaml"'
        if etag_matches(if_none_match, etag):
            return TableBody(etag, MEDIA_TYPES[fmt], None)
        key = (table.id, (table.etag, table.updated_at), fmt)  # (table, version, variant)
        body = cache.get_or_render(key, lambda: json_body(session, table, index) if fmt == "json"
                                   else yaml_io.to_yaml(session, table).encode())
    if gzip_ok:
        body = cache.get_or_render((*key, "gzip"), lambda: gzip.compress(body, 6))
    return TableBody(etag, MEDIA_TYPES[fmt], body, gzip_ok)
