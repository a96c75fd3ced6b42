"""One module per resource; each route is a thin call into profiler_service.services."""

from fastapi import APIRouter

from profiler_service.api.routes import (
    calibration,
    device,
    health,
    jobs,
    metrics,
    networks,
    overview,
    spaces,
    tables,
    ui,
)

api_router = APIRouter()
for _module in (health, device, spaces, jobs, tables, calibration, networks, metrics, overview, ui):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
