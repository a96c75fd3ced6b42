"""Request dependencies: settings, database session, runtime (device, backends, worker), API key."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.orm import Session

from profiler_service.db.engine import Database
from profiler_service.metrics import Metrics
from profiler_service.services.errors import TooLarge
from profiler_service.services.lookup import LookupIndex
from profiler_service.services.render_cache import RenderCache
from profiler_service.settings import Settings
from profiler_service.worker import Worker


@dataclass
class Runtime:
    """What the lifespan sets up once: the database, this device, its backends, the worker."""

    db: Database
    metrics: Metrics
    device_id: int
    device_name: str
    backends: list[str]
    worker: Worker | None
    table_bodies: RenderCache[bytes] = field(default_factory=RenderCache)
    lookup_index: LookupIndex = field(default_factory=LookupIndex)


# async: an attribute read needs no worker thread, and a sync dependency costs a threadpool hop per request
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_session(request: Request) -> Iterator[Session]:
    """Commits when the route returns, before the response goes out: a 202 means the job is stored."""
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    with request.app.state.runtime.db.session(write=write) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def require_api_key(settings: SettingsDep,
                          x_api_key: Annotated[str | None, Header(description="required when configured")] = None
                          ) -> None:
    expected = settings.api_key_value
    if expected is None:
        return
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "X-API-Key: missing or wrong API key",
                            headers={"WWW-Authenticate": "ApiKey"})


ApiKey = Depends(require_api_key)


async def raw_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, refused past the import size cap before it is all in memory."""
    cap = int(settings.max_import_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"body: {int(declared)} bytes over the {cap}-byte import limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"body: over the {cap}-byte import limit")
        chunks.append(chunk)
    return b"".join(chunks)


RawBody = Annotated[bytes, Depends(raw_body)]
