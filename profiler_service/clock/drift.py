"""The nominal: a configuration's stored quiet speed, and every figure scaled to it with the drift reference
timed alongside.

A result carries ``ref_ms``, the reference network's median while it was being timed, and is stored as
``stats * nominal_ms / ref_ms``: what it takes on this device when nothing else runs, since ``nominal_ms``
is the reference's quiet latency, estimated by each worker from a burst of the reference alone before its
first job on a configuration and reference (``clock/burst.py``). Each job is timed against the reference
matched to its space and resolution (``measure/reference.py``); every nominal, and every figure, names its
reference, so a new nominal rescales only the figures timed against it. The store follows the device: an
estimate quieter than the nominal (by more than ``TOLERANCE``) makes a new version, and so does a slower one
when no other process shared the burst (the worker pools its recent bursts, ``clock/burst.py
RecentBursts``, so a swing of seconds moves nothing). A virtual machine's host wanders: one ran 10% slower
within an hour, and a nominal kept from the fast minutes served every network 3-8% under what the device
then gave. Every figure of that configuration and reference is rescaled to the new version (and a fitted
calibration on whichever side it was timed against it, ``services/calibration.py``), so tables and
networks measured at any time share one clock, the device's recent quiet speed, and the tables' ETags
change with them. A slower burst that another process shared changes nothing: the device was not slower,
only shared. Each stored figure names its ``nominal_ms``; the raw figure stays recoverable
(``median_ms * ref_ms / nominal_ms``).

Where no burst has run yet (a nominal needed before any), the first result's reference fixes the nominal
(``source='first-observation'``); the first burst replaces it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from profiler_service.clock.tenants import unshared
from profiler_service.db.models import DriftReference, Measurement, Network, Table, utcnow
from profiler_service.measure.reference import NAME as REFERENCE
from profiler_service.services import calibration, tables
from shared.schemas import OpStats

SCALED = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms")
BURST, FIRST = "burst", "first-observation"
# Burst estimates of one quiet device differ by about 1%; a new version only for a clearly different one.
TOLERANCE = 0.02


def _where(device_id: int, backend: str, threads: int, reference: str) -> tuple:
    return (DriftReference.device_id == device_id, DriftReference.backend == backend,
            DriftReference.threads == threads, DriftReference.reference == reference)


def current(session: Session, device_id: int, backend: str, threads: int,
            reference: str = REFERENCE) -> DriftReference | None:
    return session.scalar(select(DriftReference).where(*_where(device_id, backend, threads, reference)))


def _insert(session: Session, device_id: int, backend: str, threads: int, reference: str, nominal: float,
            source: str) -> DriftReference | None:
    try:
        with session.begin_nested():  # another worker of this device may set it first
            row = DriftReference(device_id=device_id, backend=backend, threads=threads, reference=reference,
                                 nominal_ms=nominal, source=source, version=1)
            session.add(row)
        return row
    except IntegrityError:
        return None


def nominal_ms(session: Session, device_id: int, backend: str, threads: int, observed_ms: float,
               reference: str = REFERENCE) -> float:
    """This configuration's nominal reference latency; with none yet, the first observation sets it."""
    row = current(session, device_id, backend, threads, reference)
    if row is None:
        row = (_insert(session, device_id, backend, threads, reference, observed_ms, FIRST)
               or current(session, device_id, backend, threads, reference))
    return row.nominal_ms


def record_quiet(session: Session, device_id: int, backend: str, threads: int, estimate_ms: float,
                 reference: str = REFERENCE, others_cores: float | None = None) -> DriftReference:
    """Take a burst's quiet-speed estimate: the first, or a quieter one, becomes the nominal (rescaling); so
    does a slower one from a burst no other process shared (``clock/tenants.py unshared``),
    since then the device itself runs slower now."""
    row = current(session, device_id, backend, threads, reference)
    if row is None:
        row = _insert(session, device_id, backend, threads, reference, estimate_ms, BURST)
        if row is not None:
            return row
        row = current(session, device_id, backend, threads, reference)
    quieter = estimate_ms < row.nominal_ms * (1 - TOLERANCE)
    device_slower = unshared(others_cores) and estimate_ms > row.nominal_ms * (1 + TOLERANCE)
    if row.source == BURST and not (quieter or device_slower):
        return row
    old = row.nominal_ms
    row.nominal_ms, row.source, row.version, row.updated_at = estimate_ms, BURST, row.version + 1, utcnow()
    _rescale(session, device_id, backend, threads, reference, old, estimate_ms)
    return row


def _rescale(session: Session, device_id: int, backend: str, threads: int, reference: str, old: float,
             new: float) -> None:
    """Every figure of the configuration timed against ``reference`` scaled from its nominal (``old`` where
    unrecorded) to ``new``. Figures timed against another reference keep theirs, and so do imported ones
    (no reference recorded): they are on the clock of the device that exported them."""
    rows = list(session.scalars(select(Table).where(Table.device_id == device_id, Table.backend == backend,
                                                    Table.threads == threads)))
    ids = [t.id for t in rows]
    if not ids:
        return
    for model in (Measurement, Network):
        factor = new / func.coalesce(model.nominal_ms, old)
        values = {f: getattr(model, f) * factor for f in SCALED} | {"nominal_ms": new}
        session.execute(update(model).where(model.table_id.in_(ids), model.ref_ms.is_not(None),
                                            model.median_ms.is_not(None),
                                            model.reference == reference)
                        .values(**values).execution_options(synchronize_session=False))
    session.expire_all()
    for row in rows:
        table = session.get(Table, row.id)
        calibration.rescale_calibration(table, reference, new / old)
        tables.touch(session, table)


def to_nominal(stats: OpStats, nominal: float) -> OpStats:
    """The statistics scaled by nominal / ref_ms (unchanged when no reference was timed)."""
    if stats.ref_ms is None or stats.ref_ms <= 0:
        return stats
    factor = nominal / stats.ref_ms
    return stats.model_copy(update={**{f: getattr(stats, f) * factor for f in SCALED}, "nominal_ms": nominal})


def normalise(session: Session, stats: OpStats, *, device_id: int, backend: str, threads: int,
              reference: str = REFERENCE) -> OpStats:
    if stats.ref_ms is None:
        return stats
    return to_nominal(stats, nominal_ms(session, device_id, backend, threads, stats.ref_ms, reference))
