"""JSON the overview page needs beyond the plain resources: the fleet's devices, a table's latency grid."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from profiler_service.api.deps import SessionDep
from profiler_service.services import overview
from profiler_service.services.tables import get_table
from shared.schemas import DeviceSummary, TableHeatmap

router = APIRouter(prefix="/v1", tags=["overview"])


@router.get("/devices")
def list_devices(session: SessionDep) -> list[DeviceSummary]:
    """Every device with a worker on this database: fingerprint, tables, entries, last update."""
    return overview.list_devices(session)


@router.get("/tables/{table_id}/heatmap")
def table_heatmap(table_id: str, session: SessionDep,
                  space: Annotated[str | None, Query(description="default: the space the table covers best")] = None,
                  resolution: Annotated[int | None, Query(ge=8, le=1024)] = None,
                  width_mult: Annotated[float, Query(ge=0.1, le=4.0)] = 1.0,
                  num_classes: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> TableHeatmap:
    """The table through a search space: searchable layers x candidate ops (median ms), keys it lacks."""
    return overview.heatmap(session, get_table(session, table_id), space=space, resolution=resolution,
                     width_mult=width_mult, num_classes=num_classes)
