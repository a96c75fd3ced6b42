"""The FastAPI app factory. Everything stateful (settings, database, worker) is built here or in the
lifespan, never at import time, so tests can run several apps side by side."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from profiler_service.api import errors
from profiler_service.api.deps import Runtime
from profiler_service.api.routes import api_router
from profiler_service.db.migrate import init_db
from profiler_service.metrics import Metrics
from profiler_service.services.devices import ensure_device
from profiler_service.settings import Settings
from profiler_service.worker import Worker

log = logging.getLogger(__name__)


def _start_runtime(settings: Settings) -> Runtime:
    # The engine imports torch and onnxruntime: loaded when the server starts, not on import.
    from profiler_service.measure.fingerprint import fingerprint
    from profiler_service.measure.runner import available_backends

    db = init_db(settings)
    with db.session() as s:
        device_id = ensure_device(s, settings.device_name, fingerprint()).id
    metrics = Metrics(db)
    worker = None
    if settings.worker:
        worker = Worker(db, settings, device_id, on_op_measured=metrics.op_measured_callback())
        worker.start()
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
            runtime.db.dispose()

    app = FastAPI(title="Latency profiler service", version="1.0",
                  description="Per-device latency lookup tables for ProxylessNAS search (DESIGN.md).",
                  lifespan=lifespan)
    app.state.settings = settings
    errors.install(app)
    app.include_router(api_router)

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

    return app
