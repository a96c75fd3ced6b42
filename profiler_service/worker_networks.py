"""The worker's half of network jobs: the ones queued back to back and measured alike run as one batch.

One benchmark process times the whole batch, each network's windows a round apart (``measure/tasks.py
measure_networks``), instead of a process per network with its windows back to back: a slow stretch of the
host's then catches one window of a network, not all three, and 30 networks no longer pay 30 process starts
(torch and onnxruntime imported, the reference exported and warmed: 2-3 s each on this VM). Each network is
stored and its job finished as its result lands. Kept beside ``worker.py``, which only dispatches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profiler_service.services import networks as N
from profiler_service.services import queue as Q
from profiler_service.services.jobs import get_job
from shared.schemas import OpStats

if TYPE_CHECKING:
    from profiler_service.worker import Worker


def run_networks(worker: Worker, job_id: str) -> None:
    from profiler_service.measure.runner import MeasureError, measure_networks

    with worker.db.session() as s:
        first = get_job(s, job_id)
        params = dict(first.params)
        others = Q.claim_batch(s, worker.device_id, worker.id, first, worker.settings.network_batch - 1)
        nets = {job_id: list(params["keys"]), **{j.id: list(j.params["keys"]) for j in others}}
        worker.hold(nets)  # before the claims commit: recovery must see them as ours
    pending = set(nets)

    def on_result(jid: str, stats: OpStats) -> None:
        with worker.db.session() as s:
            net = N.network_for_job(s, jid)
            if net is None:
                raise RuntimeError(f"network job {jid} has no network row")
            if Q.add_progress(s, jid, worker_id=worker.id):  # not after a cancel
                N.store_measured(s, net, worker._to_nominal(s, stats, params), worker.reference(params))
                Q.finish(s, jid, "done", worker_id=worker.id)
        pending.discard(jid)

    try:  # the process stops once every pending job is cancelled; a cancelled one's result is dropped
        completed = measure_networks(nets, worker._engine_args(params), on_result=on_result,
                                     should_cancel=worker._should_cancel(pending))
    except MeasureError as e:
        _settle_failed(worker, pending, e)
        return
    if not completed:
        for jid in list(pending):  # shutdown: back to the queue; cancelled ones stay cancelled
            worker._after_engine(jid, completed=False)


def _settle_failed(worker: Worker, pending: set[str], error: Exception) -> None:
    """The network the process failed on fails with the error; the rest go back to the queue, where they
    are claimed again without it. Where the failure names no network of the batch, all of them fail."""
    culprit = getattr(error, "label", None)
    if culprit not in pending:
        for jid in list(pending):
            worker._fail(jid, str(error) or "measurement failed")
        return
    worker._fail(culprit, "measuring the network failed: " + str(error).removeprefix(f"{culprit}: "))
    for jid in pending - {culprit}:
        worker._settle(jid, lambda s, jid=jid: Q.requeue(s, jid, worker_id=worker.id))
