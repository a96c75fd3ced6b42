"""The worker's half of a calibration job: measure its networks (resuming where it stopped), then fit.

Kept beside ``worker.py`` rather than in it: the worker only dispatches on the job's kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profiler_service.services import calibration_jobs as CJ
from profiler_service.services import networks as N
from profiler_service.services import queue as Q
from profiler_service.services.jobs import get_job
from shared.schemas import OpStats

if TYPE_CHECKING:
    from profiler_service.worker import Worker


def run_calibration(worker: Worker, job_id: str) -> None:
    from profiler_service.measure.runner import measure_networks

    with worker.db.session() as s:
        job = get_job(s, job_id)
        params, table_id = dict(job.params), job.table_id
        nets = CJ.networks_of(s, job)
        todo = {n.id: list(n.arch["keys"]) for n in nets if n.median_ms is None}
        missing = CJ.missing_keys(s, table_id, [k for keys in todo.values() for k in keys])
        Q.set_progress(s, job_id, len(nets) - len(todo))
    if missing:  # the profile it was queued behind failed or was cancelled
        worker._fail(job_id, CJ.missing_message(table_id, missing))
        return

    def on_result(net_id: str, stats: OpStats) -> None:
        with worker.db.session() as s:
            net = N.get_network(s, net_id)
            N.store_measured(s, net, worker._to_nominal(s, stats, params), worker.reference(params))
            Q.add_progress(s, job_id)

    if todo:
        completed = measure_networks(todo, worker._engine_args(params), on_result=on_result,
                                     should_cancel=worker._should_cancel(job_id))
        if not completed:
            worker._after_engine(job_id, completed=False)
            return
    with worker.db.session() as s:
        CJ.fit_from_job(s, get_job(s, job_id))
    worker._after_engine(job_id, completed=True)
