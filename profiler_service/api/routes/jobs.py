from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from profiler_service.api.deps import ApiKey, RuntimeDep, SessionDep, SettingsDep
from profiler_service.services import jobs
from profiler_service.services.devices import get_device
from shared.schemas import JobCreate, JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[ApiKey])
def create_job(req: JobCreate, session: SessionDep, runtime: RuntimeDep, settings: SettingsDep) -> JobOut:
    """Profile a space (name, resolution, width) or an explicit list of op keys on this device."""
    device = get_device(session, runtime.device_name)
    job = jobs.create_profile_job(session, req, device=device, limits=settings.limits, backends=runtime.backends)
    return jobs.job_out(job)


@router.get("")
def list_jobs(session: SessionDep,
              state: Annotated[Literal["queued", "running", "done", "failed", "cancelled"] | None,
                               Query(alias="status")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[JobOut]:
    """Recent jobs, newest first."""
    return [jobs.job_out(j) for j in jobs.list_jobs(session, state, limit)]


@router.get("/{job_id}")
def get_job(job_id: str, session: SessionDep) -> JobOut:
    """Status, progress (done/total) and the error of a failed job."""
    return jobs.job_out(jobs.get_job(session, job_id))


@router.delete("/{job_id}", dependencies=[ApiKey])
def cancel_job(job_id: str, session: SessionDep) -> JobOut:
    """Cancel a queued or running job; ops already measured stay in the table."""
    return jobs.job_out(jobs.cancel_job(session, job_id))
