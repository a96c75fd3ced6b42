"""The job worker: claims this device's jobs one at a time and runs them through the measurement engine.

Runs as a background thread of the API server (started in the app lifespan) or in the foreground of the
CLI. The benchmarks themselves run in a child process owned by the engine; this thread only blocks on it,
stores each result as it lands (one transaction per op, so a crash never leaves half a row) and polls the
job's status so a DELETE stops the child between or during ops.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from profiler_service.db.engine import Database
from profiler_service.db.models import Table
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from profiler_service.services import clock as CL
from profiler_service.services import drift as D
from profiler_service.services import queue as Q
from profiler_service.services import tables as T
from profiler_service.services.jobs import get_job
from profiler_service.settings import Settings
from shared.schemas import OpStats

if TYPE_CHECKING:  # the engine's modules load numpy; the worker loads them only when it runs a job
    from profiler_service.measure.nominal import BurstStats, RecentBursts
    from profiler_service.measure.protocol import Protocol
    from profiler_service.measure.runner import EngineConfig

log = logging.getLogger(__name__)

# Worker ids alive in this process and the job each runs now (the set of them, for a batch of networks):
# recovery must not re-queue a job a sibling thread is running, but must take back one a live worker left
# behind.
LIVE_WORKERS: dict[str, str | frozenset[str] | None] = {}
_CANCEL_POLL_S = 0.5
_RECOVER_EVERY_S = 60.0
# Settling a job (done / failed / requeued) is retried this long: no path out of a job leaves it running.
_SETTLE_TRIES = 30

Progress = Callable[[int, int], None]


class Worker:
    def __init__(self, db: Database, settings: Settings, device_id: int, *,
                 on_op_measured: Callable[[], None] | None = None):
        self.db = db
        self.settings = settings
        self.device_id = device_id
        self.id = Q.new_worker_id()
        self.on_op_measured = on_op_measured
        self._current_job: str | None = None
        # (backend, threads, reference) -> when this worker last timed that reference alone (its nominal)
        self._nominal_at: dict[tuple[str, int, str], float] = {}
        self._bursts: dict[tuple[str, int, str], RecentBursts] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        LIVE_WORKERS[self.id] = None

    def hold(self, job_ids) -> None:
        """The jobs this worker runs now, when it runs a batch of them (``worker_networks.py``)."""
        if self.id in LIVE_WORKERS:
            LIVE_WORKERS[self.id] = frozenset(job_ids)

    @property
    def current_job(self) -> str | None:
        return self._current_job

    @current_job.setter
    def current_job(self, job_id: str | None) -> None:
        self._current_job = job_id
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
                if time.monotonic() - last_recover > _RECOVER_EVERY_S:
                    self.recover()
                    last_recover = time.monotonic()
                if not self.run_once():
                    self._stop.wait(self.settings.poll_interval_s)
            except Exception:  # the loop must outlive a database hiccup; the job itself records its errors
                log.exception("worker %s: loop error", self.id)
                self._stop.wait(max(5 * self.settings.poll_interval_s, 2.0))

    def recover(self) -> list[Q.Recovered]:
        with self.db.session() as s:
            done = Q.recover_orphans(s, self.device_id, live_workers=LIVE_WORKERS,
                                     stale_after_s=self.settings.stale_job_s,
                                     max_attempts=self.settings.max_attempts)
        for r in done:
            log.warning("job %s %s: %s", r.job_id, r.action, r.reason)
        return done

    def run_once(self, progress: Progress | None = None) -> bool:
        """Claim and run one job; False when the queue is empty."""
        try:
            with self.db.session() as s:
                job = Q.claim_next_job(s, self.device_id, self.id)
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

    def run_job(self, job_id: str, progress: Progress | None = None) -> str:
        """Run a job this worker has claimed; returns its final status."""
        from profiler_service.measure.runner import MeasureError

        self.current_job = job_id
        try:
            with self.db.session(write=False) as s:
                kind = get_job(s, job_id).kind
            if kind == "network":
                from profiler_service.worker_networks import run_networks

                run_networks(self, job_id)
            elif kind == "calibration":
                from profiler_service.worker_calibration import run_calibration

                run_calibration(self, job_id)
            else:
                self._run_profile(job_id, progress)
        except MeasureError as e:
            self._fail(job_id, str(e) or "measurement failed")
        except Exception as e:  # recorded on the job: a client polling it must learn why
            log.exception("job %s failed", job_id)
            self._fail(job_id, f"{type(e).__name__}: {e}")
        finally:
            self.current_job = None
        with self.db.session(write=False) as s:
            return get_job(s, job_id).status

    def _settle(self, job_id: str, action: Callable) -> None:
        """Run a state change until it lands: a busy database delays it, it never skips it."""
        for attempt in range(_SETTLE_TRIES):
            try:
                with self.db.session() as s:
                    action(s)
                return
            except SQLAlchemyError as e:
                log.warning("job %s: settling failed (%s); retrying", job_id, e)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        # Out of tries: the job is still ours and running; recovery takes it back (we are no longer on it).
        log.error("job %s: could not record its end; recovery will requeue it", job_id)

    def _fail(self, job_id: str, error: str) -> None:
        def act(s) -> None:
            if self._stop.is_set():
                Q.requeue(s, job_id, worker_id=self.id)
            else:
                Q.finish(s, job_id, "failed", error[:4000], worker_id=self.id)
        self._settle(job_id, act)

    def _should_cancel(self, jobs: str | set[str]) -> Callable[[], bool]:
        """A check for the engine: True once the worker stops or the job is no longer ours and running (a
        cancel). ``jobs`` is one job id, or a batch's pending ids (a live set, ``worker_networks.py``):
        then True once none of them is. Each check (at most every ``_CANCEL_POLL_S``) beats the heartbeat."""
        last = [0.0, False]

        def check() -> bool:
            if self._stop.is_set():
                return True
            now = time.monotonic()
            if now - last[0] >= _CANCEL_POLL_S:
                try:
                    with self.db.session() as s:
                        last[1] = not (Q.heartbeat(s, jobs, self.id) if isinstance(jobs, str)
                                       else Q.heartbeat_many(s, jobs, self.id))
                except SQLAlchemyError as e:  # a database blip must not abort a long profile
                    log.warning("job %s: status check failed (%s); carrying on", jobs, e)
                last[0] = now
            return last[1]
        return check

    @staticmethod
    def reference(params: dict) -> str:
        """The drift reference a job is timed against (measure/reference.py): the one matched to its space,
        set when it was queued; a job queued before references were matched uses the default."""
        return params.get("reference", DEFAULT_REFERENCE)

    def _engine_args(self, params: dict) -> EngineConfig:
        from profiler_service.measure.runner import EngineConfig

        return EngineConfig(backend=params["backend"], threads=int(params["threads"]),
                            batch=int(params["batch"]), protocol=self._protocol(params),
                            cache_dir=self.settings.cache_dir, on_nominal=self._nominal_hook(params),
                            reference=self.reference(params))

    def _protocol(self, params: dict) -> Protocol:
        """The settings' protocol, with the configuration's quiet reference speed (its nominal, where one is
        known) for the child to tell a measurement the device's other tenants slowed down."""
        with self.db.session(write=False) as s:
            row = D.current(s, self.device_id, params["backend"], int(params["threads"]), self.reference(params))
            quiet = row.nominal_ms if row is not None and row.source == D.BURST else None
        return dataclasses.replace(self.settings.protocol, quiet_ref_ms=quiet)

    def _nominal_hook(self, params: dict) -> Callable[[BurstStats], None] | None:
        """Before this worker's first job on a configuration and reference (and the first after each
        ``nominal_refresh_s``), the child times the reference alone and the quiet-speed estimate goes to the
        store (services/drift.py), ahead of any result."""
        cfg = (params["backend"], int(params["threads"]), self.reference(params))
        last = self._nominal_at.get(cfg)
        if last is not None and time.monotonic() - last < self.settings.nominal_refresh_s:
            return None

        from profiler_service.measure.nominal import RecentBursts

        def on_nominal(stats: BurstStats) -> None:
            # the bursts of the last three refresh periods, pooled: a swing of seconds does not move it
            recent = self._bursts.setdefault(cfg, RecentBursts(3 * self.settings.nominal_refresh_s))
            estimate = recent.add(time.monotonic(), stats)
            with self.db.session() as s:
                row = D.record_quiet(s, self.device_id, cfg[0], cfg[1], estimate, reference=cfg[2],
                                     others_cores=stats.others_cores)
                CL.log_burst(s, row, burst_ms=stats.median_ms, pooled_ms=estimate, others_cores=stats.others_cores)
                log.info("nominal %s/%d threads/%s: burst %.3f ms, recent bursts %.3f ms (others busy on %s cores)"
                         " -> nominal %.3f ms (v%d)", *cfg, stats.median_ms, estimate, stats.others_cores,
                         row.nominal_ms, row.version)
            self._nominal_at[cfg] = time.monotonic()
        return on_nominal

    def _to_nominal(self, session, stats: OpStats, params: dict) -> OpStats:
        return D.normalise(session, stats, device_id=self.device_id, backend=params["backend"],
                           threads=int(params["threads"]), reference=self.reference(params))

    def _after_engine(self, job_id: str, completed: bool) -> None:
        def act(s) -> None:
            if completed:
                Q.finish(s, job_id, "done", worker_id=self.id)
            elif self._stop.is_set():
                Q.requeue(s, job_id, worker_id=self.id)
            # else: cancelled (or taken over by recovery): the status already says so.
        self._settle(job_id, act)

    def _run_profile(self, job_id: str, progress: Progress | None) -> None:
        from profiler_service.measure.runner import measure_ops

        with self.db.session() as s:
            job = get_job(s, job_id)
            params, table_id = dict(job.params), job.table_id
            all_keys = list(params["keys"])
            stored = T.keys_stored_by_job(s, job_id)  # resume: skip what this job already measured
            todo = [k for k in all_keys if k not in stored]
            Q.set_progress(s, job_id, len(all_keys) - len(todo))
        done = [len(all_keys) - len(todo)]
        if progress:
            progress(done[0], len(all_keys))

        # What this job measured, by its own account: the rows' job_id is only who wrote them last, and
        # another job (or an import) re-measuring a shared key overwrites it.
        measured = set(all_keys) - set(todo)

        def on_result(key: str, stats: OpStats) -> None:
            with self.db.session() as s:
                # Counted and stored in one transaction, only while the job is still ours and running:
                # a result that lands after a cancel is dropped, and the cancelled job's count stays put.
                if not Q.add_progress(s, job_id, worker_id=self.id):
                    return
                table = s.get(Table, table_id)
                stats = self._to_nominal(s, stats, params)
                T.upsert_measurements(s, table, {key: stats}, job_id=job_id, reference=self.reference(params))
            measured.add(key)
            done[0] += 1
            if self.on_op_measured:
                self.on_op_measured()
            if progress:
                progress(done[0], len(all_keys))

        if todo:
            measure_ops(todo, self._engine_args(params), on_result=on_result,
                        should_cancel=self._should_cancel(job_id))
        # Settle from what was stored, not from how the engine returned: every key stored is done, even if a
        # cancel or shutdown raced the last op.
        left = [k for k in all_keys if k not in measured]

        def act(s) -> None:
            if not left:
                Q.finish(s, job_id, "done", worker_id=self.id)
            elif self._stop.is_set():
                Q.requeue(s, job_id, worker_id=self.id)
            else:  # no-op when cancelled (finish only moves a running job of ours)
                Q.finish(s, job_id, "failed", f"the engine stopped with {len(left)} op(s) unmeasured, "
                                              f"first {left[0]!r}", worker_id=self.id)
        self._settle(job_id, act)
