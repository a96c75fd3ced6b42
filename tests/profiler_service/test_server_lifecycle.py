"""Serving rules and crash safety, each on its own real server: bind refusal, API key, shutdown, kill -9."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from profiler_helpers import SMALL_KEYS, wait_job
from sqlalchemy import select

from profiler_service.db import Job, Measurement, init_db

TWELVE_KEYS = [f"{op}-input:8x8x{c}-output:8x8x{c}-kernel:{k}-stride:1" + ("-dilation:2" if op == "dil_conv" else "")
               for op in ("sep_conv", "dil_conv") for c in (8, 16) for k in (3, 5, 7)]
# rel_ci unreachable: every op runs its whole budget, so the job is surely mid-way when the test stops it.
SLOW_OPS_ENV = {"PROFILER_REL_CI": "1e-9", "PROFILER_BUDGET_S": "0.4"}


def test_public_bind_without_api_key_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILER_")}
    r = subprocess.run([sys.executable, "-m", "profiler_service", "serve", "--host", "0.0.0.0", "--port", "0",
                        "--db", f"sqlite:///{tmp_path / 'x.db'}"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: refusing to listen on '0.0.0.0' without an API key: set PROFILER_API_KEY or bind to 127.0.0.1"]


def test_api_key_guards_every_write(server_factory):
    srv = server_factory("keyed", env={"PROFILER_API_KEY": "s3cret", "PROFILER_WORKER": "false"})
    job = {"keys": SMALL_KEYS[:1], "backend": "onnxruntime"}
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get("/healthz").json()["worker"] is False
        for headers in ({}, {"X-API-Key": "wrong"}):
            r = c.post("/v1/jobs", json=job, headers=headers)
            assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        r = c.post("/v1/jobs", json=job, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert c.get(f"/v1/jobs/{job_id}").status_code == 200  # reads stay open
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 401
        assert c.delete(f"/v1/jobs/{job_id}", headers={"X-API-Key": "s3cret"}).json()["status"] == "cancelled"
        assert c.post("/v1/tables/import?device=d&backend=b", content="{}").status_code == 401
        assert c.post("/v1/networks", json={}).status_code == 401


def _job_row(db_url: str, job_id: str) -> tuple[Job, dict]:
    db = init_db(db_url)
    try:
        with db.session(write=False) as s:
            job = s.get(Job, job_id)
            stored = {m.key: m.measured_at for m in s.scalars(select(Measurement).where(Measurement.job_id == job_id))}
            return job, stored
    finally:
        db.dispose()


def test_shutdown_requeues_and_a_killed_worker_resumes(server_factory):
    srv = server_factory("crash", env=SLOW_OPS_ENV)
    with httpx.Client(base_url=srv.url, timeout=30) as api:
        job_id = api.post("/v1/jobs", json={"keys": TWELVE_KEYS, "backend": "onnxruntime"}).json()["id"]
        wait_job(api, job_id, until=lambda j: j["done"] >= 1)

    srv.stop()  # SIGTERM: the worker stops the benchmark and hands the job back
    job, stored = _job_row(srv.db_url, job_id)
    assert (job.status, job.claimed_by, job.attempts) == ("queued", None, 0) and len(stored) >= 1

    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30) as api:
        wait_job(api, job_id, until=lambda j: j["status"] == "running" and j["done"] > len(stored))
    srv.kill()  # SIGKILL of server and benchmark child: the job is left 'running' by a dead worker
    job, before_kill = _job_row(srv.db_url, job_id)
    assert job.status == "running" and set(stored) <= set(before_kill)

    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30) as api:
        job = wait_job(api, job_id)
        entries = api.get(f"/v1/tables/{job['table_id']}").json()["entries"]
    assert (job["status"], job["done"], job["total"]) == ("done", len(TWELVE_KEYS), len(TWELVE_KEYS)), job
    row, after = _job_row(srv.db_url, job_id)
    assert row.attempts == 2 and set(after) == set(TWELVE_KEYS)
    for key, when in before_kill.items():
        assert after[key] == when, f"{key} was measured again instead of resumed"
    assert set(entries) == set(TWELVE_KEYS)


def test_a_fleet_shares_one_postgresql_each_worker_runs_its_own_device(server_factory, pg_databases):
    url = pg_databases()
    a = server_factory("fleet-a", env={"PROFILER_DEVICE_NAME": "box-a"}, db_url=url)
    b = server_factory("fleet-b", env={"PROFILER_DEVICE_NAME": "box-b"}, db_url=url)
    with httpx.Client(base_url=a.url, timeout=30) as api_a, httpx.Client(base_url=b.url, timeout=30) as api_b:
        job_a = api_a.post("/v1/jobs", json={"keys": SMALL_KEYS[:2], "backend": "onnxruntime"}).json()
        job_b = api_b.post("/v1/jobs", json={"keys": SMALL_KEYS[2:], "backend": "onnxruntime"}).json()
        done_a, done_b = wait_job(api_b, job_a["id"]), wait_job(api_a, job_b["id"])  # one database: both see both
        assert done_a["status"] == done_b["status"] == "done"
        tables = {t["device"]: t for t in api_a.get("/v1/tables").json()}
    assert tables["box-a"]["id"] == job_a["table_id"] and tables["box-a"]["entries"] == 2
    assert tables["box-b"]["id"] == job_b["table_id"] and tables["box-b"]["entries"] == 2
    row_a, _ = _job_row(url, job_a["id"])
    row_b, _ = _job_row(url, job_b["id"])
    assert row_a.claimed_by != row_b.claimed_by
