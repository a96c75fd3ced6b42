"""Database layer on a real SQLite file and a real PostgreSQL: schema, upserts, ETags, the job queue."""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from profiler_service.db import Base, Database, Device, Job, Measurement, Table, init_db
from profiler_service.db.models import utcnow
from profiler_service.services import queue, tables
from profiler_service.services.devices import ensure_device
from profiler_service.services.errors import NotFound
from profiler_service.services.jobs import cancel_job
from profiler_service.services.lookup import LookupIndex, lookup_body
from profiler_service.services.queue import HOST
from profiler_service.services.table_body import json_body
from shared.schemas import LookupResponse, OpStats

KEY = "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1"
KEY2 = "sep_conv-input:8x8x16-output:8x8x16-kernel:5-stride:1"


def stats(ms: float, count: int = 10) -> OpStats:
    return OpStats(median_ms=ms, mean_ms=ms, std_ms=0.1, p10_ms=ms * 0.9, p90_ms=ms * 1.1, count=count)


def add_job(db: Database, device_id: int, **kw) -> str:
    with db.session() as s:
        table = tables.get_or_create_table(s, s.get_one(Device, device_id), "onnxruntime", 1, 1)
        job = Job(kind="profile", device_id=device_id, table_id=table.id, total=2, params={
            "keys": [KEY, KEY2], "backend": "onnxruntime", "threads": 1, "batch": 1}, **kw)
        s.add(job)
        s.flush()
        return job.id


def test_schema_is_migrated_and_matches_models(db: Database):
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0005"
    init_db(db.url).dispose()  # upgrading an up-to-date database is a no-op


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    database = init_db(str(tmp_path / "plain-path.db"))  # a bare path means a SQLite file
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(IntegrityError), database.session() as s:
        s.add(Table(device_id=12345, backend="torch", threads=1, batch=1))
    database.dispose()


def test_table_is_unique_per_configuration(db: Database, device_id: int):
    with db.session() as s:
        device = ensure_device(s, "test-device")
        a = tables.get_or_create_table(s, device, "onnxruntime", 1, 1)
        assert tables.get_or_create_table(s, device, "onnxruntime", 1, 1).id == a.id
        assert tables.get_or_create_table(s, device, "onnxruntime", 2, 1).id != a.id
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Table(device_id=device_id, backend="onnxruntime", threads=1, batch=1, dtype="float32"))


def test_reprofiling_replaces_the_row_and_changes_the_etag(db: Database, device_id: int):
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", "onnxruntime", 1, 1)
        empty_etag = table.etag
        tables.upsert_measurements(s, table, {KEY: stats(1.0), KEY2: stats(2.0)})
        first = table.etag
    with db.session() as s:
        table = tables.get_table(s, table.id)
        assert tables.compute_etag(s, table) == first  # content hash: same content, same tag
        tables.upsert_measurements(s, table, {KEY: stats(1.5, count=99)})
        second = table.etag
    assert len({empty_etag, first, second}) == 3
    with db.session(write=False) as s:
        rows = s.scalars(select(Measurement).where(Measurement.key == KEY)).all()
        assert len(rows) == 1 and rows[0].median_ms == 1.5 and rows[0].count == 99
        assert tables.entries(s, table.id)[KEY2].median_ms == 2.0
        assert tables.summary(s, tables.get_table(s, table.id)).entries == 2


def test_lookup_lists_missing_keys_and_prices_zero_ops_at_nothing(db: Database, device_id: int):
    zero = "zero-input:8x8x16-output:8x8x16"
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", "onnxruntime", 1, 1)
        tables.upsert_measurements(s, table, {KEY: stats(1.0)})
        index = LookupIndex()
        out = LookupResponse.model_validate_json(lookup_body(s, index, table.id, [KEY, KEY2, zero, KEY2]))
    assert set(out.found) == {KEY, zero} and out.found[zero].median_ms == 0
    assert out.found[KEY] == stats(1.0) and out.missing == [KEY2]
    # a write changes the ETag, and the next lookup sees it (the index of the old ETag is not served)
    with db.session() as s:
        tables.upsert_measurements(s, tables.get_table(s, table.id), {KEY2: stats(2.0)})
    with db.session(write=False) as s:
        out = LookupResponse.model_validate_json(lookup_body(s, index, table.id, [KEY, KEY2]))
    assert out.found[KEY2].median_ms == 2.0 and out.missing == []
    with db.session(write=False) as s, pytest.raises(NotFound):
        lookup_body(s, index, "no-such-table", [KEY])


def test_the_pulled_json_body_is_the_table_out_model(db: Database, device_id: int):
    with db.session() as s:
        table = tables.get_or_create_by_name(s, "test-device", "onnxruntime", 1, 1)
        tables.upsert_measurements(s, table, {KEY2: stats(2.5), KEY: stats(1.0 / 3)})
    with db.session(write=False) as s:
        table = tables.get_table(s, table.id)
        body = json_body(s, table, LookupIndex())
        assert json.loads(body) == json.loads(tables.table_out(s, table).model_dump_json())
        assert list(json.loads(body)["entries"]) == sorted([KEY, KEY2])


def test_claim_takes_the_oldest_queued_job_of_this_device_only(db: Database, device_id: int):
    with db.session() as s:
        other = ensure_device(s, "other-device").id
    mine = [add_job(db, device_id, created_at=utcnow() + timedelta(seconds=i)) for i in range(3)]
    add_job(db, other, created_at=utcnow() - timedelta(hours=1))
    claimed = []
    for _ in range(4):
        with db.session() as s:
            job = queue.claim_next_job(s, device_id, "w1")
            claimed.append(job and (job.id, job.status, job.attempts, job.claimed_by))
    assert claimed[:3] == [(j, "running", 1, "w1") for j in mine]
    assert claimed[3] is None


def test_concurrent_claimers_never_share_a_job(db: Database, device_id: int):
    ids = {add_job(db, device_id) for _ in range(12)}
    got: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            with db.session() as s:
                job = queue.claim_next_job(s, device_id, name)
                if job is None:
                    return
                with lock:
                    got.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == sorted(ids)


def test_skip_locked_gives_two_open_transactions_different_jobs(pg_database: Database):
    db = pg_database
    with db.session() as s:
        s.execute(text("TRUNCATE networks, measurements, jobs, tables, devices CASCADE"))
        dev = ensure_device(s, "pg-device").id
    first, second = add_job(db, dev), add_job(db, dev)
    a, b = db.write(), db.write()
    try:
        job_a = queue.claim_next_job(a, dev, "worker-a")  # row lock held: a has not committed
        # Without SKIP LOCKED, b would block on a's lock; the timeout turns a wait into a failure.
        b.execute(text("SET LOCAL lock_timeout = '3s'"))
        job_b = queue.claim_next_job(b, dev, "worker-b")
        assert {job_a.id, job_b.id} == {first, second}
        a.commit()
        b.commit()
    finally:
        a.close()
        b.close()
    with db.session(write=False) as s:
        owners = dict(s.execute(select(Job.id, Job.claimed_by)).all())
    assert owners == {job_a.id: "worker-a", job_b.id: "worker-b"}
    with db.session() as s:
        s.execute(text("TRUNCATE networks, measurements, jobs, tables, devices CASCADE"))


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_recovery_requeues_orphans_and_fails_jobs_that_keep_killing_workers(db: Database, device_id: int):
    now = utcnow()
    dead = f"{HOST}:{_dead_pid()}:gone"
    orphan = add_job(db, device_id, status="running", claimed_by=dead, attempts=1, heartbeat_at=now)
    crashy = add_job(db, device_id, status="running", claimed_by=dead, attempts=3, heartbeat_at=now)
    live = add_job(db, device_id, status="running", claimed_by="live-worker", attempts=1, heartbeat_at=now)
    remote_fresh = add_job(db, device_id, status="running", claimed_by="elsewhere:1:x", attempts=1,
                           heartbeat_at=now)
    remote_stale = add_job(db, device_id, status="running", claimed_by="elsewhere:1:y", attempts=1,
                           heartbeat_at=now - timedelta(hours=1))
    with db.session() as s:
        out = {r.job_id: r.action for r in queue.recover_orphans(s, device_id, live_workers={"live-worker"},
                                                            stale_after_s=600, max_attempts=3)}
    assert out == {orphan: "requeued", crashy: "failed", remote_stale: "requeued"}
    with db.session(write=False) as s:
        status = {j.id: (j.status, j.claimed_by, j.error) for j in s.scalars(select(Job))}
    assert status[orphan][:2] == ("queued", None)
    assert status[crashy][0] == "failed" and "attempt 3 of 3" in status[crashy][2]
    assert status[live][0] == status[remote_fresh][0] == "running"


def test_a_cancel_is_never_overwritten_by_the_worker_finishing(db: Database, device_id: int):
    job_id = add_job(db, device_id)
    with db.session() as s:
        assert queue.claim_next_job(s, device_id, "w").id == job_id
    with db.session() as s:
        assert cancel_job(s, job_id).status == "cancelled"
    with db.session() as s:
        assert queue.finish(s, job_id, "done") is False
        assert queue.heartbeat(s, job_id, "w") is False  # the worker reads: stop
    with db.session(write=False) as s:
        assert s.get(Job, job_id).status == "cancelled"


def test_a_worker_that_lost_its_job_cannot_touch_it(db: Database, device_id: int):
    job_id = add_job(db, device_id)
    with db.session() as s:
        queue.claim_next_job(s, device_id, "old")
        queue.requeue(s, job_id, count_attempt=True)  # recovery thought "old" was dead
        queue.claim_next_job(s, device_id, "new")
    with db.session() as s:
        assert queue.heartbeat(s, job_id, "old") is False and queue.heartbeat(s, job_id, "new") is True
        assert queue.finish(s, job_id, "failed", "late", worker_id="old") is False
        assert queue.requeue(s, job_id, worker_id="old") is False
        job = s.get(Job, job_id)
        assert (job.status, job.claimed_by, job.attempts) == ("running", "new", 2)


def test_a_job_cut_short_by_an_outage_is_queued_again_with_the_reason_until_its_attempts_run_out(
        db: Database, device_id: int):
    job_id = add_job(db, device_id)
    reason = "database unavailable (connection refused)"
    for attempt in (1, 2):
        with db.session() as s:
            assert queue.claim_next_job(s, device_id, "w").attempts == attempt
            assert queue.retry(s, job_id, reason, max_attempts=2, worker_id="other") is None  # not its job
            assert queue.retry(s, job_id, reason, max_attempts=2, worker_id="w") == ("queued" if attempt == 1
                                                                               else "failed")
        with db.session(write=False) as s:
            job = s.get(Job, job_id)
        if attempt == 1:  # back in the queue, the attempt counted, saying why until it is claimed again
            assert (job.status, job.attempts, job.claimed_by, job.error) == (
                "queued", 1, None, f"{reason}; queued again")
    assert (job.status, job.error) == ("failed", f"{reason} (attempt 2 of 2); not retrying")


def test_resume_knows_what_this_job_already_stored(db: Database, device_id: int):
    job_id = add_job(db, device_id)
    with db.session() as s:
        table = s.scalar(select(Table))
        tables.upsert_measurements(s, table, {KEY: stats(1.0)}, job_id=job_id)
        tables.upsert_measurements(s, table, {KEY2: stats(2.0)}, job_id=None)  # someone else's
        assert tables.keys_stored_by_job(s, job_id) == {KEY}
        assert s.scalar(select(func.count()).select_from(Measurement)) == 2


def _old_database(tmp_path, revision: str):
    """A SQLite file at an old schema revision holding device 1 and table 't1'; returns (url, engine)."""
    from sqlalchemy import create_engine

    from profiler_service.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, revision)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (name, fingerprint, created_at, updated_at) "
                          "VALUES ('old', '{}', '2026-01-01', '2026-01-01')"))
        conn.execute(text("INSERT INTO tables (id, device_id, backend, threads, batch, dtype, created_at, "
                          "updated_at, etag) VALUES ('t1', 1, 'onnxruntime', 1, 1, 'float32', '2026-01-01', "
                          "'2026-01-01', 'e')"))
    return url, engine


def test_a_0001_database_upgrades_with_its_rows_intact(tmp_path):


    url, engine = _old_database(tmp_path, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO measurements (table_id, key, median_ms, mean_ms, std_ms, p10_ms, p90_ms, "
                          "count, measured_at) VALUES ('t1', 'k', 1.5, 1.5, 0.1, 1.4, 1.6, 20, '2026-01-01')"))
    engine.dispose()
    db = init_db(url)
    with db.session(write=False) as s:
        m = s.scalar(select(Measurement))
        assert (m.key, m.median_ms, m.ref_ms) == ("k", 1.5, None)


def _timed_and_raw_rows(conn, nominal: float | None = None) -> None:
    """Two measurements of an old schema: "k" timed with the reference (ref_ms 4.0), "raw" without."""
    extra = ("", "") if nominal is None else (", nominal_ms", f", {nominal}")
    for key, ref in (("k", "4.0"), ("raw", "NULL")):
        conn.execute(text("INSERT INTO measurements (table_id, key, median_ms, mean_ms, std_ms, p10_ms, p90_ms, "
                          f"count, ref_ms, measured_at{extra[0]}) VALUES ('t1', '{key}', 1.5, 1.5, 0.1, 1.4, 1.6, "
                          f"20, {ref}, '2026-01-01'{extra[1]})"))


def test_a_0002_database_upgrades_and_its_figures_name_their_nominal(tmp_path):
    from profiler_service.db.models import DriftReference

    url, engine = _old_database(tmp_path, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO drift_references (device_id, backend, threads, reference, nominal_ms, "
                          "created_at) VALUES (1, 'onnxruntime', 1, 'r', 4.5, '2026-01-01')"))
        _timed_and_raw_rows(conn)
    engine.dispose()
    db = init_db(url)
    with db.session(write=False) as s:
        rows = {m.key: m for m in s.scalars(select(Measurement))}
        assert (rows["k"].median_ms, rows["k"].nominal_ms) == (1.5, 4.5)
        assert rows["raw"].nominal_ms is None  # no reference timed: not scaled to any nominal
        ref = s.scalar(select(DriftReference))
        assert (ref.version, ref.source, ref.updated_at is not None) == (1, "first-observation", True)


def test_a_0003_database_upgrades_and_its_timed_figures_name_the_reference_they_had(tmp_path):
    url, engine = _old_database(tmp_path, "0003")
    with engine.begin() as conn:
        _timed_and_raw_rows(conn, nominal=4.5)
    engine.dispose()
    db = init_db(url)
    with db.session(write=False) as s:
        rows = {m.key: m for m in s.scalars(select(Measurement))}
        assert rows["k"].reference == "proxyless-mobile@160/3x3_MBConv3/warm3"  # the only one there was
        assert rows["raw"].reference is None
