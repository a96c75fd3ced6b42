"""Profile jobs: what to measure (a space or a list of keys), into which table; reading and cancelling."""

from __future__ import annotations

import os
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from profiler_service.db.models import FINISHED, Device, Job, Network, utcnow
from profiler_service.measure.backends import precision_of, unavailable_reason
from profiler_service.measure.reference import op_name_for
from profiler_service.services import tables
from profiler_service.services.errors import Conflict, Invalid, NotFound
from shared.schemas import JobCreate, JobOut
from shared.spaces import get_space
from shared.specs import ZERO, Limits, SpecError, parse_key, validate


def resolve_keys(req: JobCreate, limits: Limits) -> list[str]:
    """The op keys a job measures, each validated against the device's limits at the job's batch size.

    A space raises SpecError itself (unknown space, resolution out of range, an op over the memory cap);
    an explicit key is reported with its index so the client knows which one is wrong.
    """
    if req.space is not None:
        space = get_space(req.space, req.resolution, req.width_mult, req.num_classes, limits)
        return [s.key for s in space.all_op_specs(req.batch, limits)]
    keys: list[str] = []
    for i, key in enumerate(req.keys or []):
        try:
            spec = validate(parse_key(key, limits), limits, req.batch)
        except SpecError as e:
            raise Invalid(f"keys[{i}]", f"{e} (key {tables.quote(key)})") from None
        if spec.type != ZERO and key not in keys:  # zero ops cost nothing and are never profiled
            keys.append(key)
    if not keys:
        raise Invalid("keys", "nothing to profile: zero ops cost nothing")
    return keys


def check_runnable(backend: str, threads: int, backends: Sequence[str]) -> None:
    if backend not in backends:
        reason = unavailable_reason(backend) or f"{backend!r} is not available on this device"
        raise Invalid("backend", f"{reason}; this worker serves {list(backends)}")
    cores = os.cpu_count() or 1
    if threads > cores:
        raise Invalid("threads", f"{threads} exceeds the {cores} logical cores of this device")


def create_profile_job(session: Session, req: JobCreate, *, device: Device, limits: Limits,
                       backends: Sequence[str], claimed_by: str | None = None) -> Job:
    """Queue a job (or, with ``claimed_by``, hand it straight to that worker, as the local CLI does).

    A job re-profiles every key it is given, even ones the table already holds: asking again is how a
    user refreshes a stale entry. Only a resumed job skips keys, the ones it stored itself.
    """
    check_runnable(req.backend, req.threads, backends)
    keys = resolve_keys(req, limits)
    if req.table_id is not None:
        table = tables.get_table(session, req.table_id)
        want = (device.id, req.backend, req.threads, req.batch)
        have = (table.device_id, table.backend, table.threads, table.batch)
        if want != have:
            raise Invalid("table_id", f"table {table.id} is backend={table.backend} threads={table.threads} "
                                      f"batch={table.batch} of another configuration or device; the job asks "
                                      f"backend={req.backend} threads={req.threads} batch={req.batch} here")
    else:
        table = tables.get_or_create_table(session, device, req.backend, req.threads, req.batch,
                                           precision_of(req.backend))
    # A space's ops are timed against that space's own reference op (a whole network slows in ways its ops
    # alone do not, measure/reference.py); bare keys against the default space's.
    reference = op_name_for(req.space, req.resolution, req.width_mult)
    params = req.model_dump(exclude={"keys", "table_id"}, exclude_none=True) | {"keys": keys,
                                                                                "reference": reference}
    now = utcnow()
    job = Job(kind="profile", device_id=device.id, table_id=table.id, total=len(keys), done=0, params=params,
              created_at=now)
    if claimed_by is not None:
        job.status, job.claimed_by, job.started_at, job.heartbeat_at, job.attempts = (
            "running", claimed_by, now, now, 1)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id!r} not found")
    return job


def job_out(job: Job) -> JobOut:
    return JobOut(id=job.id, status=job.status, done=job.done, total=job.total, table_id=job.table_id,
                  error=job.error, kind=job.kind, created_at=job.created_at, finished_at=job.finished_at)


def list_jobs(session: Session, status: str | None = None, limit: int = 100) -> list[Job]:
    stmt = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return list(session.scalars(stmt))


def cancel_job(session: Session, job_id: str) -> Job:
    """Queued or running -> cancelled. The worker notices between ops (or mid-op) and stops the child."""
    job = get_job(session, job_id)
    if job.status == "cancelled":
        return job
    if job.status in FINISHED:
        raise Conflict(f"job {job_id} is already {job.status}; nothing to cancel")
    now = utcnow()
    res = session.execute(update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
                          .values(status="cancelled", finished_at=now, error="cancelled by request")
                          .execution_options(synchronize_session=False))
    if res.rowcount:
        session.execute(update(Network).where(Network.job_id == job_id)
                        .values(status="cancelled", finished_at=now, error="cancelled by request")
                        .execution_options(synchronize_session=False))
    session.flush()
    session.refresh(job)
    return job
