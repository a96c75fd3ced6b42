"""ProfilerClient against a real profiler service (tests/search_client/remote/conftest.py starts it)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import yaml

from search_client.latency.model import LatencyModel
from search_client.remote.profiler_client import ProfilerClient, ProfilerError, ProfilerUnavailable
from shared.spaces import get_space

SPACE = get_space("proxyless-cifar", resolution=8)


def small_yaml(n: int = 3) -> tuple[str, dict]:
    """The published format: KEY: {count, mean, var} (ms, ms^2)."""
    specs = SPACE.all_op_specs()[:n]
    table = {s.key: {"count": 10 + i, "mean": 0.5 + i, "var": 0.01} for i, s in enumerate(specs)}
    return yaml.safe_dump(table), table


@pytest.fixture
def client(profiler_url: str, tmp_path: Path):
    with ProfilerClient(profiler_url, cache_dir=tmp_path / "cache", retries=1, backoff=0.05) as c:
        yield c


def test_health(client):
    assert isinstance(client.health(), dict)


def test_import_yaml_then_get_table(client):
    text, table = small_yaml()
    imported = client.import_table(text, device="test-box", backend="torch")
    assert imported.entries == 3
    got = client.get_table(imported.id)
    assert got.id == imported.id and got.device == "test-box" and got.backend == "torch"
    assert set(got.entries) == set(table)
    for key, stats in table.items():
        assert got.entries[key].mean_ms == pytest.approx(stats["mean"])
        assert got.entries[key].count == stats["count"]
    assert client.last_status_code == 200 and not client.last_from_cache
    summaries = {t.id: t for t in client.list_tables()}
    assert summaries[imported.id].entries == 3


def test_import_our_json_round_trip(client):
    """A table exported as JSON by one service imports into another (here: the same, as a new device)."""
    original = client.get_table(client.import_table(small_yaml()[0], device="json-src", backend="torch").id)
    copy_id = client.import_table(original.model_dump(mode="json"), device="json-copy", backend="torch").id
    copy = client.get_table(copy_id)
    assert copy_id != original.id and copy.device == "json-copy"
    assert copy.entries == original.entries


def test_etag_cache_hit_304(profiler_url, client, tmp_path):
    imported = client.import_table(small_yaml()[0], device="etag-box", backend="torch")
    first = client.get_table(imported.id)
    assert client.last_status_code == 200
    # a fresh client (a new process, say) with the same cache folder revalidates instead of downloading
    with ProfilerClient(profiler_url, cache_dir=tmp_path / "cache") as again:
        second = again.get_table(imported.id)
        assert again.last_status_code == 304 and again.last_from_cache and not again.last_offline
        assert again.last_etag == client.last_etag
    assert second == first


def test_lookup_found_and_missing(client):
    text, table = small_yaml()
    imported = client.import_table(text, device="lookup-box", backend="torch")
    absent = SPACE.all_op_specs()[5].key
    res = client.lookup(imported.id, [*table, absent])
    assert set(res.found) == set(table) and res.missing == [absent]


def test_offline_fallback_uses_cache(make_server, tmp_path, caplog):
    server = make_server()
    cache = tmp_path / "offline-cache"
    with ProfilerClient(server.url, cache_dir=cache, retries=1, backoff=0.01) as c:
        imported = c.import_table(small_yaml()[0], device="offline-box", backend="torch")
        online = c.get_table(imported.id)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="search_client.remote.profiler_client"):
            offline = c.get_table(imported.id)
        assert offline == online
        assert c.last_from_cache and c.last_offline and c.last_attempts == 2
        assert f"profiler unreachable, using cached table {imported.id}" in caplog.text
        # nothing cached for this id: the outage is an error, not an empty table
        with pytest.raises(ProfilerUnavailable):
            c.get_table("never-fetched")


def test_4xx_raises_with_detail_and_no_retry(client):
    with pytest.raises(ProfilerError) as e:
        client.get_table("no-such-table")
    assert e.value.status_code == 404 and e.value.detail
    assert client.last_attempts == 1
    bad = "expanded_conv-input:8x8x32-output:8x8x32-expand:6-kernel:4-stride:1-idskip:1"
    with pytest.raises(ProfilerError) as e:
        client.submit_profile([bad], backend="torch")
    assert 400 <= e.value.status_code < 500
    assert "kernel" in str(e.value) and e.value.detail
    assert client.last_attempts == 1


def test_api_key_sent_on_writes(make_server, tmp_path):
    server = make_server({"PROFILER_API_KEY": "s3cret"})
    text = small_yaml()[0]
    with ProfilerClient(server.url, cache_dir=tmp_path, retries=0) as anonymous:
        with pytest.raises(ProfilerError) as e:
            anonymous.import_table(text, device="keyed-box", backend="torch")
        assert e.value.status_code == 401 and "API key" in str(e.value)
    with ProfilerClient(server.url, cache_dir=tmp_path, api_key="s3cret", retries=0) as keyed:
        table_id = keyed.import_table(text, device="keyed-box", backend="torch").id
    with ProfilerClient(server.url, cache_dir=tmp_path, retries=0) as reader:  # reads need no key
        assert len(reader.get_table(table_id).entries) == 3


@pytest.mark.timeout(60)
def test_retries_bounded_on_closed_port(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ProfilerClient(f"http://127.0.0.1:{port}", cache_dir=tmp_path, retries=2, backoff=0.01,
                        timeout=5) as c:
        with pytest.raises(ProfilerUnavailable, match="after 3 tries"):
            c.health()
        assert c.last_attempts == 3
        with pytest.raises(ProfilerUnavailable):  # a job submission retries only connect errors, boundedly
            c.submit_profile(["identity-input:8x8x32-output:8x8x32"], backend="torch")
        assert c.last_attempts == 3


def test_profile_job_then_measure_network(client):
    """The product loop on a tiny space: profile every op, predict locally, measure on the device."""
    seen: list[tuple[int, int]] = []
    job = client.submit_profile(space=SPACE.name, resolution=SPACE.resolution, backend="onnxruntime")
    assert job["status"] in ("queued", "running", "done") and job["total"] == len(SPACE.all_op_specs())
    done = client.wait_job(job["id"], poll=0.2, timeout=540,
                           progress=lambda j: seen.append((j["done"], j["total"])))
    assert done["status"] == "done" and seen[-1] == (job["total"], job["total"])
    table = client.get_table(done["table_id"])
    model = LatencyModel.from_table(table, SPACE, use_calibration=False)  # predicted_ms is the raw sum
    choices = [layer.candidates[0] for layer in SPACE.layers]
    arch = {"space": SPACE.name, "resolution": SPACE.resolution, "width_mult": 1.0, "num_classes": 10,
            "choices": choices}
    net = client.wait_network(client.measure_network(table.id, arch), poll=0.2, timeout=300)
    assert net.status == "done" and net.measured is not None and net.measured.median_ms > 0
    assert net.missing == []
    assert net.predicted_ms == pytest.approx(model.predict(choices), rel=1e-6)
    # the clock the measurement is on, and the burst of the reference behind it
    clocks = {c.nominal_ms: c for c in client.clocks(bursts=5)}
    assert net.measured.nominal_ms in clocks and clocks[net.measured.nominal_ms].bursts
