from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from profiler_service.api.deps import ApiKey, RawBody, RuntimeDep, SessionDep
from profiler_service.services import lookup as lookup_service
from profiler_service.services import tables as T
from profiler_service.services import yaml_io
from shared.schemas import ImportResponse, LookupRequest, LookupResponse, TableOut, TableSummary

router = APIRouter(prefix="/v1/tables", tags=["tables"])

_IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "application/x-yaml": {"schema": {"type": "string"},
                           "example": "expanded_conv-input:7x7x192-output:7x7x320-expand:6-kernel:5-stride:1-"
                                      "idskip:0: {count: 154, mean: 5.2648, var: 0.195}\n"},
    "application/json": {"schema": {"$ref": "#/components/schemas/TableOut"}}}}}


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


@router.get("")
def list_tables(session: SessionDep) -> list[TableSummary]:
    """Every table: device, backend, threads, batch, dtype, entry count, last update, ETag."""
    return T.list_tables(session)


@router.get("/{table_id}", response_model=TableOut,
            responses={200: {"content": {yaml_io.YAML_MEDIA_TYPE: {}}}, 304: {"description": "not modified"}})
def get_table(table_id: str, session: SessionDep, runtime: RuntimeDep, format: Literal["json", "yaml"] = "json",
              if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The whole table. Send the ETag back in If-None-Match to get 304 when nothing changed."""
    table = T.get_table(session, table_id)
    etag = f'"{table.etag}"' if format == "json" else f'"{table.etag}-yaml"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _etag_matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    render = yaml_io.to_yaml if format == "yaml" else yaml_io.to_json
    # A search fleet pulls the same table again and again: render it once per ETag.
    body = runtime.table_bodies.get_or_render((table.id, etag, table.updated_at), lambda: render(session, table))
    media = yaml_io.YAML_MEDIA_TYPE if format == "yaml" else "application/json"
    return Response(body, media_type=media, headers=headers)


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
                 dtype: Annotated[str, Query(min_length=1, max_length=20)] = "float32") -> ImportResponse:
    """Import published yaml (``KEY: {count, mean, var}``) or our JSON into that configuration's table."""
    return yaml_io.import_table(session, body, device=device, backend=backend, threads=threads, batch=batch,
                                dtype=dtype)
