"""The table's calibrated latency model, fitted on the device from networks it measured.

Calibration is an explicit act over chosen networks, never a side effect of measuring one: a client
validating the model must be able to measure networks the calibration never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_service.db.models import Network, Table
from profiler_service.services import tables as T
from profiler_service.services.errors import Invalid
from shared.calibration import Calibration, fit

MIN_NETWORKS = 3


def fit_table_calibration(session: Session, table: Table, network_ids: Sequence[str]) -> dict:
    ids = list(dict.fromkeys(network_ids))
    if len(ids) < MIN_NETWORKS:
        raise Invalid("network_ids", f"need at least {MIN_NETWORKS} distinct measured networks, got {len(ids)}")
    nets = {n.id: n for n in session.scalars(select(Network).where(Network.id.in_(ids)))}
    unknown = [i for i in ids if i not in nets]
    if unknown:
        raise Invalid("network_ids", f"unknown networks: {unknown[:5]}")
    wrong = [i for i in ids if nets[i].table_id != table.id]
    if wrong:
        raise Invalid("network_ids", f"networks measured against another table: {wrong[:5]}")
    unmeasured = [i for i in ids if nets[i].median_ms is None]
    if unmeasured:
        raise Invalid("network_ids", f"networks not measured yet: {unmeasured[:5]}")
    keys = [nets[i].arch["keys"] for i in ids]
    entries = T.entries(session, table.id, {k for ks in keys for k in ks})
    missing = sorted({k for ks in keys for k in ks if k not in entries})
    if missing:
        raise Invalid("network_ids", f"the table lacks {len(missing)} keys these networks use: {missing[:3]}")
    table_ms = {k: s.median_ms for k, s in entries.items()}
    version = int((table.calibration or {}).get("version", 0)) + 1
    cal = fit(keys, [nets[i].median_ms for i in ids], table_ms, version=version)
    table.calibration = {**cal.to_dict(), "networks": ids}
    T.touch(session, table)
    return table.calibration


def calibrated_ms(table: Table, keys: Sequence[str], table_ms: dict[str, float]) -> float | None:
    if not table.calibration or "intercept_ms" not in table.calibration:
        return None
    return Calibration.from_dict(table.calibration).predict(keys, table_ms)


def clear_calibration(session: Session, table: Table) -> None:
    if table.calibration is None:  # nothing to delete: the table, its ETag and updated_at stay as they are
        return
    table.calibration = None
    T.touch(session, table)
