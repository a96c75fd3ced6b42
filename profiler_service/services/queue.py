"""The job queue in the database: claim, heartbeat, finish, and recovery of jobs whose worker died.

Every state change is a conditional UPDATE (``WHERE status = 'running'`` ...), so a cancel that lands
while the worker is storing a result is never overwritten, and two workers never run one job.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, not_, select, update
from sqlalchemy.orm import Session, aliased

from profiler_service.db.models import Job, Network, utcnow

HOST = socket.gethostname()


def new_worker_id() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _set(session: Session, job_id: str, *, only_if: tuple[str, ...], worker_id: str | None = None,
         **values) -> bool:
    """Conditional update; with ``worker_id``, only while that worker still holds the job."""
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(only_if))
    if worker_id is not None:
        stmt = stmt.where(Job.claimed_by == worker_id)
    res = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    return res.rowcount == 1


def _set_network(session: Session, job_id: str, **values) -> None:
    session.execute(update(Network).where(Network.job_id == job_id).values(**values)
                    .execution_options(synchronize_session=False))


def _waits_for_profile() -> ColumnElement[bool]:
    """A calibration job measures networks built of its table's ops: while a profile job of that table
    queued before it is still queued or running, those ops may not all be there, and a second worker
    that took the calibration would fail it at once. Such a job is not claimable yet."""
    profile = aliased(Job)
    pending = (select(profile.id).where(profile.table_id == Job.table_id, profile.kind == "profile",
                                        profile.status.in_(("queued", "running")),
                                        profile.created_at <= Job.created_at).exists())
    return and_(Job.kind == "calibration", pending)


def claim_next_job(session: Session, device_id: int, worker_id: str) -> Job | None:
    """Claim the oldest queued job of this device that waits for no other; the caller commits.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers each get a different row without waiting.
    SQLite ignores FOR UPDATE; the write session's BEGIN IMMEDIATE serialises claimers, and the
    conditional UPDATE guards the rest.
    """
    stmt = (select(Job.id).where(Job.device_id == device_id, Job.status == "queued", not_(_waits_for_profile()))
            .order_by(Job.created_at, Job.id).limit(1).with_for_update(skip_locked=True))
    job_id = session.scalar(stmt)
    return None if job_id is None else _claim(session, job_id, worker_id)


def _claim(session: Session, job_id: str, worker_id: str) -> Job | None:
    """queued -> running for ``worker_id``; None when another claimer (or a cancel) got there first."""
    now = utcnow()
    if not _set(session, job_id, only_if=("queued",), status="running", claimed_by=worker_id, started_at=now,
                heartbeat_at=now, finished_at=None, error=None, attempts=Job.attempts + 1):
        return None
    _set_network(session, job_id, status="running")
    return session.get(Job, job_id, populate_existing=True)


def _measured_alike(a: Job, b: Job) -> bool:
    """Two network jobs one benchmark process can time together: the same backend, threads, batch and
    drift reference (so one nominal and one clock serve both)."""
    fields = ("backend", "threads", "batch", "reference")
    return a.kind == b.kind == "network" and all(a.params.get(f) == b.params.get(f) for f in fields)


def claim_batch(session: Session, device_id: int, worker_id: str, first: Job, limit: int) -> list[Job]:
    """Claim, with ``first`` (a network job this worker holds), the queued network jobs right behind it in
    the queue that are measured alike, up to ``limit``: one benchmark process times them all, their windows
    in turns (``measure/tasks.py networks_in_turns``). Only the unbroken run behind it: a job of another
    kind, or measured otherwise, keeps its place and ends the batch. The caller commits."""
    if limit <= 0 or first.kind != "network":
        return []
    stmt = (select(Job).where(Job.device_id == device_id, Job.status == "queued")
            .order_by(Job.created_at, Job.id).limit(limit).with_for_update(skip_locked=True))
    out = []
    for job in list(session.scalars(stmt)):
        if not _measured_alike(first, job):
            break
        if (claimed := _claim(session, job.id, worker_id)) is not None:
            out.append(claimed)
    return out


def heartbeat(session: Session, job_id: str, worker_id: str) -> bool:
    """Mark the job alive; False when this worker should stop: cancelled, or given to another worker."""
    return _set(session, job_id, only_if=("running",), worker_id=worker_id, heartbeat_at=utcnow())


def heartbeat_many(session: Session, job_ids: Collection[str], worker_id: str) -> set[str]:
    """Mark a batch's jobs alive (one UPDATE for all, then one SELECT); returns those still running and ours."""
    ids = list(job_ids)
    session.execute(update(Job).where(Job.id.in_(ids), Job.status == "running", Job.claimed_by == worker_id)
                    .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
    return set(session.scalars(select(Job.id).where(Job.id.in_(ids), Job.status == "running",
                                                    Job.claimed_by == worker_id)))


def add_progress(session: Session, job_id: str, n: int = 1, *, worker_id: str | None = None) -> bool:
    """Count results; with ``worker_id``, only while that worker still runs the job (a cancel stands)."""
    return _set(session, job_id, only_if=("running",), worker_id=worker_id, done=Job.done + n,
                heartbeat_at=utcnow())


def set_progress(session: Session, job_id: str, done: int) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(done=done)
                    .execution_options(synchronize_session=False))


def finish(session: Session, job_id: str, status: str, error: str | None = None, *,
           worker_id: str | None = None) -> bool:
    """running -> done/failed. False when the job was cancelled (the cancel stands) or changed hands."""
    now = utcnow()
    ok = _set(session, job_id, only_if=("running",), worker_id=worker_id, status=status, error=error,
              finished_at=now)
    if ok:
        _set_network(session, job_id, status=status, error=error, finished_at=now)
    return ok


def requeue(session: Session, job_id: str, *, count_attempt: bool = False, worker_id: str | None = None) -> bool:
    """running -> queued (graceful shutdown: the attempt does not count against the job)."""
    values: dict = {"status": "queued", "claimed_by": None, "heartbeat_at": None}
    if not count_attempt:
        values["attempts"] = Job.attempts - 1
    ok = _set(session, job_id, only_if=("running",), worker_id=worker_id, **values)
    if ok:
        _set_network(session, job_id, status="queued")
    return ok


def retry(session: Session, job_id: str, reason: str, *, max_attempts: int, worker_id: str) -> str | None:
    """running -> queued after an attempt cut short by something outside the job (a database outage), the
    reason kept on the job until it is claimed again; ``failed`` instead after ``max_attempts`` attempts.
    Returns the new status, or None where the job is no longer this worker's and running."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.status != "running" or job.claimed_by != worker_id:
        return None
    if job.attempts >= max_attempts:
        error = f"{reason} (attempt {job.attempts} of {max_attempts}); not retrying"
        return "failed" if finish(session, job_id, "failed", error, worker_id=worker_id) else None
    if not requeue(session, job_id, count_attempt=True, worker_id=worker_id):
        return None
    _set(session, job_id, only_if=("queued",), error=f"{reason}; queued again")
    return "queued"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(job: Job, *, stale_after_s: float, live_workers: Collection[str]) -> bool:
    """``live_workers``: ids of this process's live workers, or a mapping of each to the job it runs now (or
    the set of jobs, for a batch of networks)."""
    if job.claimed_by in live_workers:
        if not isinstance(live_workers, Mapping):
            return False
        # A live worker that has moved on (or is idle) left this job behind: no heartbeat will come.
        held = live_workers[job.claimed_by]
        return job.id not in (held if isinstance(held, (set, frozenset)) else {held})
    host, _, rest = (job.claimed_by or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host == HOST and pid_text.isdigit():
        pid = int(pid_text)
        # Our own pid but not a live worker of ours: a worker thread of this process that is gone.
        if pid == os.getpid() or not _pid_alive(pid):
            return True
    # Another machine, or a pid that may have been reused: only a stale heartbeat tells.
    beat = job.heartbeat_at or job.started_at
    return beat is None or utcnow() - beat > timedelta(seconds=stale_after_s)


@dataclass(frozen=True)
class Recovered:
    job_id: str
    action: str  # 'requeued' | 'failed'
    reason: str


def recover_orphans(session: Session, device_id: int, *, live_workers: Collection[str], stale_after_s: float,
                    max_attempts: int) -> list[Recovered]:
    """Re-queue running jobs of this device whose worker is gone; fail those that keep killing workers."""
    out: list[Recovered] = []
    running = session.scalars(select(Job).where(Job.device_id == device_id, Job.status == "running")
                              .with_for_update(skip_locked=True))
    for job in list(running):
        if not _orphaned(job, stale_after_s=stale_after_s, live_workers=live_workers):
            continue
        if job.attempts >= max_attempts:
            reason = (f"worker {job.claimed_by} stopped while running this job (attempt {job.attempts} "
                      f"of {max_attempts}); not resuming: an op may be crashing the benchmark process "
                      "or the host")
            finish(session, job.id, "failed", reason)
            out.append(Recovered(job.id, "failed", reason))
        else:
            requeue(session, job.id, count_attempt=True)
            out.append(Recovered(job.id, "requeued", f"worker {job.claimed_by} is gone; resuming"))
    return out
