"""What the overview page shows beyond the plain resources: the fleet's devices with their tables, and
a table seen through a search space as a layer x op latency grid."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from profiler_service.db.models import Device, Measurement, Table
from profiler_service.services.errors import Invalid
from profiler_service.services.tables import entries
from shared.schemas import DeviceSummary, HeatmapLayer, TableHeatmap
from shared.spaces import SPACES, get_space
from shared.specs import SpecError

_STEM = re.compile(r"^Conv-input:(\d+)x\1x3-")
_LOGITS = re.compile(r"^Logits-input:[^-]+-output:(\d+)$")
FINGERPRINT_FIELDS = ("cpu_model", "cores", "logical_cores", "os", "machine", "governor", "onnxruntime", "torch")


def list_devices(session: Session) -> list[DeviceSummary]:
    per_table = (select(Table.device_id, func.count(func.distinct(Table.id)).label("tables"),
                        func.count(Measurement.id).label("entries"), func.max(Table.updated_at).label("updated"))
                 .outerjoin(Measurement, Measurement.table_id == Table.id).group_by(Table.device_id))
    stats = {row.device_id: row for row in session.execute(per_table)}
    out = []
    for dev in session.scalars(select(Device).order_by(Device.name)):
        row = stats.get(dev.id)
        fp = {k: dev.fingerprint[k] for k in FINGERPRINT_FIELDS if k in (dev.fingerprint or {})}
        out.append(DeviceSummary(name=dev.name, fingerprint=fp, tables=row.tables if row else 0,
                                 entries=row.entries if row else 0, updated_at=row.updated if row else None))
    return out


def _guess(keys: set[str], space: str | None, resolution: int | None,
           num_classes: int | None) -> tuple[str, int, int, list[int]]:
    """Fill what the caller left out from the table's own keys: its stems' resolutions, its heads' class
    counts, and the space whose ops it covers best."""
    resolutions = sorted({int(m[1]) for k in keys if (m := _STEM.match(k))})
    classes = Counter(int(m[1]) for k in keys if (m := _LOGITS.match(k)))
    resolution = resolution or (resolutions[-1] if resolutions else None)
    num_classes = num_classes or (classes.most_common(1)[0][0] if classes else None)
    if space is None:
        def coverage(name: str) -> float:
            try:
                need = {s.key for s in get_space(name, resolution, None, num_classes).all_op_specs()}
            except SpecError:
                return -1.0
            return len(need & keys) / len(need)
        space = max(SPACES, key=coverage)
    info = SPACES[space].defaults if space in SPACES else {}
    return space, resolution or info.get("resolution", 224), num_classes or info.get("num_classes", 1000), \
        resolutions


def heatmap(session: Session, table: Table, *, space: str | None = None, resolution: int | None = None,
            width_mult: float = 1.0, num_classes: int | None = None) -> TableHeatmap:
    stats = {k: v.median_ms for k, v in entries(session, table.id).items()}
    space, resolution, num_classes, resolutions = _guess(set(stats), space, resolution, num_classes)
    if space not in SPACES:
        raise Invalid("space", f"unknown space {space!r}; known: {', '.join(SPACES)}")
    sp = get_space(space, resolution, width_mult, num_classes)  # SpecError -> 422 naming the field
    ops = list(dict.fromkeys(name for layer in sp.layers for name in layer.candidates))
    layers, missing = [], []
    for i, layer in enumerate(sp.layers):
        row: list[float | None] = []
        keys: list[str | None] = []
        for name in ops:
            spec = layer.spec(name) if name in layer.candidates else None
            keys.append(spec.key if spec is not None else None)
            if name not in layer.candidates:
                row.append(None)
            elif spec is None:  # zero: costs nothing
                row.append(0.0)
            else:
                row.append(stats.get(spec.key))
                if spec.key not in stats:
                    missing.append(spec.key)
        label = f"{i}: {layer.h}x{layer.w}x{layer.cin} -> {layer.cout}, stride {layer.stride}"
        layers.append(HeatmapLayer(index=i, label=label, ms=row, keys=keys))
    fixed = {s.key: stats.get(s.key) for s in sp.fixed_specs}
    missing += [k for k, v in fixed.items() if v is None]
    return TableHeatmap(table_id=table.id, space=space, resolution=resolution, width_mult=width_mult,
                        num_classes=num_classes, resolutions=resolutions, ops=ops, layers=layers, fixed=fixed,
                        missing=sorted(set(missing)), needed=len(sp.all_op_specs()))
