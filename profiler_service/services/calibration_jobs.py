"""Calibration as one request: the device draws random networks of a space, measures them, and fits.

``POST /v1/tables/{id}/calibration`` with ``samples`` queues a job of kind ``calibration``: its networks
are drawn here from the seed (``shared.sampling``, so the client can reproduce the set), stored as
network rows tied to the job (each visible over ``/v1/networks/{id}`` as it lands), measured by the
worker in one benchmark process, and the table's calibration is fitted from them when the last lands.
Progress is the job's done/total, in networks.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_service.db.models import Device, Job, Network, Table
from profiler_service.measure.reference import name_for
from profiler_service.services import calibration, networks, tables
from profiler_service.services.errors import Invalid
from profiler_service.services.jobs import check_runnable
from shared.arch import make_arch
from shared.sampling import sample_choices
from shared.schemas import CalibrationCreate
from shared.spaces import get_space
from shared.specs import Limits, SpecError

KIND = "calibration"
PENDING = ("queued", "running")


def promised_keys(session: Session, table_id: str) -> set[str]:
    """The keys the table's queued or running profile jobs will store. A calibration job queued now waits
    for those jobs before a worker may claim it (``queue.claim_next_job``), so these count as present."""
    params = session.scalars(select(Job.params).where(Job.table_id == table_id, Job.kind == "profile",
                                                      Job.status.in_(PENDING)))
    return {k for p in params for k in (p or {}).get("keys", ())}


def missing_keys(session: Session, table_id: str, keys: Sequence[str]) -> list[str]:
    have = tables.entries(session, table_id, set(keys))
    return [k for k in dict.fromkeys(keys) if k not in have]


def missing_message(table_id: str, missing: list[str], *, unpromised: bool = False) -> str:
    pending = " and no queued profile job of it measures them" if unpromised else ""
    return (f"table {table_id} lacks {len(missing)} op(s) these networks use (first {missing[0]!r}){pending}; "
            "profile the space into it first (POST /v1/jobs with space, resolution and table_id)")


def create_calibration_job(session: Session, table: Table, req: CalibrationCreate, *, device: Device,
                           limits: Limits, backends: Sequence[str]) -> Job:
    """Queue the job with its networks drawn and stored; the table must hold (or be about to hold) their ops."""
    if table.device_id != device.id:
        raise Invalid("table_id", f"table {table.id} belongs to another device; calibrate it on that one")
    check_runnable(table.backend, table.threads, backends)
    try:
        space = get_space(req.space, req.resolution, req.width_mult, req.num_classes, limits)
        space.all_op_specs(table.batch, limits)  # every op buildable at this batch on this device
        choices = sample_choices(space, req.samples, req.seed)
    except SpecError as e:
        raise Invalid("space", str(e)) from None
    except ValueError as e:  # a space too small to give that many distinct networks
        raise Invalid("samples", str(e)) from None
    archs = [make_arch(space, c) for c in choices]
    missing = missing_keys(session, table.id, [k for a in archs for k in a.keys])
    if missing:
        promised = promised_keys(session, table.id)
        if unpromised := [k for k in missing if k not in promised]:
            raise Invalid("space", missing_message(table.id, unpromised, unpromised=True))
    scope = {"space": space.name, "resolution": space.resolution, "width_mult": space.width_mult,
             "num_classes": space.num_classes}
    job = Job(kind=KIND, device_id=device.id, table_id=table.id, total=len(archs), done=0,
              params={"backend": table.backend, "threads": table.threads, "batch": table.batch,
                      "samples": req.samples, "seed": req.seed, "scope": scope,
                      "reference": name_for(space.name, space.resolution, space.width_mult)})
    session.add(job)
    session.flush()
    ids = []
    for arch in archs:
        predicted, miss = networks.predict(session, table, arch.keys)
        net = Network(job_id=job.id, table_id=table.id, arch=arch.model_dump(), status="queued",
                      predicted_ms=predicted, missing=miss)
        session.add(net)
        session.flush()
        ids.append(net.id)
    job.params = {**job.params, "network_ids": ids}  # the fit's order, and what a resumed job re-reads
    session.flush()
    return job


def networks_of(session: Session, job: Job) -> list[Network]:
    nets = {n.id: n for n in session.scalars(select(Network).where(Network.job_id == job.id))}
    return [nets[i] for i in job.params["network_ids"] if i in nets]


def fit_from_job(session: Session, job: Job) -> dict:
    """Fit the table's calibration from the job's networks; the calibration records what it was fitted on."""
    table = tables.get_table(session, job.table_id)
    cal = calibration.fit_table_calibration(session, table, job.params["network_ids"])
    table.calibration = {**cal, "scope": job.params["scope"], "seed": job.params["seed"], "job_id": job.id}
    tables.touch(session, table)
    return table.calibration
