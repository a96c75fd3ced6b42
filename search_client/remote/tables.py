"""Where a search gets its latency table: the profiler service (cached by ETag) or a local file.

A local file may be our table JSON (``{"entries": {KEY: {"median_ms": ...}}}``, what GET /v1/tables/{id}
returns), a flat ``{KEY: ms}`` map, or the published ProxylessNAS yaml (``KEY: {count, mean, var}``). The
yaml the service exports carries the table's calibration in a comment at its head (``shared.table_yaml``),
which is read back: a search from the file predicts the calibrated latency, as the service does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from search_client.latency.model import required_keys
from search_client.latency.values import check_latency, excerpt
from shared.spaces import SearchSpace
from shared.table_yaml import read_calibration_line

SHOW_MISSING = 5


@dataclass
class TableSource:
    entries: dict[str, float]
    calibration: dict | None = None
    info: dict = field(default_factory=dict)  # {"source", "id", "device", "backend", ...}


def _ms(key: str, value, where: str) -> float:
    if isinstance(value, dict):
        for name in ("median_ms", "mean_ms", "mean"):  # ours first; "mean" is the published yaml
            if name in value:
                return check_latency(str(key), value[name], where, field=name)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return check_latency(str(key), value, where)
    raise ValueError(f"{where}: entry {key!r}: expected a number or {{median_ms | mean}}, got {excerpt(value)}")


def load_table_file(path: str | os.PathLike) -> TableSource:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"table file {path} is not valid {'JSON' if path.suffix == '.json' else 'yaml'}: "
                         f"{e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"table file {path}: expected a mapping at the top level")
    if isinstance(data.get("entries"), dict):  # our table JSON
        raw, calibration = data["entries"], data.get("calibration")
        info = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    else:  # a flat map or the published yaml, perhaps with our calibration comment
        raw, info = data, {}
        calibration = None if path.suffix == ".json" else read_calibration_line(text, f"table file {path}")
    entries = {str(k): _ms(k, v, f"table file {path}") for k, v in raw.items()}
    return TableSource(entries, calibration, {**info, "source": str(path)})


def missing_keys(space: SearchSpace, entries: dict[str, float]) -> list[str]:
    return [k for k in required_keys(space) if k not in entries]


def describe_missing(missing: list[str], where: str) -> str:
    shown = ", ".join(missing[:SHOW_MISSING])
    more = f" (+{len(missing) - SHOW_MISSING} more)" if len(missing) > SHOW_MISSING else ""
    return f"{where} lacks {len(missing)} key(s) this space needs: {shown}{more}"


def fetch_table(client, table_id: str, space: SearchSpace, *, profile_missing: bool = False,
                progress: bool = True) -> TableSource:
    """Table from the service; with ``profile_missing``, the device measures what is missing first."""
    table = client.get_table(table_id)
    missing = missing_keys(space, {k: v.median_ms for k, v in table.entries.items()})
    if missing and not profile_missing:
        raise ValueError(describe_missing(missing, f"table {table_id}") +
                         "; rerun with --profile-missing (the default) to have the device measure them")
    if missing:
        from tqdm import tqdm

        job = client.submit_profile(keys=missing, backend=table.backend, threads=table.threads,
                                    batch=table.batch, table_id=table.id)
        bar = tqdm(total=len(missing), desc=f"profiling {len(missing)} ops", disable=not progress)

        def show(state: dict) -> None:
            bar.total = state.get("total") or bar.total
            bar.n = state.get("done", bar.n)
            bar.refresh()

        try:
            client.wait_job(job["id"], progress=show)
        finally:
            bar.close()
        table = client.get_table(job.get("table_id") or table_id)
        still = missing_keys(space, {k: v.median_ms for k, v in table.entries.items()})
        if still:
            raise ValueError(describe_missing(still, f"table {table.id} after profiling"))
    info = {"source": client.base_url, "id": table.id, "device": table.device, "backend": table.backend,
            "threads": table.threads, "batch": table.batch, "etag": table.etag}
    return TableSource({k: v.median_ms for k, v in table.entries.items()}, table.calibration, info)
