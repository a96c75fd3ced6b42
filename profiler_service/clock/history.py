"""The device's clock, audited: every burst of a drift reference alone is kept with the nominal it left.

Served milliseconds are scaled to a nominal, the reference's quiet speed from the worker's recent bursts
(``clock/drift.py``). Where the device's own quiet speed moves, so does the nominal, and two figures read
minutes apart differ by what the device did meanwhile, however well each was measured. On a small virtual
machine, fresh benchmark processes' 20 s bursts of one reference op have read 0.065-0.084 ms within ten
minutes, levels that held for a minute or more, and the same ten networks timed directly twice, 101 s
apart, disagreed by 6.6% on average. The history makes that floor visible beside the figures
(``GET /v1/device/clocks``): each burst, the nominal and version after it, and how far the last hour's
unshared bursts lay apart.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from profiler_service.clock.tenants import unshared
from profiler_service.db.models import DriftReference, NominalBurst, utcnow
from shared.schemas import ClockOut, NominalBurstOut

KEEP = 500  # bursts kept per configuration: at one per 5-minute refresh, about 40 hours of a busy worker
SPREAD_WINDOW = timedelta(hours=1)


def _where(row: DriftReference) -> tuple:
    return (NominalBurst.device_id == row.device_id, NominalBurst.backend == row.backend,
            NominalBurst.threads == row.threads, NominalBurst.reference == row.reference)


def log_burst(session: Session, row: DriftReference, *, burst_ms: float, pooled_ms: float,
              others_cores: float | None) -> NominalBurst:
    """Keep a burst beside ``row``, the configuration's nominal as the burst left it; the oldest beyond
    ``KEEP`` go."""
    burst = NominalBurst(device_id=row.device_id, backend=row.backend, threads=row.threads,
                         reference=row.reference, burst_ms=burst_ms, pooled_ms=pooled_ms,
                         nominal_ms=row.nominal_ms, version=row.version, others_cores=others_cores)
    session.add(burst)
    session.flush()
    oldest_kept = session.scalar(select(NominalBurst.id).where(*_where(row))
                                 .order_by(NominalBurst.id.desc()).offset(KEEP - 1).limit(1))
    if oldest_kept is not None:
        session.execute(delete(NominalBurst).where(*_where(row), NominalBurst.id < oldest_kept))
    return burst


def spread_pct(bursts_ms: list[float]) -> float | None:
    """(max - min) / median of burst estimates, in %; None for fewer than two."""
    if len(bursts_ms) < 2:
        return None
    a = np.asarray(bursts_ms)
    return float(100 * (a.max() - a.min()) / np.median(a))


def clocks(session: Session, device_id: int, bursts: int = 20) -> list[ClockOut]:
    """Each configuration's nominal on this device with its latest ``bursts`` bursts, newest first."""
    rows = session.scalars(select(DriftReference).where(DriftReference.device_id == device_id)
                           .order_by(DriftReference.backend, DriftReference.threads, DriftReference.reference)).all()
    since = utcnow() - SPREAD_WINDOW
    out = []
    for row in rows:
        recent = session.scalars(select(NominalBurst).where(*_where(row)).order_by(NominalBurst.id.desc())
                                 .limit(bursts)).all() if bursts else []
        hour = session.execute(select(NominalBurst.burst_ms, NominalBurst.others_cores)
                               .where(*_where(row), NominalBurst.at >= since)).all()
        quiet = [ms for ms, cores in hour if unshared(cores)]
        out.append(ClockOut(
            backend=row.backend, threads=row.threads, reference=row.reference, nominal_ms=row.nominal_ms,
            version=row.version, source=row.source, updated_at=row.updated_at,
            bursts=[NominalBurstOut(at=b.at, burst_ms=b.burst_ms, pooled_ms=b.pooled_ms, nominal_ms=b.nominal_ms,
                                    version=b.version, others_cores=b.others_cores,
                                    shared=not unshared(b.others_cores)) for b in recent],
            spread_pct=spread_pct(quiet), spread_bursts=len(quiet)))
    return out
