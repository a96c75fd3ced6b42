"""Calibration jobs: measure the job's networks (resuming where it stopped), then fit the table's
calibration from them (``services/calibration_jobs.py``)."""

from __future__ import annotations

from pydantic import BaseModel

from profiler_service.jobs.context import ClaimedJob, EngineParams, JobContext, JobKind
from profiler_service.services import calibration_jobs, networks, queue
from profiler_service.services.jobs import get_job
from shared.schemas import OpStats


class CalibrationScope(BaseModel):
    space: str
    resolution: int
    width_mult: float
    num_classes: int


class CalibrationParams(EngineParams):
    samples: int
    seed: int
    scope: CalibrationScope
    network_ids: list[str]  # drawn when the job was queued; the fit's order


def run_calibration(ctx: JobContext, job: ClaimedJob[CalibrationParams]) -> None:
    from profiler_service.measure.runner import measure_networks

    params = job.params
    with ctx.db.session() as s:
        nets = calibration_jobs.networks_of(s, get_job(s, job.id))
        todo = {n.id: list(n.arch["keys"]) for n in nets if n.median_ms is None}
        missing = calibration_jobs.missing_keys(s, job.table_id, [k for keys in todo.values() for k in keys])
        queue.set_progress(s, job.id, len(nets) - len(todo))
    if missing:  # the profile it was queued behind failed or was cancelled
        ctx.fail(job.id, calibration_jobs.missing_message(job.table_id, missing))
        return

    def on_result(net_id: str, stats: OpStats) -> None:
        with ctx.db.session() as s:
            net = networks.get_network(s, net_id)
            networks.store_measured(s, net, ctx.to_nominal(s, stats, params), params.reference)
            queue.add_progress(s, job.id)

    if todo:
        completed = measure_networks(todo, ctx.engine(params), on_result=on_result,
                                     should_cancel=ctx.should_cancel(job.id))
        if not completed:
            ctx.finish(job.id, completed=False)
            return
    with ctx.db.session() as s:
        calibration_jobs.fit_from_job(s, get_job(s, job.id))
    ctx.finish(job.id, completed=True)


KIND = JobKind(calibration_jobs.KIND, CalibrationParams, run_calibration)
