"""Database fixtures: a fresh SQLite file per test, and a uniquely named PostgreSQL database per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from profiler_service.db import Database, init_db
from profiler_service.services.devices import ensure_device

PG_ADMIN_URL = os.environ.get("PROFILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[Callable[[], str]]:
    """A factory of fresh databases ``profiler_test_<random>``; all dropped (FORCE) after the session."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {str(e).strip().splitlines()[0]}")
    created: list[str] = []
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    def create() -> str:
        name = f"profiler_test_{uuid.uuid4().hex[:10]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{base}/{name}"

    try:
        yield create
    finally:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def pg_url(pg_databases: Callable[[], str]) -> str:
    return pg_databases()


@pytest.fixture(scope="session")
def pg_database(pg_url: str) -> Iterator[Database]:
    db = init_db(pg_url)
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    """The same test on a real SQLite file and on the real PostgreSQL (emptied after each test)."""
    if request.param == "sqlite":
        database = init_db(f"sqlite:///{tmp_path / 'profiler.db'}")
        yield database
        database.dispose()
        return
    database = request.getfixturevalue("pg_database")
    yield database
    with database.session() as s:
        s.execute(text("TRUNCATE networks, measurements, jobs, tables, devices RESTART IDENTITY CASCADE"))


@pytest.fixture
def device_id(db: Database) -> int:
    with db.session() as s:
        return ensure_device(s, "test-device", {"cpu_model": "test"}).id
