"""Table files: the published ProxylessNAS yaml imports unchanged; our yaml and JSON round-trip."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from profiler_helpers import PUBLISHED

from profiler_service.db import Database
from profiler_service.services import tables, yaml_io
from profiler_service.services.errors import Invalid


def published_entries() -> dict[str, dict]:
    return yaml.safe_load(PUBLISHED)


def test_published_yaml_imports_unchanged(db: Database):
    with db.session() as s:
        out = yaml_io.import_table(s, PUBLISHED, device="pixel1", backend="tflite", threads=1, batch=1)
    assert out.entries == 6
    with db.session(write=False) as s:
        entries = tables.entries(s, out.id)
    for key, src in published_entries().items():
        e = entries[key]
        assert (e.count, e.mean_ms, e.median_ms, e.p10_ms, e.p90_ms) == (src["count"], src["mean"], src["mean"],
                                                                          src["mean"], src["mean"])
        assert e.std_ms == pytest.approx(math.sqrt(src["var"]), rel=1e-12)


def test_export_is_the_published_format_and_round_trips(db: Database):
    with db.session() as s:
        table_id = yaml_io.import_table(s, PUBLISHED, device="pixel1", backend="tflite", threads=1, batch=1).id
        text = yaml_io.to_yaml(s, tables.get_table(s, table_id))
    line = next(ln for ln in text.splitlines() if ln.startswith("Conv-input"))
    assert re.fullmatch(r"Conv-input:224x224x3-output:112x112x32: \{count: 151, mean: 3\.9271, var: [0-9.e-]+"
                        r"(, [a-z0-9_]+: [0-9.e-]+)*\}", line), line
    exported = yaml.safe_load(text)
    for key, src in published_entries().items():  # what a ProxylessNAS LatencyEstimator reads
        assert exported[key]["mean"] == src["mean"] and exported[key]["count"] == src["count"]
        assert exported[key]["var"] == pytest.approx(src["var"], rel=1e-12)
    with db.session() as s:
        again = yaml_io.import_table(s, text, device="copy", backend="tflite", threads=1, batch=1)
        assert tables.entries(s, again.id) == tables.entries(s, table_id)


def test_export_mean_is_the_served_median_and_var_its_robust_spread(db: Database):
    """The issue's first block: a few huge samples made the mean 4x the median and var meaningless."""
    key = "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"
    st = tables.OpStats(median_ms=0.464, mean_ms=2.00, std_ms=math.sqrt(40.8), p10_ms=0.41, p90_ms=0.589, count=200,
                   ref_ms=5.5)
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "dev", "onnxruntime", 1, 1)
        tables.upsert_measurements(s, table, {key: st})
        text = yaml_io.to_yaml(s, table)
    e = yaml.safe_load(text)[key]
    assert e["mean"] == 0.464 == yaml_io.served_ms(st)
    assert e["var"] == pytest.approx(((0.589 - 0.41) / (2 * 1.2815515655446004)) ** 2, rel=1e-12)
    assert (e["raw_mean"], e["raw_var"], e["ref"]) == (2.0, pytest.approx(40.8), 5.5)
    assert yaml_io.parse_table(text)[key] == st


def test_our_json_round_trips_without_loss(db: Database):
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "dev", "onnxruntime", 1, 1)
        tables.upsert_measurements(s, table, {
            "sep_conv-input:8x8x16-output:8x8x16-kernel:5-stride:1": tables.OpStats(
                median_ms=0.0123, mean_ms=0.0131, std_ms=0.002, p10_ms=0.011, p90_ms=0.016, count=87)})
        body = yaml_io.to_json(s, table)
        copy = yaml_io.import_table(s, body.encode(), device="dev2", backend="onnxruntime", threads=1, batch=1)
        assert tables.entries(s, copy.id) == tables.entries(s, table.id)


@pytest.mark.parametrize(("body", "field", "words"), [
    ("Conv-input:224x224x3-output:112x112x32: {count: 1, mean: 2", "yaml", ["malformed", "line"]),
    ("Conv-input:224x224x3-output:112x112x32: {count: 151, mean: 3.9}", "Conv-input:224x224x3-output:112x112x32",
     ["missing field 'var'"]),
    ("Conv-input:224x224x3-output:112x112x32: 3.9", "Conv-input:224x224x3-output:112x112x32", ["mapping"]),
    ("Conv-input:224x224x3-output:112x112x32: {count: 1, mean: -1, var: 0}", "Conv-input:224x224x3-output:112x112x32",
     ["'mean'", "non-negative"]),
    ("Conv-input:224x224x3-output:112x112x32: {count: 1.5, mean: 1, var: 0}",
     "Conv-input:224x224x3-output:112x112x32", ["'count'", "integer"]),
    ("foo-input:8x8x3-output:8x8x3: {count: 1, mean: 1, var: 0}", "key", ["unknown op type 'foo'"]),
    ("- just\n- a list\n", "body", ["mapping"]),
    ("", "body", ["mapping"]),
    ('{"entries": {"Conv-input:224x224x3-output:112x112x32": {"median_ms": 1}}}',
     "Conv-input:224x224x3-output:112x112x32", ["mean_ms"]),
    (b"\xff\xfe", "body", ["UTF-8"]),
])
def test_bad_files_name_the_key_and_field(body, field: str, words: list[str]):
    with pytest.raises(Invalid) as info:
        yaml_io.parse_table(body)
    assert info.value.field == field
    for w in words:
        assert w in str(info.value)


def test_a_bad_entry_leaves_the_database_untouched(db: Database):
    bad = PUBLISHED + "Logits-input:7x7x1280-output:10: {count: 1, mean: 1}\n"
    with pytest.raises(Invalid), db.session() as s:
        yaml_io.import_table(s, bad, device="pixel1", backend="tflite", threads=1, batch=1)
    with db.session(write=False) as s:
        assert tables.list_tables(s) == []
