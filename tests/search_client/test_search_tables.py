"""One search, several tables: a net that must meet a budget on each of two runtimes' tables, derived under
both and measured on both by the real service; and the flags' one-line errors."""

from __future__ import annotations

import json

import httpx
import pytest

from search_client.cli.main import main
from shared.spaces import get_space

DEVICE = "test-device"  # the name tests/conftest.py gives the server's own device
SPACE = get_space("proxyless-mobile", 32, 1.0, 10)


def _import(url: str, backend: str, entries: dict[str, float]) -> str:
    body = {"entries": {k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 1}
                        for k, v in entries.items()}}
    r = httpx.post(f"{url}/v1/tables/import", params={"device": DEVICE, "backend": backend, "threads": 1,
                   "batch": 1}, json=body, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _predict(entries: dict[str, float], choices: list[str]) -> float:
    return sum(entries[s.key] for s in SPACE.arch_specs(choices))


def test_a_net_derived_under_two_tables_meets_both_and_is_measured_on_both(profiler_server, entries, capsys,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the client's table cache lives under ~
    # a second runtime of another character: large kernels three times as dear
    other = {k: v * (3.0 if "kernel:7" in k else 1.0) for k, v in entries.items()}
    url = profiler_server.url
    first, second = _import(url, "onnxruntime", entries), _import(url, "openvino", other)
    fastest = [min(layer.candidates, key=lambda c, layer=layer: _predict(entries, [
        c if i == j else "zero" if "zero" in lay.candidates else lay.candidates[0]
        for j, lay in enumerate(SPACE.layers)])) for i, layer in enumerate(SPACE.layers)]
    floor_a, floor_b = _predict(entries, fastest), _predict(other, fastest)
    limit_a, limit_b = round(floor_a * 1.6, 3), round(floor_b * 1.3, 3)
    args = ["search", "--resolution", "32", "--dataset", "digits", "--batch-size", "32", "--warmup-epochs", "0",
            "--epochs", "1", "--steps-per-epoch", "3", "--arch-every", "1", "--no-progress", "--threads", "1",
            "--profiler", url, "--table", first, "--max-ms", str(limit_a), "--table", second, "--max-ms",
            str(limit_b), "--calib-samples", "0", "--measure", "--no-onnx", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "derived" / "derive.json").read_text())
    tables = summary["tables"]
    assert [t["max_ms"] for t in tables] == [limit_a, limit_b]
    choices = summary["choices"]
    assert _predict(entries, choices) <= limit_a + 1e-6 and _predict(other, choices) <= limit_b + 1e-6
    assert tables[1]["predicted_ms"] == pytest.approx(_predict(other, choices), rel=1e-6)
    assert f"openvino table {second} at {url}" in out and "within its budget" in out
    # measured on the first table's device (the summary) and on the second's (its line)
    assert "measured " in out.split("summary")[1] and "; measured " in out.split(f"openvino table {second}")[1]


@pytest.mark.parametrize(("extra", "needle"), [
    (["--table", "a", "--table", "b", "--max-ms", "1"], "give a --max-ms for each"),
    (["--table", "a", "--max-ms", "1", "--max-ms", "2"], "--max-ms given 2 times for one table"),
    (["--table", "a", "--max-ms", "1", "--table", "b", "--max-ms", "2", "--profiler", "http://127.0.0.1:9",
      "--profiler", "http://127.0.0.1:9"], "give one --profiler for all or one for each (got 3)"),
])
def test_mismatched_tables_and_budgets_are_one_line_errors(extra, needle, capsys):
    code = main(["search", "--profiler", "http://127.0.0.1:9", *extra, "--out", "never"])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
