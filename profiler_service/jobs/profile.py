"""Profile jobs: each op key of a space (or a list) timed alone and stored in the table as it lands.

A resumed job skips the keys it stored itself; the job is done when every key is stored, whoever wrote the
rows last."""

from __future__ import annotations

from profiler_service.db.models import Table
from profiler_service.jobs.context import ClaimedJob, EngineParams, JobContext, JobKind
from profiler_service.services import queue, tables
from shared.schemas import OpStats


class ProfileParams(EngineParams):
    keys: list[str]
    # what the keys were resolved from, kept for the record (None for an explicit list of keys)
    space: str | None = None
    resolution: int | None = None
    width_mult: float | None = None
    num_classes: int | None = None


def run_profile(ctx: JobContext, job: ClaimedJob[ProfileParams]) -> None:
    from profiler_service.measure.runner import measure_ops

    params, all_keys = job.params, list(job.params.keys)
    with ctx.db.session() as s:
        stored = tables.keys_stored_by_job(s, job.id)  # resume: skip what this job already measured
        todo = [k for k in all_keys if k not in stored]
        queue.set_progress(s, job.id, len(all_keys) - len(todo))
    done = len(all_keys) - len(todo)
    ctx.progress(done, len(all_keys))

    # What this job measured, by its own account: the rows' job_id is only who wrote them last, and
    # another job (or an import) re-measuring a shared key overwrites it.
    measured = set(all_keys) - set(todo)

    def on_result(key: str, stats: OpStats) -> None:
        nonlocal done
        with ctx.db.session() as s:
            # Counted and stored in one transaction, only while the job is still ours and running:
            # a result that lands after a cancel is dropped, and the cancelled job's count stays put.
            if not queue.add_progress(s, job.id, worker_id=ctx.worker_id):
                return
            table = s.get(Table, job.table_id)
            tables.upsert_measurements(s, table, {key: ctx.to_nominal(s, stats, params)}, job_id=job.id,
                                       reference=params.reference)
        measured.add(key)
        done += 1
        ctx.op_measured()
        ctx.progress(done, len(all_keys))

    if todo:
        measure_ops(todo, ctx.engine(params), on_result=on_result, should_cancel=ctx.should_cancel(job.id))
    # Settle from what was stored, not from how the engine returned: every key stored is done, even if a
    # cancel or shutdown raced the last op.
    left = [k for k in all_keys if k not in measured]
    if not left:
        ctx.finish(job.id, completed=True)
    else:  # back to the queue on shutdown; nothing once cancelled
        ctx.fail(job.id, f"the engine stopped with {len(left)} op(s) unmeasured, first {left[0]!r}")


KIND = JobKind("profile", ProfileParams, run_profile)
