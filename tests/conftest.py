"""Shared fixtures: a real profiler server (``search_client.remote.local_service``) on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from search_client.remote.local_service import LocalService, free_port

# Fast protocol for tests: a statistic from a handful of runs, never a 3 s budget per op.
FAST_PROTOCOL_ENV = {
    "PROFILER_BUDGET_S": "0.3",
    "PROFILER_MIN_RUNS": "5",
    "PROFILER_WARMUP_RUNS": "2",
    "PROFILER_WARMUP_S": "0.02",
    "PROFILER_MAX_RUNS": "300",
    "PROFILER_POLL_INTERVAL_S": "0.2",
    "PROFILER_NOMINAL_BURST_S": "0",  # the burst's minimum block count, not 20 s per server
    # the suite keeps both cores busy: a 10% slow-down gate would wait out most of its measurements
    # (tests/profiler_service/measure/test_protocol.py tests the gate itself)
    "PROFILER_MAX_SLOWDOWN": "1.0",
    "PROFILER_RETRY_WAIT_S": "0.05",  # a tiny measurement's spread retry need not wait out a busy second
}


@pytest.fixture(scope="session")
def port_factory() -> Callable[[], int]:
    """Free loopback ports, for servers a test starts itself."""
    return free_port


def new_server(db_url: str, workdir: Path, env_extra: dict[str, str] | None = None) -> LocalService:
    """A test server: the fast protocol, no inherited ``PROFILER_*`` setting, a device named test-device."""
    env = {**FAST_PROTOCOL_ENV, "PROFILER_DEVICE_NAME": "test-device", **(env_extra or {})}
    return LocalService(workdir, db_url=db_url, env=env, clean_env=True)


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start extra servers (own database, own env); all are stopped at the end of the session."""
    started: list[LocalService] = []

    def make(name: str, env: dict[str, str] | None = None, db_url: str | None = None) -> LocalService:
        workdir = tmp_path_factory.mktemp(name)
        srv = new_server(db_url or f"sqlite:///{workdir / 'profiler.db'}", workdir, dict(env or {}))
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def profiler_server(server_factory) -> LocalService:
    """The shared test server: no API key (so loopback only), worker on, fast protocol."""
    return server_factory("profiler-server")


@pytest.fixture(scope="session")
def api(profiler_server: LocalService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=profiler_server.url, timeout=30.0) as client:
        yield client
