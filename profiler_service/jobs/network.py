"""Network jobs: the ones queued back to back and measured alike run as one batch.

One benchmark process times the whole batch, each network's windows a round apart (``measure/tasks.py``),
instead of a process per network with its windows back to back: a slow stretch of the host's then catches
one window of a network, not all three, and 30 networks no longer pay 30 process starts (torch and
onnxruntime imported, the reference exported and warmed: seconds each). Each network is stored and its job
finished as its result lands.
"""

from __future__ import annotations

from profiler_service.jobs.context import ClaimedJob, EngineParams, JobContext, JobKind
from profiler_service.services import networks, queue
from profiler_service.services.jobs import get_job
from shared.schemas import OpStats


class NetworkParams(EngineParams):
    keys: list[str]  # the network's ops in order


def run_networks(ctx: JobContext, job: ClaimedJob[NetworkParams]) -> None:
    from profiler_service.measure.runner import MeasureError, measure_networks

    params = job.params
    with ctx.db.session() as s:
        others = queue.claim_batch(s, ctx.device_id, ctx.worker_id, get_job(s, job.id),
                                   ctx.settings.network_batch - 1)
        nets = {job.id: list(params.keys), **{j.id: list(NetworkParams.model_validate(j.params).keys)
                                              for j in others}}
        ctx.hold(nets)  # before the claims commit: recovery must see them as ours
    pending = set(nets)

    def on_result(job_id: str, stats: OpStats) -> None:
        with ctx.db.session() as s:
            net = networks.network_for_job(s, job_id)
            if net is None:
                raise RuntimeError(f"network job {job_id} has no network row")
            if queue.add_progress(s, job_id, worker_id=ctx.worker_id):  # not after a cancel
                networks.store_measured(s, net, ctx.to_nominal(s, stats, params), params.reference)
                queue.finish(s, job_id, "done", worker_id=ctx.worker_id)
        pending.discard(job_id)

    try:  # the process stops once every pending job is cancelled; a cancelled one's result is dropped
        completed = measure_networks(nets, ctx.engine(params), on_result=on_result,
                                     should_cancel=ctx.should_cancel(pending))
    except MeasureError as e:
        settle_failed(ctx, pending, e)
        return
    if not completed:
        for job_id in list(pending):  # shutdown: back to the queue; cancelled ones stay cancelled
            ctx.finish(job_id, completed=False)


def settle_failed(ctx: JobContext, pending: set[str], error: Exception) -> None:
    """The network the process failed on fails with the error; the rest go back to the queue, where they
    are claimed again without it. Where the failure names no network of the batch, all of them fail."""
    culprit = getattr(error, "label", None)
    if culprit not in pending:
        for job_id in list(pending):
            ctx.fail(job_id, str(error) or "measurement failed")
        return
    ctx.fail(culprit, "measuring the network failed: " + str(error).removeprefix(f"{culprit}: "))
    for job_id in pending - {culprit}:
        ctx.requeue(job_id)


KIND = JobKind("network", NetworkParams, run_networks)
