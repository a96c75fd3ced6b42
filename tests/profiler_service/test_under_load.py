"""The server under concurrent load, each case on its own real server: no stall, no 500, reads never wait
behind writes. Bounded in count (at most a few hundred requests) and loopback only; no timings asserted.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from profiler_helpers import PUBLISHED, SMALL_KEYS, wait_job

CLIENTS = 80  # past the old stall: 40 threads, 15 pooled connections


def _burst(url: str, paths: list[str], n: int) -> list[tuple[int, str]]:
    """``n`` requests at once, each on its own connection, spread over ``paths``."""
    ready = threading.Barrier(n)

    def one(i: int) -> tuple[int, str]:
        with httpx.Client(base_url=url, timeout=120) as c:
            ready.wait(60)  # all connections made and every thread here: then all send together
            r = c.get(paths[i % len(paths)])
            return r.status_code, r.text[:200]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.fixture(params=["sqlite", "postgresql"])
def busy_server(request, server_factory, pg_databases):
    db_url = pg_databases() if request.param == "postgresql" else None
    srv = server_factory(f"load-{request.param}", db_url=db_url)
    yield srv
    srv.stop()  # its connections go back to the shared PostgreSQL now, not at the end of the session


def test_many_concurrent_reads_all_answer_while_a_job_runs(busy_server):
    with httpx.Client(base_url=busy_server.url, timeout=60) as api:
        job = api.post("/v1/jobs", json={"keys": SMALL_KEYS, "backend": "onnxruntime"}).json()
        results = _burst(busy_server.url, ["/v1/jobs?limit=5", "/v1/device", f"/v1/jobs/{job['id']}"], CLIENTS)
        results += _burst(busy_server.url, ["/v1/jobs?limit=5", "/v1/device", "/v1/tables"], CLIENTS)
        bad = [r for r in results if r[0] != 200]
        assert not bad, f"{len(bad)} of {len(results)} failed, e.g. {bad[:3]}"
        # The worker has its own connections: the burst did not strand its job.
        assert wait_job(api, job["id"])["status"] == "done"


def test_lookups_and_reads_do_not_wait_behind_a_writer(server_factory):
    """Hold SQLite's write lock from outside (as a long import does): lookups and GETs still answer."""
    srv = server_factory("wal-readers")
    with httpx.Client(base_url=srv.url, timeout=90) as api:
        table = api.post("/v1/tables/import", params={"device": "wal", "backend": "tflite"}, content=PUBLISHED)
        table_id = table.json()["id"]
        key = PUBLISHED.split(": {", 1)[0]
        path = srv.db_url.removeprefix("sqlite:///")
        writer = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("UPDATE tables SET etag = etag WHERE id = ?", (table_id,))
            r = api.post(f"/v1/tables/{table_id}/lookup", json={"keys": [key]})
            assert r.status_code == 200 and list(r.json()["found"]) == [key], r.text
            assert api.get(f"/v1/tables/{table_id}").status_code == 200
            assert writer.in_transaction  # the lock was held all along
        finally:
            writer.execute("ROLLBACK")
            writer.close()


def test_a_large_import_lands_whole(api: httpx.Client):
    """50,000 entries in one import (bulk upserts): all stored, served back, and looked up."""
    keys = [f"sep_conv-input:{h}x{h}x{c}-output:{h}x{h}x{c}-kernel:3-stride:1"
            for h in range(8, 58) for c in range(8, 1008)]
    entries = {k: {"median_ms": 1.0, "mean_ms": 1.1, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.2, "count": 7}
               for k in keys}
    r = api.post("/v1/tables/import", params={"device": "bulk", "backend": "tflite"},
                 content=json.dumps({"entries": entries}), timeout=300)
    assert r.status_code == 201 and r.json()["entries"] == len(keys), r.text
    table = api.get(f"/v1/tables/{r.json()['id']}").json()
    assert len(table["entries"]) == len(keys) and table["entries"][keys[-1]]["count"] == 7
    found = api.post(f"/v1/tables/{table['id']}/lookup", json={"keys": keys[:10_000]}).json()
    assert len(found["found"]) == 10_000 and found["missing"] == []
