"""Table files: the published ProxylessNAS / once-for-all yaml, and our JSON (the GET /v1/tables/{id} body).

Published format, one line per op: ``KEY: {count: N, mean: MS, var: MS^2}``. The tools that read it
(once-for-all's ``ProxylessNASLatencyTable``, ProxylessNAS) predict a network by summing ``mean``, so our
export writes as ``mean`` the statistic we predict with, the served (drift-corrected) median, and as ``var``
its matching spread, the robust variance ``((p90 - p10) / (2 * z_0.9))^2`` (exact for a normal
distribution, blind to the few huge samples a shared machine throws in). The raw sample moments go in
``raw_mean`` / ``raw_var`` beside ``median``, ``p10``, ``p90`` (and ``ref`` when drift-corrected): readers of
the published format ignore them, and our own yaml round-trips without loss.

The table's calibration rides in a comment at the head (``shared.table_yaml``), with the measured medians
of the networks it was fitted on (``network_ms``): invisible to the published readers, read back by a search
from the file so that it predicts the calibrated latency, not the raw sum.

A published file has no median or percentiles, so on import ``median_ms = p10_ms = p90_ms = mean`` and
``std_ms = sqrt(var)``; such an entry (no spread between its percentiles) exports its own ``var`` back, so a
published file goes through import and export unchanged.
"""

from __future__ import annotations

import json
import math
import reprlib
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session

from profiler_service.db.models import Table
from profiler_service.measure.backends import known_backends, precision_of
from profiler_service.services import calibration, tables
from profiler_service.services.errors import Invalid
from shared.schemas import ImportResponse, OpStats
from shared.table_yaml import calibration_line

YAML_MEDIA_TYPE = "application/x-yaml"
_PUBLISHED_REQUIRED = ("count", "mean", "var")
Z90 = 1.2815515655446004  # standard normal 90th percentile: p90 - p10 = 2 * Z90 * sigma


def served_ms(st: OpStats) -> float:
    """The figure a table serves and every prediction sums (search_client's LatencyModel, /v1/networks)."""
    return st.median_ms


def robust_var(st: OpStats) -> float:
    """Spread matching the median: the variance a normal distribution with this p10..p90 would have.

    An entry with no spread between its percentiles and ``mean == median`` came from a published table
    (which carries no percentiles); its own ``var`` is the only spread known, so that is returned.
    """
    if st.p10_ms == st.p90_ms == st.median_ms == st.mean_ms:
        return st.std_ms ** 2
    return ((st.p90_ms - st.p10_ms) / (2 * Z90)) ** 2


# What the database stores in an INTEGER column on both SQLite and PostgreSQL.
MAX_COUNT = 2**31 - 1
_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 80, 80, 40
_EXCERPT.maxlevel, _EXCERPT.maxdict, _EXCERPT.maxlist = 2, 4, 4


def excerpt(value: Any) -> str:
    """A bounded repr for error messages: a bad value may be a yaml alias bomb of a billion leaves."""
    return _EXCERPT.repr(value)


class _NoDuplicates:
    """Safe yaml that also refuses duplicate keys (no silent last-one-wins)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {excerpt(key)}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class _FastLoader(_NoDuplicates, yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """libyaml: a 3 MB table parses in a second, not twenty."""


class _ExactLoader(_NoDuplicates, yaml.SafeLoader):
    """The pure-Python parser: slower, but it points at the line where a malformed file goes wrong."""


# Malformed files up to this size are parsed again by _ExactLoader for a precise error position.
_EXACT_ERRORS_BYTES = 256 * 1024


def _refuse_aliases(root: yaml.Node) -> None:
    """A table file has no use for anchors; an alias bomb is nothing but anchors. Walked without recursion."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            mark = node.start_mark
            raise Invalid("yaml", f"aliases (*anchor) are not allowed, at line {mark.line + 1}, "
                                  f"column {mark.column + 1}")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _load_yaml(text: str) -> Any:
    try:
        return _load_with(_FastLoader, text)
    except yaml.YAMLError:
        if len(text) > _EXACT_ERRORS_BYTES:
            raise
        return _load_with(_ExactLoader, text)


def _load_with(loader_class: type, text: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise Invalid(excerpt(key), "given twice in the body; each key must appear once")
        out[key] = value
    return out


def to_yaml(session: Session, table: Table) -> str:
    meta = tables.summary(session, table)
    doc: dict[str, dict[str, Any]] = {}
    for key, st in tables.entries(session, table.id).items():
        doc[key] = {"count": st.count, "mean": served_ms(st), "var": robust_var(st),
                    "median": st.median_ms, "p10": st.p10_ms, "p90": st.p90_ms,
                    "raw_mean": st.mean_ms, "raw_var": st.std_ms ** 2}
        if st.ref_ms is not None:
            doc[key]["ref"] = st.ref_ms
        if st.nominal_ms is not None:  # which quiet clock the figures are on, so an import compares them
            doc[key]["nominal"] = st.nominal_ms
    header = (f"# latency table {meta.id}: device={meta.device} backend={meta.backend} threads={meta.threads}"
              f" batch={meta.batch} dtype={meta.dtype} etag={meta.etag}\n# times in ms, var in ms^2;"
              " mean = served median (drift-corrected), var = robust ((p90 - p10) / 2.563)^2;"
              " raw_mean / raw_var = sample moments\n")
    if table.calibration and "intercept_ms" in table.calibration:
        header += calibration_line({**table.calibration, "network_ms": calibration.network_ms(session, table)})
    if not doc:
        return header + "{}\n"
    return header + yaml.safe_dump(doc, default_flow_style=None, sort_keys=False, width=10**6)


def _number(entry: dict, field: str, key: str) -> float:
    value = entry[field]
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Invalid(key, f"field {field!r} must be a non-negative number, got {excerpt(entry[field])}")
    return float(value)


def _published_entry(key: str, entry: Any) -> OpStats:
    if not isinstance(entry, dict):
        raise Invalid(key, f"expected a mapping {{count, mean, var}}, got {type(entry).__name__}")
    for field in _PUBLISHED_REQUIRED:
        if field not in entry:
            raise Invalid(key, f"missing field {field!r} (published entries need count, mean, var)")
    mean = _number(entry, "mean", key)
    count = _number(entry, "count", key)
    if count != int(count) or count > MAX_COUNT:
        raise Invalid(key, f"field 'count' must be an integer up to {MAX_COUNT}, got {excerpt(entry['count'])}")
    opt = {f: _number(entry, f, key) for f in ("median", "p10", "p90", "raw_mean", "raw_var", "ref", "nominal")
           if f in entry}
    # Our own export: "mean" is the median and "var" its robust spread; the sample moments sit beside them.
    raw_mean = opt.get("raw_mean", mean)
    std = math.sqrt(opt["raw_var"] if "raw_var" in opt else _number(entry, "var", key))
    return OpStats(median_ms=opt.get("median", mean), mean_ms=raw_mean, std_ms=std,
                   p10_ms=opt.get("p10", mean), p90_ms=opt.get("p90", mean), count=int(count),
                   ref_ms=opt.get("ref"), nominal_ms=opt.get("nominal"))


def _json_entry(key: str, entry: Any) -> OpStats:
    try:
        stats = OpStats.model_validate(entry)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "entry"
        raise Invalid(key, f"field {field!r}: {err['msg']}") from None
    # The table serves these to a search as latencies: a negative, infinite or NaN one poisons it.
    for field in ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "ref_ms"):
        value = getattr(stats, field)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise Invalid(key, f"field {field!r} must be a finite non-negative number, got {value!r}")
    if not 0 <= stats.count <= MAX_COUNT:
        raise Invalid(key, f"field 'count' must be an integer from 0 to {MAX_COUNT}, got {excerpt(stats.count)}")
    return stats


def parse_table(body: bytes | str) -> dict[str, OpStats]:
    """Published yaml or our JSON -> entries. Raises Invalid naming the key and field at fault."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Invalid("body", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        # JSON first: YAML 1.1 would read JSON's 1e-3 as a string.
        doc, is_json = json.loads(body, object_pairs_hook=_reject_duplicates), True
    except RecursionError:
        raise Invalid("body", "nested too deeply for a table") from None
    except ValueError:
        try:
            doc, is_json = _load_yaml(body), False
        except RecursionError:
            raise Invalid("body", "nested too deeply for a table") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise Invalid("yaml", f"malformed{where}: {excerpt(problem)[1:-1]}") from None
    if not isinstance(doc, dict) or not doc:
        raise Invalid("body", "expected a non-empty mapping: published yaml {KEY: {count, mean, var}} "
                              "or our JSON {\"entries\": {KEY: {median_ms, ...}}}")
    if is_json and isinstance(doc.get("entries"), dict):
        parse, raw = _json_entry, doc["entries"]
    else:
        parse, raw = _published_entry, doc
    if not raw:
        raise Invalid("entries", "no entries")
    out: dict[str, OpStats] = {}
    for i, (key, entry) in enumerate(raw.items()):
        if not isinstance(key, str):
            raise Invalid(f"entry {i}", f"key {excerpt(key)} is not a string")
        tables.check_key(key)
        out[key] = parse(key, entry)
    return out


def default_dtype(backend: str) -> str:
    """The arithmetic a runtime's tables hold; float32 for a runtime this worker does not know."""
    return precision_of(backend) if backend in known_backends() else "float32"


def import_table(session: Session, body: bytes | str, *, device: str, backend: str, threads: int,
                 batch: int, dtype: str = "float32") -> ImportResponse:
    """Parse first, then write: a bad entry anywhere leaves the database untouched."""
    stats = parse_table(body)
    table = tables.get_or_create_by_name(session, device, backend, threads, batch, dtype)
    n = tables.upsert_measurements(session, table, stats)
    return ImportResponse(id=table.id, entries=n)


def to_json(session: Session, table: Table) -> str:
    return tables.table_out(session, table).model_dump_json(indent=1)
