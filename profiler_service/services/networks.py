"""Whole-network measurements next to the table's prediction: the fidelity number the product lives by."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_service.db.models import Device, Job, Network, Table, utcnow
from profiler_service.measure.reference import name_for
from profiler_service.services import calibration, tables
from profiler_service.services.errors import Invalid, NotFound
from profiler_service.services.jobs import check_runnable
from shared.arch import Arch, from_net_config, resolve
from shared.schemas import NetworkCreate, NetworkOut, OpStats
from shared.spaces import get_space
from shared.specs import Limits, SpecError, parse_key, validate

_STATS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "count", "ref_ms", "nominal_ms")


def _table_ms(session: Session, table: Table, keys: Sequence[str]) -> dict[str, float]:
    return {k: s.median_ms for k, s in tables.entries(session, table.id, set(keys)).items()}


def _sum(table_ms: dict[str, float], keys: Sequence[str]) -> tuple[float | None, list[str]]:
    """Sum of table medians along the net (a repeated op counts each time).

    With any key missing there is no prediction (None), never a partial sum that looks like one; the
    missing keys are listed so the client can profile them.
    """
    missing = list(dict.fromkeys(k for k in keys if k not in table_ms))
    if missing:
        return None, missing
    return sum(table_ms[k] for k in keys), []


def predict(session: Session, table: Table, keys: Sequence[str]) -> tuple[float | None, list[str]]:
    return _sum(_table_ms(session, table, keys), keys)


def create_network_job(session: Session, req: NetworkCreate, *, device: Device, limits: Limits,
                       backends: Sequence[str]) -> Network:
    """Measured on this device with the table's backend, threads and batch; predicted from the table."""
    table = tables.get_table(session, req.table_id)
    if table.backend not in backends:
        raise Invalid("table_id", f"table {table.id} is for backend {table.backend!r}, which this device "
                                  f"cannot run; available: {list(backends)}")
    check_runnable(table.backend, table.threads, backends)
    if req.net_config is not None:
        arch = from_net_config(req.net_config, req.resolution)
    else:
        fields = req.arch.model_dump()
        if fields["num_classes"] is None:  # the space's default, not ImageNet's 1000
            fields["num_classes"] = get_space(req.arch.space).num_classes
        arch = resolve(Arch(**fields))
    for i, key in enumerate(arch.keys):
        try:
            validate(parse_key(key, limits), limits, table.batch)
        except SpecError as e:
            raise Invalid(f"arch op {i}", f"{e} (key {key!r})") from None
    predicted, missing = predict(session, table, arch.keys)
    job = Job(kind="network", device_id=device.id, table_id=table.id, total=1, done=0,
              params={"keys": arch.keys, "backend": table.backend, "threads": table.threads,
                      "batch": table.batch, "reference": name_for(arch.space, arch.resolution, arch.width_mult)})
    session.add(job)
    session.flush()
    net = Network(job_id=job.id, table_id=table.id, arch=arch.model_dump(), status="queued",
                  predicted_ms=predicted, missing=missing)
    session.add(net)
    session.flush()
    return net


def get_network(session: Session, network_id: str) -> Network:
    net = session.get(Network, network_id)
    if net is None:
        raise NotFound(f"network {network_id!r} not found")
    return net


def network_for_job(session: Session, job_id: str) -> Network | None:
    return session.scalar(select(Network).where(Network.job_id == job_id))


def network_out(session: Session, net: Network) -> NetworkOut:
    """The prediction is recomputed from the table as it is now: profiling after the request fills it in."""
    table = tables.get_table(session, net.table_id)
    keys = net.arch.get("keys", [])
    table_ms = _table_ms(session, table, keys)
    predicted, missing = _sum(table_ms, keys)
    calibrated = calibration.calibrated_ms(table, keys, table_ms) if predicted is not None else None
    measured = (OpStats(**{f: getattr(net, f) for f in _STATS}) if net.median_ms is not None else None)
    return NetworkOut(id=net.id, status=net.status, table_id=net.table_id, arch=net.arch, measured=measured,
                      predicted_ms=predicted, calibrated_ms=calibrated, missing=missing, error=net.error)


def store_measured(session: Session, net: Network, stats: OpStats, reference: str | None = None) -> None:
    for f in _STATS:
        setattr(net, f, getattr(stats, f))
    net.reference = reference if stats.ref_ms is not None else None
    table = tables.get_table(session, net.table_id)
    net.predicted_ms, net.missing = predict(session, table, net.arch.get("keys", []))
    net.finished_at = utcnow()
    session.flush()
