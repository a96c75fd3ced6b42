"""Job kinds are plug-ins: the worker runs any registered kind through its typed params and the job context,
and a job it cannot run (unknown kind, params that do not fit) fails saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from profiler_service.db import Database, Job
from profiler_service.jobs import registry
from profiler_service.jobs.context import ClaimedJob, EngineParams, JobContext, JobKind
from profiler_service.services import queue, tables
from profiler_service.settings import Settings
from profiler_service.worker import Worker

sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


class CountParams(EngineParams):
    steps: int


def run_count(ctx: JobContext, job: ClaimedJob[CountParams]) -> None:
    """Counts its steps as results, then ends through the context, as a built-in kind does."""
    if job.params.steps < 0:
        raise ValueError("cannot count down")
    for _ in range(job.params.steps):
        with ctx.db.session() as s:
            queue.add_progress(s, job.id, worker_id=ctx.worker_id)
        ctx.progress(_ + 1, job.params.steps)
    ctx.finish(job.id, completed=True)


@pytest.fixture
def count_kind() -> Iterator[JobKind]:
    kind = registry.register(JobKind("count", CountParams, run_count))
    yield kind
    registry.KINDS.pop("count")


def queue_job(db: Database, device_id: int, kind: str, params: dict) -> str:
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", "onnxruntime", 1, 1)
        job = Job(kind=kind, device_id=device_id, table_id=table.id, total=params.get("steps", 1), params=params)
        s.add(job)
        s.flush()
        return job.id


def run_next(db: Database, device_id: int, tmp_path) -> Job:
    """The worker claims the queue's next job and runs it; the job as it ended."""
    worker = Worker(db, Settings(cache_dir=tmp_path, worker=False), device_id)
    with db.session() as s:
        job_id = queue.claim_next_job(s, device_id, worker.id).id
    worker.run_job(job_id)
    with db.session(write=False) as s:
        return s.get(Job, job_id)


ENGINE = {"backend": "onnxruntime", "threads": 1, "batch": 1}


@sqlite_only
def test_a_registered_kind_runs_through_the_worker(db: Database, device_id: int, tmp_path, count_kind):
    job_id = queue_job(db, device_id, "count", {**ENGINE, "steps": 3})
    seen = []
    worker = Worker(db, Settings(cache_dir=tmp_path, worker=False), device_id)
    with db.session() as s:
        assert queue.claim_next_job(s, device_id, worker.id).id == job_id
    assert worker.run_job(job_id, progress=lambda d, t: seen.append((d, t))) == "done"
    with db.session(write=False) as s:
        job = s.get(Job, job_id)
    assert (job.status, job.done, job.error) == ("done", 3, None) and seen == [(1, 3), (2, 3), (3, 3)]


@sqlite_only
def test_an_error_in_a_kind_fails_its_job_with_the_reason(db: Database, device_id: int, tmp_path, count_kind):
    queue_job(db, device_id, "count", {**ENGINE, "steps": -1})
    job = run_next(db, device_id, tmp_path)
    assert (job.status, job.error) == ("failed", "ValueError: cannot count down")


@sqlite_only
def test_params_that_do_not_fit_the_kind_fail_the_job_naming_the_field(db: Database, device_id: int, tmp_path,
                                                                       count_kind):
    queue_job(db, device_id, "count", {**ENGINE, "steps": "many"})
    job = run_next(db, device_id, tmp_path)
    assert job.status == "failed" and job.error.startswith("ValidationError") and "steps" in job.error


@sqlite_only
def test_a_job_of_an_unknown_kind_fails_naming_it(db: Database, device_id: int, tmp_path):
    queue_job(db, device_id, "energy", ENGINE)
    job = run_next(db, device_id, tmp_path)
    assert job.status == "failed" and "no job kind 'energy'" in job.error and "'profile'" in job.error


def test_a_taken_name_is_refused(count_kind):
    assert registry.register(count_kind) is count_kind  # the same kind again: nothing changes
    with pytest.raises(ValueError, match="'profile' is already registered"):
        registry.register(JobKind("profile", CountParams, run_count))
    assert registry.job_kind("profile") is registry.BUILT_IN[0]


def test_the_built_in_kinds_are_the_stored_names():
    assert set(registry.KINDS) >= {"profile", "network", "calibration"}
