"""The worker leaves every job in a state that tells the truth: taken back when left behind, done when it
measured everything (whoever wrote the rows last), not counting results that land after a cancel, and
its benchmark child gone with a killed server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from profiler_helpers import wait_for, wait_job
from sqlalchemy import select

from profiler_service.db import Database, Job
from profiler_service.db.models import utcnow
from profiler_service.services import queue
from profiler_service.services.jobs import cancel_job
from profiler_service.settings import Settings
from profiler_service.worker import Worker

FOUR_KEYS = [f"sep_conv-input:8x8x{c}-output:8x8x{c}-kernel:{k}-stride:1" for c in (8, 16) for k in (3, 5)]
ENTRY = {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.1, "count": 10}


def _add_running(db: Database, device_id: int, worker_id: str) -> str:
    from test_db import add_job

    return add_job(db, device_id, status="running", claimed_by=worker_id, attempts=1, heartbeat_at=utcnow())


def test_a_live_worker_takes_back_a_job_it_left_behind(db: Database, device_id: int):
    worker = Worker(db, Settings(database_url=db.url, worker=True), device_id)
    try:
        left_behind = _add_running(db, device_id, worker.id)
        current = _add_running(db, device_id, worker.id)
        worker.current_job = current
        recovered = {r.job_id: r.action for r in worker.recover()}
        assert recovered == {left_behind: "requeued"}
        with db.session(write=False) as s:
            status = {j.id: j.status for j in s.scalars(select(Job))}
        assert status == {left_behind: "queued", current: "running"}
    finally:
        worker.stop()


def test_a_result_after_a_cancel_is_not_counted(db: Database, device_id: int):
    from test_db import add_job

    job_id = add_job(db, device_id)
    with db.session() as s:
        queue.claim_next_job(s, device_id, "w")
        assert queue.add_progress(s, job_id, worker_id="w") is True
    with db.session() as s:
        cancel_job(s, job_id)
    with db.session() as s:
        assert queue.add_progress(s, job_id, worker_id="w") is False
        assert s.get(Job, job_id).done == 1


def test_a_job_is_done_when_an_import_rewrote_a_key_it_measured(server_factory):
    srv = server_factory("shared-key", env={"PROFILER_REL_CI": "1e-9", "PROFILER_BUDGET_S": "1.5"})
    with httpx.Client(base_url=srv.url, timeout=60) as api:
        job = api.post("/v1/jobs", json={"keys": FOUR_KEYS, "backend": "onnxruntime"}).json()
        wait_job(api, job["id"], until=lambda j: j["done"] >= 1)
        # Another writer of the same table re-measures the first key: the row now names someone else.
        r = api.post("/v1/tables/import", params={"device": "test-device", "backend": "onnxruntime"},
                     json={"entries": {FOUR_KEYS[0]: ENTRY}})
        assert r.status_code == 201 and r.json()["id"] == job["table_id"], r.text
        assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"  # the import landed mid-job
        final = wait_job(api, job["id"])
    assert (final["status"], final["done"], final["error"]) == ("done", 4, None), final


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_benchmark_child_dies_with_a_killed_server(server_factory):
    # One op measures for a minute: a child left behind would outlive the guard below by far.
    srv = server_factory("orphan-child", env={"PROFILER_REL_CI": "1e-9", "PROFILER_BUDGET_S": "60",
                                              "PROFILER_MAX_RUNS": "100000000"})
    with httpx.Client(base_url=srv.url, timeout=60) as api:
        api.post("/v1/jobs", json={"keys": FOUR_KEYS[:1], "backend": "onnxruntime"})
        children = wait_for(lambda: {"pids": _children(srv.proc.pid)}, lambda b: bool(b["pids"]),
                            "a benchmark child", 60)["pids"]
    time.sleep(1.0)  # let the child get past its start-up, into the benchmark
    os.kill(srv.proc.pid, signal.SIGKILL)  # the server only, as the OOM killer would
    srv.proc.wait(30)
    try:
        wait_for(lambda: {"alive": [p for p in children if _alive(p)]}, lambda b: not b["alive"],
                 "the benchmark child to go", 20)
    finally:
        for p in children:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
