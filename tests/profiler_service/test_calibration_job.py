"""Calibration as one request: the device draws networks from a seed, measures them, fits; progress over REST."""

from __future__ import annotations

import httpx
import pytest
from profiler_helpers import wait_for, wait_job
from sqlalchemy import select

from profiler_service.db import Database, Device, Job, Table
from profiler_service.measure.reference import name_for, op_name_for
from profiler_service.services import queue as Q
from profiler_service.services.calibration_jobs import create_calibration_job
from profiler_service.services.errors import Invalid
from profiler_service.services.jobs import create_profile_job
from shared.sampling import sample_choices
from shared.schemas import CalibrationCreate, JobCreate
from shared.spaces import get_space
from shared.specs import Limits

SPACE = {"space": "proxyless-cifar", "resolution": 8, "width_mult": 0.25, "num_classes": 10}


def _profiled_table(api: httpx.Client) -> str:
    r = api.post("/v1/jobs", json={"backend": "onnxruntime", **SPACE})
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["id"])
    assert job["status"] == "done", job
    return job["table_id"]


def test_calibration_job_measures_seeded_networks_and_fits(api: httpx.Client):
    table_id = _profiled_table(api)
    # the shared test server has one table per configuration: other tests may have calibrated it already
    before = (api.get(f"/v1/tables/{table_id}").json()["calibration"] or {}).get("version", 0)
    r = api.post(f"/v1/tables/{table_id}/calibration", json={"samples": 3, "seed": 5, **SPACE})
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["total"], job["done"], job["table_id"]) == ("calibration", 3, 0, table_id)
    seen_done = set()
    job = wait_job(api, job["id"], until=lambda j: seen_done.add(j["done"]) or j["status"] in
                   ("done", "failed", "cancelled"))
    assert (job["status"], job["done"], job["error"]) == ("done", 3, None), job
    assert seen_done <= {0, 1, 2, 3} and 3 in seen_done

    cal = api.get(f"/v1/tables/{table_id}/calibration").json()
    assert cal["n_networks"] == 3 and cal["version"] == before + 1 and cal["job_id"] == job["id"]
    assert cal["scope"] == SPACE and cal["seed"] == 5
    space = get_space(*SPACE.values())
    drawn = [api.get(f"/v1/networks/{i}").json() for i in cal["networks"]]
    # the same seed names the same networks on the client (shared.sampling)
    assert [n["arch"]["choices"] for n in drawn] == sample_choices(space, 3, 5)
    for n in drawn:
        assert n["status"] == "done" and n["measured"]["median_ms"] > 0 and n["calibrated_ms"] > 0
    # two clocks, each named: the networks are timed against the space's reference network, its ops against
    # the space's reference op, each scaled to its own nominal (other tests' entries in this shared table
    # may be on another reference's)
    entries = api.get(f"/v1/tables/{table_id}").json()["entries"]
    keys = {k for n in drawn for k in n["arch"]["keys"] if k in entries}
    assert keys
    assert len({n["measured"]["nominal_ms"] for n in drawn}) == 1 and drawn[0]["measured"]["nominal_ms"] > 0
    assert len({entries[k]["nominal_ms"] for k in keys}) == 1
    assert cal["clock"]["networks"] == [name_for(*list(SPACE.values())[:3])]
    assert op_name_for(*list(SPACE.values())[:3]) in cal["clock"]["entries"]
    assert api.get(f"/v1/tables/{table_id}").json()["calibration"]["version"] == before + 1

    again = api.post(f"/v1/tables/{table_id}/calibration", json={"samples": 3, "seed": 6, **SPACE}).json()
    assert wait_job(api, again["id"])["status"] == "done"
    assert api.get(f"/v1/tables/{table_id}/calibration").json()["version"] == before + 2


def test_calibration_job_rejects_bad_requests(api: httpx.Client):
    r = api.post("/v1/jobs", json={"backend": "onnxruntime", "keys": [
        "Logits-input:8x8x16-output:10"]})
    table_id = wait_job(api, r.json()["id"])["table_id"]
    for body, words in [({"seed": 1, **SPACE}, "exactly one of"),
                        ({"samples": 3, "network_ids": ["a", "b", "c"], **SPACE}, "exactly one of"),
                        ({"samples": 3}, "needs 'space'"),
                        ({"samples": 2, **SPACE}, "samples"),
                        ({"samples": 3, **SPACE, "space": "nope"}, "unknown space"),
                        ({"samples": 3, **SPACE, "resolution": 4000}, "resolution")]:
        r = api.post(f"/v1/tables/{table_id}/calibration", json=body)
        assert r.status_code == 422 and words in r.text, (body, r.text)
    # a table without the space's ops (and no profile of them queued) is refused up front, saying why
    r = api.post(f"/v1/tables/{table_id}/calibration", json={"samples": 3, **{**SPACE, "resolution": 16}})
    assert r.status_code == 422 and "profile the space" in r.json()["detail"], r.text
    assert api.post("/v1/tables/nope/calibration", json={"samples": 3, **SPACE}).status_code == 404


def test_calibration_queued_behind_its_profile_runs_after_it(api: httpx.Client):
    """One call chain for the demo: profile, then calibrate at once; the job waits its turn in the queue."""
    space = {**SPACE, "resolution": 12}
    r = api.post("/v1/jobs", json={"backend": "onnxruntime", **space})
    profile = r.json()
    r = api.post(f"/v1/tables/{profile['table_id']}/calibration", json={"samples": 3, **space})
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["id"])
    assert job["status"] == "done", job
    assert wait_for(lambda: api.get(f"/v1/jobs/{profile['id']}").json(), lambda j: j["status"] == "done",
                    "profile")["done"] == profile["total"]


def _queue(db: Database, device_id: int, **job) -> tuple[str, str]:
    """Queue a profile job (``job``: JobCreate fields) -> (job id, table id)."""
    with db.session() as s:
        created = create_profile_job(s, JobCreate(backend="onnxruntime", **job), device=s.get_one(Device, device_id),
                                     limits=Limits(), backends=["onnxruntime"])
        return created.id, created.table_id


def _calibrate(db: Database, device_id: int, table_id: str) -> str:
    with db.session() as s:
        job = create_calibration_job(s, s.get_one(Table, table_id), CalibrationCreate(samples=3, **SPACE),
                                     device=s.get_one(Device, device_id), limits=Limits(), backends=["onnxruntime"])
        return job.id


def test_a_calibration_whose_ops_no_pending_job_measures_is_refused(db: Database, device_id: int):
    # a queued profile job of the table, but of other ops: it will not supply the space's
    _, table_id = _queue(db, device_id, keys=["Logits-input:8x8x16-output:10"])
    with pytest.raises(Invalid, match="no queued profile job of it measures them"):
        _calibrate(db, device_id, table_id)
    with db.session(write=False) as s:
        assert s.scalars(select(Job.kind).where(Job.table_id == table_id)).all() == ["profile"]
    # a queued profile of the space itself promises them: accepted
    _queue(db, device_id, table_id=table_id, **SPACE)
    assert _calibrate(db, device_id, table_id)


def test_no_worker_claims_a_calibration_before_its_profile_is_done(db: Database, device_id: int):
    profile_id, table_id = _queue(db, device_id, **SPACE)
    calibration_id = _calibrate(db, device_id, table_id)
    other_id, _ = _queue(db, device_id, keys=["Logits-input:8x8x16-output:10"], threads=2)  # another table
    with db.session() as s:
        assert Q.claim_next_job(s, device_id, "worker-a").id == profile_id
    with db.session() as s:  # a second worker passes the calibration by: its profile is still running
        assert Q.claim_next_job(s, device_id, "worker-b").id == other_id
    with db.session() as s:
        assert Q.claim_next_job(s, device_id, "worker-b") is None
    with db.session() as s:
        assert Q.finish(s, profile_id, "done", worker_id="worker-a")
    with db.session() as s:
        assert Q.claim_next_job(s, device_id, "worker-b").id == calibration_id
