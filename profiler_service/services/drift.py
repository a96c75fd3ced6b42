"""Scale a measurement to the device's nominal speed with the drift reference timed alongside it.

A result carries ``ref_ms``, the reference network's median while it was being timed. The first result
on a (device, backend, threads) fixes that configuration's ``nominal_ms``; every result is then stored
as ``stats * nominal_ms / ref_ms``: what it would have taken had the machine run at the speed it had
then. Tables profiled an hour apart and networks measured against them then share one clock. The raw
figure stays recoverable (``median_ms * ref_ms / nominal_ms``) since ``ref_ms`` is stored with it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from profiler_service.db.models import DriftReference
from profiler_service.measure.reference import NAME as REFERENCE
from shared.schemas import OpStats

SCALED = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms")


def nominal_ms(session: Session, device_id: int, backend: str, threads: int, observed_ms: float,
               reference: str = REFERENCE) -> float:
    """This configuration's nominal reference latency; the first observation sets it."""
    where = (DriftReference.device_id == device_id, DriftReference.backend == backend,
             DriftReference.threads == threads, DriftReference.reference == reference)
    found = session.scalar(select(DriftReference.nominal_ms).where(*where))
    if found is not None:
        return found
    try:
        with session.begin_nested():  # another worker of this device may set it first
            session.add(DriftReference(device_id=device_id, backend=backend, threads=threads,
                                       reference=reference, nominal_ms=observed_ms))
        return observed_ms
    except IntegrityError:
        return session.scalar(select(DriftReference.nominal_ms).where(*where))


def to_nominal(stats: OpStats, nominal: float) -> OpStats:
    """The statistics scaled by nominal / ref_ms (unchanged when no reference was timed)."""
    if stats.ref_ms is None or stats.ref_ms <= 0:
        return stats
    factor = nominal / stats.ref_ms
    return stats.model_copy(update={f: getattr(stats, f) * factor for f in SCALED})


def normalise(session: Session, stats: OpStats, *, device_id: int, backend: str, threads: int) -> OpStats:
    if stats.ref_ms is None:
        return stats
    return to_nominal(stats, nominal_ms(session, device_id, backend, threads, stats.ref_ms))
