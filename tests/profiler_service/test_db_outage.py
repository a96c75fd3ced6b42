"""A database outage is an outage, not a verdict: on a PostgreSQL cluster of the test's own, stopped for
~20 s while a profile runs and more jobs wait, every job ends ``done`` once the database is back, the API
answers 503 with Retry-After meanwhile on the same keep-alive connection, and the log says it once."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from pg_cluster import PgCluster, new_cluster
from profiler_helpers import wait_for, wait_job
from sqlalchemy import create_engine, text

from profiler_service.db.engine import normalize_url
from shared.spaces import get_space

OUTAGE_S = 20.0
# Ten small ops at a one-second budget each: the profile is still running when the database goes.
KEYS = [f"sep_conv-input:8x8x{c}-output:8x8x{c}-kernel:{k}-stride:1" for c in (8, 16) for k in (3, 5, 7)] + [
    f"expanded_conv-input:8x8x{c}-output:8x8x{c}-expand:3-kernel:{k}-stride:1-idskip:1" for c in (8, 16)
    for k in (3, 5)]


@pytest.fixture(scope="module")
def cluster(port_factory) -> Iterator[PgCluster]:
    pg = new_cluster(port_factory())
    if pg is None:
        pytest.skip("no PostgreSQL server installed (initdb, pg_ctl)")
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def network_arch(index: int) -> dict:
    space = get_space("proxyless-cifar", 8, 0.25, 10)
    choices = [layer.candidates[index % len(layer.candidates)] for layer in space.layers]
    return {"space": space.name, "resolution": 8, "width_mult": 0.25, "choices": choices}


def outage_replies(url: str, path: str, seconds: float) -> list[tuple[int, str | None, str, tuple]]:
    """GET ``path`` once a second on one keep-alive connection: (status, Retry-After, detail, local address)
    per reply. A connection the server dropped would show as a new local address (or an error)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    out = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            out.append((resp.status, resp.getheader("Retry-After"), body.get("detail"), conn.sock.getsockname()))
            time.sleep(1.0)
    finally:
        conn.close()
    return out


@pytest.mark.slow
def test_jobs_queued_before_an_outage_all_end_done_once_it_is_over(cluster: PgCluster, server_factory):
    srv = server_factory("db-outage", db_url=cluster.url,
                         env={"PROFILER_BUDGET_S": "1.0", "PROFILER_REL_CI": "1e-9", "PROFILER_NETWORK_BATCH": "2"})
    with httpx.Client(base_url=srv.url, timeout=60) as api:
        profile = api.post("/v1/jobs", json={"keys": KEYS, "backend": "onnxruntime"}).json()
        table_id = profile["table_id"]
        networks = [api.post("/v1/networks", json={"table_id": table_id, "arch": network_arch(i)}).json()
                    for i in range(2)]
        second = api.post("/v1/jobs", json={"keys": KEYS[:2], "backend": "onnxruntime"}).json()
        job_ids = sorted(j["id"] for j in api.get("/v1/jobs").json())
        assert len(job_ids) == 4
        wait_job(api, profile["id"], until=lambda j: j["done"] >= 1)

        cluster.stop()
        try:
            replies = outage_replies(srv.url, f"/v1/jobs/{profile['id']}", OUTAGE_S)
        finally:
            cluster.start()
        assert {(status, retry, detail) for status, retry, detail, _ in replies} == {
            (503, "5", "database unavailable")}, replies
        assert len({address for *_, address in replies}) == 1, "the keep-alive connection was dropped"

        final = {job_id: wait_job(api, job_id) for job_id in job_ids}
        assert {job_id: (j["status"], j["error"]) for job_id, j in final.items()} == {
            job_id: ("done", None) for job_id in job_ids}
        assert final[profile["id"]]["done"] == len(KEYS) and final[second["id"]]["done"] == 2
        for net in networks:
            measured = api.get(f"/v1/networks/{net['id']}").json()
            assert measured["status"] == "done" and measured["measured"]["median_ms"] > 0
        assert sorted(j["id"] for j in api.get("/v1/jobs").json()) == job_ids  # no job twice

    engine = create_engine(normalize_url(cluster.url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT job_id, count(*) FROM measurements GROUP BY job_id")).all()
            attempts = dict(conn.execute(text("SELECT id, attempts FROM jobs")).all())
    finally:
        engine.dispose()
    # the first profile's ops (one row per key) and the second's: stored once each, whoever wrote them
    assert sum(n for _, n in rows) == len(KEYS)
    assert attempts[profile["id"]] == 2 and all(1 <= a <= 2 for a in attempts.values()), attempts

    log = srv.log_path.read_text(errors="replace")
    assert log.count("database unavailable:") == 1, log
    assert log.count("database answers again") == 1, log
    assert "Traceback" not in log, log


def test_a_lost_connection_is_an_outage_and_a_refused_statement_is_not(cluster: PgCluster):
    from sqlalchemy.exc import DBAPIError

    from profiler_service.db.outage import is_outage

    engine = create_engine(normalize_url(cluster.url))
    try:
        with pytest.raises(DBAPIError) as refused, engine.connect() as conn:
            conn.execute(text("SELECT 1/0"))
        assert not is_outage(refused.value)
        with engine.connect() as conn:  # the server ends this session, as a shutdown does
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as lost:
                conn.execute(text("SELECT 1"))
        assert is_outage(lost.value)
    finally:
        engine.dispose()
    gone = create_engine(normalize_url(cluster.url), connect_args={"connect_timeout": 3})
    try:
        cluster.stop()
        with pytest.raises(DBAPIError) as down, gone.connect():
            pass
        assert is_outage(down.value)
    finally:
        cluster.start()
        gone.dispose()
    wait_for(lambda: {"up": _answers(cluster)}, lambda b: b["up"], "the cluster back", 60)


def _answers(cluster: PgCluster) -> bool:
    engine = create_engine(normalize_url(cluster.url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar_one() == 1
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        engine.dispose()
