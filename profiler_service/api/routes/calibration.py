from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from profiler_service.api.deps import ApiKey, RuntimeDep, SessionDep, SettingsDep
from profiler_service.services import calibration, calibration_jobs, jobs, tables
from profiler_service.services.devices import get_device
from shared.schemas import CalibrationCreate

router = APIRouter(prefix="/v1/tables", tags=["calibration"])


@router.post("/{table_id}/calibration", status_code=status.HTTP_201_CREATED, dependencies=[ApiKey],
             responses={202: {"description": "with ``samples``: the calibration job (JobOut), progress in "
                                             "networks measured; the fit lands in the table when it is done"}})
def fit_calibration(table_id: str, req: CalibrationCreate, session: SessionDep, runtime: RuntimeDep,
                    settings: SettingsDep, response: Response) -> dict:
    """Fit the table's calibrated model (a new version), from networks this device measured against it
    (``network_ids``: 201 with the calibration), or from ``samples`` random networks of ``space`` drawn
    from ``seed`` that the device measures first (202 with the job; poll ``/v1/jobs/{id}``).

    Served with the table (``calibration``) and used by the client's LatencyModel; networks not named
    here stay unseen by it, so they can validate it.
    """
    table = tables.get_table(session, table_id)
    if req.samples is None:
        return calibration.fit_table_calibration(session, table, req.network_ids)
    device = get_device(session, runtime.device_name)
    job = calibration_jobs.create_calibration_job(session, table, req, device=device, limits=settings.limits,
                                    backends=runtime.backends)
    response.status_code = status.HTTP_202_ACCEPTED
    return jobs.job_out(job).model_dump(mode="json")


@router.get("/{table_id}/calibration")
def get_calibration(table_id: str, session: SessionDep) -> dict:
    table = tables.get_table(session, table_id)
    if not table.calibration:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"table {table_id} has no calibration yet")
    return table.calibration


@router.delete("/{table_id}/calibration", dependencies=[ApiKey])
def delete_calibration(table_id: str, session: SessionDep) -> dict:
    calibration.clear_calibration(session, tables.get_table(session, table_id))
    return {"id": table_id, "calibration": None}
