"""The FastAPI app factory. Everything stateful (settings, database, worker) is built here or in the
lifespan, never at import time, so tests can run several apps side by side."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from profiler_service.api import errors
from profiler_service.api.deps import Runtime
from profiler_service.api.limits import BodyCaps, BodyDeadline, Lanes, RequestGuard
from profiler_service.api.routes import api_router
from profiler_service.api.slashes import RelativeSlashRedirect
from profiler_service.db.engine import Database
from profiler_service.db.migrate import init_db
from profiler_service.metrics import Metrics
from profiler_service.services.devices import ensure_device
from profiler_service.settings import Settings
from profiler_service.worker import Worker

log = logging.getLogger(__name__)


def _lanes(settings: Settings) -> Lanes:
    return Lanes(reads=settings.max_concurrent_requests, writes=settings.max_concurrent_writes,
                 imports=min(settings.max_concurrent_imports, settings.max_concurrent_writes))


def _start_runtime(settings: Settings) -> Runtime:
    # The engine imports torch and onnxruntime: loaded when the server starts, not on import.
    from profiler_service.measure.fingerprint import fingerprint
    from profiler_service.measure.runner import available_backends

    # The API's pool has a connection for each request the guard lets work at once, and two spare (the
    # metrics scrape, the lifespan); only 4 stay open when idle, so a fleet on one PostgreSQL stays small.
    db = init_db(settings, pool_size=4, max_overflow=max(_lanes(settings).total - 2, 0))
    with db.session() as s:
        device_id = ensure_device(s, settings.device_name, fingerprint()).id
    metrics = Metrics(db)
    worker = None
    if settings.worker:
        # Its own engine: a burst of requests must never leave the worker waiting for a connection
        # (a result it cannot store, then a failure it cannot record, left a job running for good).
        # It shares the API's view of an outage, so an outage is logged once.
        worker_db = Database(settings.database_url, outage=db.outage, pool_size=1, max_overflow=3)
        worker = Worker(worker_db, settings, device_id, on_op_measured=metrics.op_measured_callback())
        worker.start()
    # torch, onnxruntime and the app are loaded and live as long as the server: leave them out of every
    # collection. A full one walked them all in ~200 ms, every ~8 s under load, and stalled every
    # request in flight (lookup p99 at 50 clients, bench/api_load.py).
    gc.collect()
    gc.freeze()
    return Runtime(db=db, metrics=metrics, device_id=device_id, device_name=settings.device_name,
                   backends=list(available_backends()), worker=worker)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.check_bind()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = _start_runtime(settings)
        app.state.runtime = runtime
        log.info("profiler service up: device=%s backends=%s db=%s", runtime.device_name, runtime.backends,
                 runtime.db.engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            if runtime.worker is not None:
                runtime.worker.stop()
                runtime.worker.db.dispose()
            runtime.db.dispose()

    app = FastAPI(title="Latency profiler service", version="1.0",
                  description="Per-device latency lookup tables for ProxylessNAS search (DESIGN.md).",
                  lifespan=lifespan, redirect_slashes=False)
    app.router.default = RelativeSlashRedirect(app.router)
    app.state.settings = settings
    errors.install(app)
    app.include_router(api_router, responses=errors.ERROR_RESPONSES)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            # The route template, not the raw path: job ids must not become label values.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            runtime.metrics.requests.labels(request.method, route, str(response.status_code)).inc()
            runtime.metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)
        return response

    # Outermost: refusals (no key, too large, not loopback) happen before anything reads the body.
    app.add_middleware(RequestGuard, api_key=settings.api_key_value, lanes=_lanes(settings),
                       caps=BodyCaps(table_import=int(settings.max_import_mb * 2**20)),
                       deadline=BodyDeadline(base_s=settings.body_timeout_s))
    return app
