"""The worker in-process with the real engine: resume skips what the job stored; engine errors are recorded."""

from __future__ import annotations

import pytest
from profiler_helpers import SMALL_KEYS
from sqlalchemy import select

from profiler_service.db import Database, Job, Measurement
from profiler_service.services import queue, tables
from profiler_service.settings import Settings
from profiler_service.worker import Worker
from shared.schemas import OpStats

SENTINEL = OpStats(median_ms=9.0, mean_ms=9.0, std_ms=0.0, p10_ms=9.0, p90_ms=9.0, count=4242)


def fast_settings(tmp_path) -> Settings:
    return Settings(budget_s=0.2, min_runs=5, warmup_runs=2, warmup_s=0.01, max_runs=200, nominal_burst_s=0,
                    max_slowdown=1.0, retry_wait_s=0.05, cache_dir=tmp_path / "onnx-cache", worker=False)


def make_job(db: Database, device_id: int, keys: list[str], backend: str = "onnxruntime") -> str:
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", backend, 1, 1)
        job = Job(kind="profile", device_id=device_id, table_id=table.id, total=len(keys),
                  params={"keys": keys, "backend": backend, "threads": 1, "batch": 1})
        s.add(job)
        s.flush()
        return job.id


def test_a_resumed_job_measures_only_what_it_had_not_stored(db: Database, device_id: int, tmp_path):
    keys = SMALL_KEYS[1:4]
    job_id = make_job(db, device_id, keys)
    worker = Worker(db, fast_settings(tmp_path), device_id)
    with db.session() as s:
        assert queue.claim_next_job(s, device_id, worker.id).id == job_id
        # What a previous run of this job stored before its worker died.
        table = tables.get_table(s, s.get(Job, job_id).table_id)
        tables.upsert_measurements(s, table, {keys[0]: SENTINEL}, job_id=job_id)
    seen: list[tuple[int, int]] = []
    assert worker.run_job(job_id, progress=lambda d, t: seen.append((d, t))) == "done"
    assert seen[0] == (1, 3) and seen[-1] == (3, 3)
    with db.session(write=False) as s:
        job = s.get(Job, job_id)
        rows = {m.key: m for m in s.query(Measurement).filter_by(job_id=job_id)}
    assert (job.done, job.total, job.error) == (3, 3, None) and job.finished_at is not None
    assert rows[keys[0]].count == 4242, "the stored op was measured again"
    assert all(rows[k].count >= 5 and rows[k].median_ms > 0 for k in keys[1:])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_an_engine_failure_is_recorded_on_the_job(db: Database, device_id: int, tmp_path):
    job_id = make_job(db, device_id, SMALL_KEYS[:1], backend="no-such-backend")
    worker = Worker(db, fast_settings(tmp_path), device_id)
    with db.session() as s:
        queue.claim_next_job(s, device_id, worker.id)
    assert worker.run_job(job_id) == "failed"
    with db.session(write=False) as s:
        job = s.get(Job, job_id)
    assert "no-such-backend" in job.error and "not available" in job.error and job.finished_at is not None


def test_a_space_is_timed_against_its_own_reference_and_that_reference_gets_its_nominal(
        db: Database, device_id: int, tmp_path):
    from profiler_service.db.models import Device, DriftReference
    from profiler_service.measure.reference import NAME, op_name_for
    from profiler_service.services.jobs import create_profile_job
    from shared.schemas import JobCreate
    from shared.specs import DEFAULT_LIMITS

    matched = op_name_for("proxyless-cifar", 8, 0.25)  # a space's ops: its op-sized reference
    assert matched == "proxyless-cifar@8x0.25/3x3_SepConv.layer6/warm3" and matched != NAME
    with db.session() as s:
        job = create_profile_job(s, JobCreate(space="proxyless-cifar", resolution=8, width_mult=0.25,
                                              backend="onnxruntime"),
                                 device=s.get(Device, device_id), limits=DEFAULT_LIMITS,
                                 backends=["onnxruntime"])
        job_id, n_keys, params = job.id, job.total, dict(job.params)
        assert params["reference"] == matched
    worker = Worker(db, fast_settings(tmp_path), device_id)
    with db.session() as s:
        queue.claim_next_job(s, device_id, worker.id)
    assert worker.run_job(job_id) == "done"
    with db.session(write=False) as s:
        rows = list(s.query(Measurement).filter_by(job_id=job_id))
        nominals = {r.reference: r for r in s.query(DriftReference).filter_by(device_id=device_id)}
    assert len(rows) == n_keys and {r.reference for r in rows} == {matched}
    # the burst ran for the matched reference (not the default one), and every figure is on its clock
    assert set(nominals) == {matched} and nominals[matched].source == "burst"
    assert {r.nominal_ms for r in rows} == {nominals[matched].nominal_ms}

    # the next job's child reads its slow-downs against that nominal
    assert worker.clock.protocol("onnxruntime", 1, matched).quiet_ref_ms == nominals[matched].nominal_ms
    assert worker.clock.protocol("onnxruntime", 2, matched).quiet_ref_ms is None  # no nominal there yet


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_job_naming_an_unknown_reference_fails_and_says_which(db: Database, device_id: int, tmp_path):
    job_id = make_job(db, device_id, SMALL_KEYS[:1])
    with db.session() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "reference": "resnet50@224/conv/warm3"}
    worker = Worker(db, fast_settings(tmp_path), device_id)
    with db.session() as s:
        queue.claim_next_job(s, device_id, worker.id)
    assert worker.run_job(job_id) == "failed"
    with db.session(write=False) as s:
        assert "unknown drift reference 'resnet50@224/conv/warm3'" in s.get(Job, job_id).error


def _queue_network(db: Database, device_id: int, choices_index: int) -> str:
    from profiler_service.db import Device
    from profiler_service.services import networks
    from shared.schemas import ArchIn, NetworkCreate
    from shared.spaces import get_space

    space = get_space("proxyless-cifar", 8, 0.25, 10)
    choices = [layer.candidates[choices_index % len(layer.candidates)] for layer in space.layers]
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", "onnxruntime", 1, 1)
        req = NetworkCreate(table_id=table.id, arch=ArchIn(space=space.name, resolution=8, width_mult=0.25,
                                                           choices=choices))
        net = networks.create_network_job(s, req, device=s.get_one(Device, device_id), limits=Settings().limits,
                                   backends=["onnxruntime"])
        return net.job_id


def test_network_jobs_queued_back_to_back_are_measured_as_one_batch(db: Database, device_id: int, tmp_path):
    """The unbroken run of network jobs at the head of the queue is claimed and measured together; a job of
    another kind ends the batch and keeps its place."""
    from profiler_service.db import Network

    first, second = _queue_network(db, device_id, 0), _queue_network(db, device_id, 2)
    profile = make_job(db, device_id, SMALL_KEYS[:1])
    after = _queue_network(db, device_id, 3)
    worker = Worker(db, fast_settings(tmp_path), device_id)
    assert worker.run_once() is True
    with db.session(write=False) as s:
        status = {j.id: (j.status, j.done, j.claimed_by) for j in s.scalars(select(Job))}
        nets = {n.job_id: n for n in s.scalars(select(Network))}
    assert status[first] == status[second] == ("done", 1, worker.id)
    assert status[profile][0] == status[after][0] == "queued"
    for job_id in (first, second):
        assert nets[job_id].status == "done" and nets[job_id].median_ms > 0 and nets[job_id].count >= 40
    assert nets[after].median_ms is None


def test_a_network_that_fails_its_batch_fails_alone_and_the_rest_go_back_to_the_queue(
        db: Database, device_id: int, tmp_path):
    first, broken = _queue_network(db, device_id, 0), _queue_network(db, device_id, 1)
    with db.session() as s:  # a key the engine cannot build, as if the op vocabulary had changed since
        job = s.get(Job, broken)
        job.params = {**job.params, "keys": ["conv-not-a-key"]}
    worker = Worker(db, fast_settings(tmp_path), device_id)
    assert worker.run_once() is True
    with db.session(write=False) as s:
        jobs = {j.id: j for j in s.scalars(select(Job))}
    assert jobs[broken].status == "failed"
    assert jobs[broken].error.startswith("measuring the network failed: SpecError: type: unknown op type 'conv'")
    assert jobs[first].status == "queued" and jobs[first].claimed_by is None


def test_a_network_cancelled_mid_batch_stays_cancelled_and_unmeasured_while_the_rest_finish(
        db: Database, device_id: int, tmp_path):
    import threading

    from profiler_helpers import wait_for

    from profiler_service.db import Network
    from profiler_service.services.jobs import cancel_job

    kept, dropped = _queue_network(db, device_id, 0), _queue_network(db, device_id, 2)
    worker = Worker(db, fast_settings(tmp_path), device_id)
    runner = threading.Thread(target=worker.run_once)
    runner.start()

    def statuses() -> dict:
        with db.session(write=False) as s:
            return {j.id: j.status for j in s.scalars(select(Job))}
    wait_for(statuses, lambda st: st[dropped] == "running", "the batch claimed")
    with db.session() as s:
        cancel_job(s, dropped)
    runner.join(300)
    with db.session(write=False) as s:
        nets = {n.job_id: n for n in s.scalars(select(Network))}
    assert statuses() == {kept: "done", dropped: "cancelled"}
    assert nets[kept].median_ms > 0 and nets[dropped].median_ms is None
