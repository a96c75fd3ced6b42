"""The CLI against a real profiler service: tables, predict, a search whose table lacks keys (refused,
then profiled with --profile-missing), and --measure of the derived net on the device."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest
import torch

from search_client.cli.main import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("profiler_service.app") is None,
                                reason="profiler_service not built yet")

DEVICE = "test-device"  # the name tests/conftest.py gives the server's own device
N_MISSING = 2


@pytest.fixture(scope="module")
def partial_table(profiler_server, entries) -> tuple[str, str, list[str]]:
    """Fake entries imported into the server device's own table, minus a few cheap keys the search
    needs (the fixed ones: prefix and suffix), which --profile-missing will have measured for real."""
    keys = list(entries)
    dropped = [keys[0], keys[-1]][:N_MISSING]  # stem and logits: quick to benchmark
    body = {"entries": {k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 1}
                        for k, v in entries.items() if k not in dropped}}
    r = httpx.post(f"{profiler_server.url}/v1/tables/import", params={"device": DEVICE, "backend": "onnxruntime",
                   "threads": 1, "batch": 1}, json=body, timeout=60)
    assert r.status_code == 201, r.text
    return profiler_server.url, r.json()["id"], dropped


def test_tables_lists_the_imported_table(partial_table, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the client's table cache lives under ~
    url, table_id, _ = partial_table
    assert main(["tables", "--profiler", url]) == 0
    assert table_id in capsys.readouterr().out


def test_search_refuses_missing_keys_then_profiles_them_and_measures(partial_table, capsys, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    url, table_id, dropped = partial_table
    small = ["--resolution", "32", "--dataset", "digits", "--batch-size", "32", "--warmup-epochs", "0",
             "--epochs", "1", "--steps-per-epoch", "2", "--arch-every", "1", "--no-progress", "--threads", "1",
             "--target-ms", "30", "--profiler", url, "--table", table_id, "--out", str(tmp_path / "run")]
    assert main(["search", *small, "--no-profile-missing"]) == 2
    err = capsys.readouterr().err
    assert f"lacks {len(dropped)} key(s)" in err and dropped[0] in err and "--profile-missing" in err

    # by default: profile what is missing, calibrate the table for this space (it has no calibration),
    # search, derive, measure
    assert main(["search", *small, "--calib-samples", "3", "--measure", "--no-onnx"]) == 0
    out = capsys.readouterr().out
    # the server's own table may carry a calibration of other tests' networks: it is refitted for this space
    assert "calibrating for proxyless-mobile @ 32 px" in out and "calibration v" in out
    summary = out[out.index("\nsummary\n"):]  # one block ends the search
    assert "\n  predicted  " in summary and "\n  measured   " in summary and " ms (median of " in summary
    assert out.count("\nsummary\n") == 1 and "predicted latency" not in out
    cal = httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json()["calibration"]
    assert cal["n_networks"] == 3
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)
    assert ckpt["calibration"]["version"] == cal["version"]  # the search used it
    table = httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json()
    assert all(k in table["entries"] for k in dropped)  # measured into the same table
    run = tmp_path / "run"  # the device's answer is kept and drawn beside the search's own pictures
    assert json.loads((run / "measurement.json").read_text())["measured"]["median_ms"] > 0
    assert {p.name for p in run.glob("*.png")} == {"curves.png", "arch_probs.png", "arch.png", "latency.png"}

    arch = tmp_path / "run" / "derived" / "arch.json"
    assert main(["predict", str(arch), "--profiler", url, "--table", table_id]) == 0
    summary = json.loads((tmp_path / "run" / "derived" / "derive.json").read_text())
    # the table changed under the search (two real measurements), so compare to the table now
    assert "predicted" in capsys.readouterr().out and summary["predicted_ms"] > 0


def test_clock_shows_each_nominal_and_the_bursts_behind_it(profiler_server, capsys):
    """After the search above profiled and measured on this server, each of its clocks is listed with the burst
    that set it (the worker times the reference alone before its first job on a configuration)."""
    clocks = httpx.get(f"{profiler_server.url}/v1/device/clocks", timeout=30).json()
    assert main(["clock", "--profiler", profiler_server.url, "--bursts", "1"]) == 0
    out = capsys.readouterr().out
    assert clocks and "no clocks yet" not in out
    for c in clocks:
        head = f"{c['reference']}  {c['backend']} x{c['threads']}: nominal {c['nominal_ms']:.4f} ms"
        assert f"{head} (v{c['version']}, {c['source']}" in out
        if c["bursts"]:  # a nominal a first observation set before any burst has none
            assert f"-> nominal {c['bursts'][0]['nominal_ms']:.4f} ms v{c['bursts'][0]['version']}" in out
