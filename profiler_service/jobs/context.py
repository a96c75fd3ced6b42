"""What every job kind is given: its typed params, and a context through which it reaches the database, the
engine and the ways a job ends (done, failed, back to the queue), without knowing the worker behind it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from profiler_service.clock.device import DeviceClock
from profiler_service.db.engine import Database
from profiler_service.db.outage import is_outage
from profiler_service.measure.reference import NAME as DEFAULT_REFERENCE
from profiler_service.services import queue
from profiler_service.settings import Settings
from shared.schemas import OpStats

if TYPE_CHECKING:  # the engine's modules load torch; a job loads them only when it runs
    from profiler_service.measure.runner import EngineConfig

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# How often a running job's cancel check reads the database (each read also beats the job's heartbeat).
CANCEL_POLL_S = 0.5
# Settling a job (done / failed / requeued) is retried this many times: no path out of a job leaves it running.
SETTLE_TRIES = 30


class EngineParams(BaseModel):
    """The params every job kind stores: where and how its benchmark runs. Kinds extend it."""

    model_config = ConfigDict(extra="ignore")

    backend: str
    threads: int
    batch: int
    # The drift reference the job is timed against (measure/reference.py): the one matched to its space, set
    # when it was queued; a job queued before references were matched uses the default.
    reference: str = DEFAULT_REFERENCE


P = TypeVar("P", bound=EngineParams)


@dataclass(frozen=True)
class ClaimedJob(Generic[P]):
    """A job the worker holds, as its kind sees it."""

    id: str
    table_id: str | None
    params: P


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """A kind of job: the name stored in ``jobs.kind``, its params' model, and what running one does.

    ``run`` ends the job through the context (``finish``, ``fail``, ``requeue``); an exception it raises
    fails the job with that error."""

    name: str
    params: type[P]
    run: Callable[[JobContext, ClaimedJob[P]], None]


class JobContext:
    """The worker, as a running job sees it. One per job run; the worker builds it."""

    def __init__(self, *, db: Database, settings: Settings, device_id: int, worker_id: str,
                 stop: threading.Event, clock: DeviceClock, hold: Callable[[Collection[str]], None],
                 progress: Progress | None = None, on_op_measured: Callable[[], None] | None = None):
        self.db = db
        self.settings = settings
        self.device_id = device_id
        self.worker_id = worker_id
        self.clock = clock
        self._stop = stop
        self._hold = hold
        self._progress = progress
        self._on_op_measured = on_op_measured

    # ---- what the job reports -------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """The worker is shutting down: a job cut short goes back to the queue, not to ``failed``."""
        return self._stop.is_set()

    def hold(self, job_ids: Collection[str]) -> None:
        """The jobs this run holds beside its own (a batch): recovery must not take them back meanwhile."""
        self._hold(job_ids)

    def progress(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(done, total)

    def op_measured(self) -> None:
        if self._on_op_measured is not None:
            self._on_op_measured()

    # ---- how a job ends -------------------------------------------------------------------------

    def settle(self, job_id: str, action: Callable[[Session], object]) -> None:
        """Run a state change until it lands: a busy database delays it, it never skips it."""
        for attempt in range(SETTLE_TRIES):
            try:
                with self.db.session() as s:
                    action(s)
                return
            except SQLAlchemyError as e:
                if is_outage(e):
                    self.db.outage.noticed(e)  # said once for the whole outage
                else:
                    log.warning("job %s: settling failed (%s); retrying", job_id, e)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        # Out of tries: the job is still ours and running; recovery takes it back (we are no longer on it).
        log.error("job %s: could not record its end; recovery will requeue it", job_id)

    def fail(self, job_id: str, error: str) -> None:
        """Failed with ``error``; back to the queue instead when the worker is stopping, and nothing once
        cancelled (only a running job of ours moves)."""
        def act(s: Session) -> None:
            if self.stopping:
                queue.requeue(s, job_id, worker_id=self.worker_id)
            else:
                queue.finish(s, job_id, "failed", error[:4000], worker_id=self.worker_id)
        self.settle(job_id, act)

    def finish(self, job_id: str, *, completed: bool) -> None:
        """After the engine returned: done when it completed; otherwise back to the queue if the worker is
        stopping, else the job was cancelled (or taken over by recovery) and its status already says so."""
        def act(s: Session) -> None:
            if completed:
                queue.finish(s, job_id, "done", worker_id=self.worker_id)
            elif self.stopping:
                queue.requeue(s, job_id, worker_id=self.worker_id)
        self.settle(job_id, act)

    def requeue(self, job_id: str) -> None:
        """Back to the queue, the attempt not counted against it."""
        self.settle(job_id, lambda s: queue.requeue(s, job_id, worker_id=self.worker_id))

    def should_cancel(self, jobs: str | set[str]) -> Callable[[], bool]:
        """A check for the engine: True once the worker stops or the job is no longer ours and running (a
        cancel). ``jobs`` is one job id, or a batch's pending ids (a live set the job shrinks as results
        land): then True once none of them is. Each check (at most every ``CANCEL_POLL_S``) beats the
        heartbeat."""
        last_at, cancelled = 0.0, False

        def check() -> bool:
            nonlocal last_at, cancelled
            if self.stopping:
                return True
            now = time.monotonic()
            if now - last_at >= CANCEL_POLL_S:
                try:
                    with self.db.session() as s:
                        cancelled = not (queue.heartbeat(s, jobs, self.worker_id) if isinstance(jobs, str)
                                         else queue.heartbeat_many(s, jobs, self.worker_id))
                except SQLAlchemyError as e:  # a database blip must not abort a long profile
                    if is_outage(e):
                        self.db.outage.noticed(e)
                    else:
                        log.warning("job %s: status check failed (%s); carrying on", jobs, e)
                last_at = now
            return cancelled
        return check

    # ---- the engine -----------------------------------------------------------------------------

    def engine(self, params: EngineParams) -> EngineConfig:
        """How the benchmark child times this job: the params' configuration, the settings' protocol with
        the configuration's quiet speed, and the nominal burst where one is due."""
        from profiler_service.measure.runner import EngineConfig

        return EngineConfig(backend=params.backend, threads=params.threads, batch=params.batch,
                            protocol=self.clock.protocol(params.backend, params.threads, params.reference),
                            cache_dir=self.settings.cache_dir, reference=params.reference,
                            on_nominal=self.clock.burst_hook(params.backend, params.threads, params.reference))

    def to_nominal(self, session: Session, stats: OpStats, params: EngineParams) -> OpStats:
        """A result scaled to the device's nominal speed, as it is stored."""
        return self.clock.to_nominal(session, stats, params.backend, params.threads, params.reference)
