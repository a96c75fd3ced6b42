from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from profiler_service.api.deps import ApiKey, SessionDep
from profiler_service.services import calibration as C
from profiler_service.services import tables as T
from shared.schemas import CalibrationCreate

router = APIRouter(prefix="/v1/tables", tags=["calibration"])


@router.post("/{table_id}/calibration", status_code=status.HTTP_201_CREATED, dependencies=[ApiKey])
def fit_calibration(table_id: str, req: CalibrationCreate, session: SessionDep) -> dict:
    """Fit the table's calibrated model from networks this device measured against it (a new version).

    Served with the table (``calibration``) and used by the client's LatencyModel; networks not named
    here stay unseen by it, so they can validate it.
    """
    return C.fit_table_calibration(session, T.get_table(session, table_id), req.network_ids)


@router.get("/{table_id}/calibration")
def get_calibration(table_id: str, session: SessionDep) -> dict:
    table = T.get_table(session, table_id)
    if not table.calibration:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"table {table_id} has no calibration yet")
    return table.calibration


@router.delete("/{table_id}/calibration", dependencies=[ApiKey])
def delete_calibration(table_id: str, session: SessionDep) -> dict:
    C.clear_calibration(session, T.get_table(session, table_id))
    return {"id": table_id, "calibration": None}
