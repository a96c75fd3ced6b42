"""The job worker: claims this device's jobs one at a time and runs each through its kind (``jobs/``).

Runs as a background thread of the API server (started in the app lifespan) or in the foreground of the
CLI. The benchmarks themselves run in a child process owned by the engine; this thread only blocks on it,
while the job's kind stores each result as it lands (one transaction per op, so a crash never leaves half a
row) and polls the job's status so a DELETE stops the child between or during ops. The worker keeps what is
common to every kind: claiming, heartbeats (through the job context's cancel check), recovering jobs whose
worker is gone, and dispatch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from profiler_service.clock.device import DeviceClock
from profiler_service.db.engine import Database
from profiler_service.db.outage import first_line, is_outage, wait_until_up
from profiler_service.jobs.context import ClaimedJob, JobContext, Progress
from profiler_service.jobs.registry import job_kind
from profiler_service.services import queue
from profiler_service.services.jobs import get_job
from profiler_service.settings import Settings

log = logging.getLogger(__name__)

# Worker ids alive in this process and the job each runs now (the set of them, for a batch of networks):
# recovery must not re-queue a job a sibling thread is running, but must take back one a live worker left
# behind.
LIVE_WORKERS: dict[str, str | frozenset[str] | None] = {}
RECOVER_EVERY_S = 60.0


class Worker:
    def __init__(self, db: Database, settings: Settings, device_id: int, *,
                 on_op_measured: Callable[[], None] | None = None):
        self.db = db
        self.settings = settings
        self.device_id = device_id
        self.id = queue.new_worker_id()
        self.on_op_measured = on_op_measured
        self.clock = DeviceClock(db, settings, device_id)
        self._current_job: str | None = None
        self._holding: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        LIVE_WORKERS[self.id] = None

    def hold(self, job_ids: Collection[str]) -> None:
        """The jobs this worker runs now, when it runs a batch of them."""
        self._holding = frozenset(job_ids)
        if self.id in LIVE_WORKERS:
            LIVE_WORKERS[self.id] = frozenset(job_ids)

    @property
    def current_job(self) -> str | None:
        return self._current_job

    @current_job.setter
    def current_job(self, job_id: str | None) -> None:
        self._current_job = job_id
        self._holding = frozenset() if job_id is None else frozenset({job_id})
        if self.id in LIVE_WORKERS:
            LIVE_WORKERS[self.id] = job_id

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name=f"profiler-worker-{self.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current op; a job cut short by shutdown goes back to the queue."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        LIVE_WORKERS.pop(self.id, None)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_forever(self) -> None:
        last_recover = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_recover > RECOVER_EVERY_S:
                    self.recover()
                    last_recover = time.monotonic()
                if not self.run_once():
                    self._stop.wait(self.settings.poll_interval_s)
            except Exception as e:  # the loop outlives a database outage; the job itself records its errors
                if is_outage(e):
                    self.db.outage.noticed(e)
                    wait_until_up(self.db.ping, self.db.outage, self._stop)
                    continue
                log.exception("worker %s: loop error", self.id)
                self._stop.wait(max(5 * self.settings.poll_interval_s, 2.0))

    def recover(self) -> list[queue.Recovered]:
        with self.db.session() as s:
            done = queue.recover_orphans(s, self.device_id, live_workers=LIVE_WORKERS,
                                         stale_after_s=self.settings.stale_job_s,
                                         max_attempts=self.settings.max_attempts)
        for r in done:
            log.warning("job %s %s: %s", r.job_id, r.action, r.reason)
        return done

    def run_once(self, progress: Progress | None = None) -> bool:
        """Claim and run one job; False when the queue is empty."""
        try:
            with self.db.session() as s:
                job = queue.claim_next_job(s, self.device_id, self.id)
                job_id = job.id if job else None
                self.current_job = job_id  # before the claim commits: recovery must see it as ours
        except BaseException:
            self.current_job = None
            raise
        if job_id is None:
            return False
        self.run_job(job_id, progress)
        return True

    # ---- one job ---------------------------------------------------------------------------------

    def context(self, progress: Progress | None = None) -> JobContext:
        return JobContext(db=self.db, settings=self.settings, device_id=self.device_id, worker_id=self.id,
                          stop=self._stop, clock=self.clock, hold=self.hold, progress=progress,
                          on_op_measured=self.on_op_measured)

    def run_job(self, job_id: str, progress: Progress | None = None) -> str:
        """Run a job this worker has claimed, through its kind; returns its final status."""
        from profiler_service.measure.runner import MeasureError

        ctx = self.context(progress)
        self.current_job = job_id
        try:
            with self.db.session(write=False) as s:
                row = get_job(s, job_id)
                kind = job_kind(row.kind)
                job = ClaimedJob(job_id, row.table_id, kind.params.model_validate(row.params))
            kind.run(ctx, job)
        except MeasureError as e:
            ctx.fail(job_id, str(e) or "measurement failed")
        except Exception as e:  # recorded on the job: a client polling it must learn why
            if is_outage(e):
                self.retry_after_outage(ctx, self._holding or {job_id}, e)
            else:
                log.exception("job %s failed", job_id)
                ctx.fail(job_id, f"{type(e).__name__}: {e}")
        finally:
            self.current_job = None
        with self.db.session(write=False) as s:
            return get_job(s, job_id).status

    def retry_after_outage(self, ctx: JobContext, job_ids: Collection[str], error: BaseException) -> None:
        """The database went away under a job: no verdict on the job. Once it answers again the job goes back
        to the queue (with the rest of its batch), the attempt counted, so an outage that keeps coming back
        fails it after ``max_attempts``. A worker stopped meanwhile leaves the jobs to recovery."""
        self.db.outage.noticed(error)
        if not wait_until_up(self.db.ping, self.db.outage, self._stop):
            return
        reason = f"database unavailable ({first_line(error)})"
        for job_id in job_ids:
            def act(s, job_id: str = job_id) -> None:
                status = queue.retry(s, job_id, reason, max_attempts=self.settings.max_attempts, worker_id=self.id)
                if status is not None:
                    log.warning("job %s %s after a database outage", job_id, status)
            ctx.settle(job_id, act)
