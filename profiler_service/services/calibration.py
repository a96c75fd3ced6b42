"""The table's calibrated latency model, fitted on the device from networks it measured.

Calibration is an explicit act over chosen networks, never a side effect of measuring one: a client
validating the model must be able to measure networks the calibration never saw.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from profiler_service.db.models import Measurement, Network, Table
from profiler_service.services import tables
from profiler_service.services.errors import Invalid
from shared.calibration import Calibration, fit
from shared.spaces import get_space

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
    entries = tables.entries(session, table.id, {k for ks in keys for k in ks})
    missing = sorted({k for ks in keys for k in ks if k not in entries})
    if missing:
        raise Invalid("network_ids", f"the table lacks {len(missing)} keys these networks use: {missing[:3]}")
    table_ms = {k: s.median_ms for k, s in entries.items()}
    version = int((table.calibration or {}).get("version", 0)) + 1
    scope = common_scope([nets[i].arch for i in ids])
    cal = fit(keys, [nets[i].median_ms for i in ids], table_ms, version=version,
              floor_ms=cheapest_raw_ms(session, table, scope))
    clock = {"entries": _references(session, table, entries), "networks": sorted({nets[i].reference for i in ids
                                                                                    if nets[i].reference})}
    table.calibration = {**cal.to_dict(), "networks": ids, "clock": clock}
    if scope is not None:
        table.calibration["scope"] = scope
    tables.touch(session, table)
    return table.calibration


SCOPE = ("space", "resolution", "width_mult", "num_classes")


def common_scope(archs: Sequence[dict]) -> dict | None:
    """The space and size every network was drawn from, when they all name the same one: what a search
    checks a calibration against before trusting it (a fit without one it would replace with its own)."""
    scopes = {tuple(arch.get(k) for k in SCOPE) for arch in archs}
    if len(scopes) != 1 or None in (only := scopes.pop()):
        return None
    return dict(zip(SCOPE, only, strict=True))


def cheapest_raw_ms(session: Session, table: Table, scope: dict | None) -> float | None:
    """The table's raw sum for the cheapest network of the scope's space (each layer's cheapest candidate),
    which the fit must price above zero; None when the scope or a candidate's entry is unknown."""
    if scope is None:
        return None
    try:
        space = get_space(scope["space"], scope["resolution"], scope["width_mult"], scope["num_classes"])
    except (KeyError, ValueError):
        return None
    layers = [[layer.spec(name) for name in layer.candidates] for layer in space.layers]
    keys = {s.key for s in (*space.prefix, *space.suffix)} | {s.key for specs in layers for s in specs if s}
    ms = {k: s.median_ms for k, s in tables.entries(session, table.id, keys).items()}
    if not keys <= ms.keys():
        return None
    return (sum(ms[s.key] for s in (*space.prefix, *space.suffix))
            + sum(min(ms[s.key] if s else 0.0 for s in specs) for specs in layers))


def _references(session: Session, table: Table, keys: Collection[str]) -> list[str]:
    """The drift references the table's entries for ``keys`` were timed against (their clocks)."""
    return sorted(session.scalars(select(Measurement.reference).distinct().where(
        Measurement.table_id == table.id, Measurement.key.in_(list(keys)), Measurement.reference.is_not(None))))


def rescale_calibration(table: Table, reference: str, factor: float) -> None:
    """Keep a fitted calibration's predictions on the networks' clock when ``reference``'s nominal moved by
    ``factor``: the table's entries (op-sized reference) and the networks (whole-network reference) are timed
    against different references, so a new nominal of one scales one side of the fit only. Calibrations
    fitted before the clock was recorded are left as they are."""
    cal = table.calibration or {}
    clock = cal.get("clock")
    if not clock or "intercept_ms" not in cal:
        return
    inputs = factor if reference in clock.get("entries", []) else 1.0
    outputs = factor if reference in clock.get("networks", []) else 1.0
    if inputs != 1.0 or outputs != 1.0:
        table.calibration = {**cal, **Calibration.from_dict(cal).rescaled(inputs=inputs, outputs=outputs).to_dict()}


def network_ms(session: Session, table: Table) -> list[float]:
    """The measured medians of the networks the table's calibration was fitted on, in its order: the
    device's own range for the space, which a relative budget (``--max-ms p50``) is a percentile of."""
    ids = list((table.calibration or {}).get("networks") or [])
    nets = {n.id: n for n in session.scalars(select(Network).where(Network.id.in_(ids)))}
    return [nets[i].median_ms for i in ids if i in nets and nets[i].median_ms is not None]


def calibrated_ms(table: Table, keys: Sequence[str], table_ms: dict[str, float]) -> float | None:
    if not table.calibration or "intercept_ms" not in table.calibration:
        return None
    return Calibration.from_dict(table.calibration).predict(keys, table_ms)


def clear_calibration(session: Session, table: Table) -> None:
    if table.calibration is None:  # nothing to delete: the table, its ETag and updated_at stay as they are
        return
    table.calibration = None
    tables.touch(session, table)
