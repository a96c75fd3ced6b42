from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from profiler_service.api.deps import ApiKey, RawBody, RuntimeDep, SessionDep
from profiler_service.services import lookup as lookup_service
from profiler_service.services import tables, yaml_io
from profiler_service.services.table_body import read_table_body
from shared.schemas import ImportResponse, LookupRequest, LookupResponse, TableOut, TableSummary

router = APIRouter(prefix="/v1/tables", tags=["tables"])

_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "application/x-yaml": {"schema": {"type": "string"},
                           "example": "expanded_conv-input:7x7x192-output:7x7x320-expand:6-kernel:5-stride:1-"
                                      "idskip:0: {count: 154, mean: 5.2648, var: 0.195}\n"},
    "application/json": {"schema": {"$ref": "#/components/schemas/TableOut"}}}}}


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@router.get("")
def list_tables(session: SessionDep) -> list[TableSummary]:
    """Every table: device, backend, threads, batch, dtype, entry count, last update, ETag."""
    return tables.list_tables(session)


@router.get("/{table_id}", response_model=TableOut,
            responses={200: {"content": {yaml_io.YAML_MEDIA_TYPE: {}}}, 304: {"description": "not modified"}})
async def get_table(table_id: str, runtime: RuntimeDep, format: Literal["json", "yaml"] = "json",
                    if_none_match: Annotated[str | None, Header()] = None,
                    accept_encoding: Annotated[str | None, Header()] = None) -> Response:
    """The whole table, gzipped when the client accepts it. Send the ETag back in If-None-Match to get 304
    when nothing changed."""
    # one worker-thread hop (a sync route with a session dependency took several, and a fleet's first
    # pulls arrive together)
    out = await run_in_threadpool(read_table_body, runtime.db, runtime.table_bodies, runtime.lookup_index,
                                  table_id, format, _accepts_gzip(accept_encoding), if_none_match)
    headers = {"ETag": out.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if out.body is None:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    if out.gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(out.body, media_type=out.media_type, headers=headers)


@router.post("/{table_id}/lookup", response_model=LookupResponse)
async def lookup(table_id: str, req: LookupRequest, runtime: RuntimeDep) -> Response:
    """Latencies for a list of keys; keys the table lacks come back in ``missing``. Read-only: no key."""
    # the hot path of a search fleet: one worker-thread hop for the read (a sync route with a session
    # dependency took several per request, and at 50 clients the server's core went to them)
    body = await run_in_threadpool(lookup_service.lookup_read, runtime.db, runtime.lookup_index, table_id, req.keys)
    return Response(body, media_type="application/json")


@router.post("/import", status_code=status.HTTP_201_CREATED, dependencies=[ApiKey],
             openapi_extra=_IMPORT_BODY)
def import_table(body: RawBody, session: SessionDep,
                 device: Annotated[str, Query(min_length=1, max_length=200)],
                 backend: Annotated[str, Query(min_length=1, max_length=50)],
                 threads: Annotated[int, Query(ge=1, le=1024)] = 1,
                 batch: Annotated[int, Query(ge=1, le=100_000)] = 1,
                 dtype: Annotated[str | None, Query(min_length=1, max_length=20)] = None) -> ImportResponse:
    """Import published yaml (``KEY: {count, mean, var}``) or our JSON into that configuration's table.
    ``dtype`` defaults to the runtime's own (int8 for an int8 runtime, float32 otherwise)."""
    dtype = dtype or yaml_io.default_dtype(backend)
    return yaml_io.import_table(session, body, device=device, backend=backend, threads=threads, batch=batch,
                                dtype=dtype)
