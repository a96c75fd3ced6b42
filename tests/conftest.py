"""Shared fixtures: a real profiler server (uvicorn in a subprocess) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

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
    # (tests/measure/test_protocol.py tests the gate itself)
    "PROFILER_MAX_SLOWDOWN": "1.0",
    "PROFILER_RETRY_WAIT_S": "0.05",  # a tiny measurement's spread retry need not wait out a busy second
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def port_factory() -> Callable[[], int]:
    """Free loopback ports, for servers a test starts itself."""
    return free_port


@dataclass
class ServerProcess:
    """A ``python -m profiler_service serve`` subprocess; ``url`` answers once ``start()`` returns."""

    db_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILER_")}
        env.update(FAST_PROTOCOL_ENV)
        env.update({"PROFILER_CACHE_DIR": str(self.workdir / "onnx-cache"),
                    "PROFILER_DEVICE_NAME": "test-device", "PYTHONUNBUFFERED": "1"})
        env.update(self.env_extra)
        log = self.log_path.open("ab")
        # Own session: a test can kill the server and its benchmark child together, like a crash.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profiler_service", "serve", "--port", str(self.port), "--db", self.db_url,
             "--log-level", "warning"], cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop (SIGTERM: the lifespan stops the worker), then kill whatever is left."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and its benchmark child: what a power cut or OOM kill leaves behind."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start extra servers (own database, own env); all are stopped at the end of the session."""
    started: list[ServerProcess] = []

    def make(name: str, env: dict[str, str] | None = None, db_url: str | None = None) -> ServerProcess:
        workdir = tmp_path_factory.mktemp(name)
        srv = ServerProcess(db_url or f"sqlite:///{workdir / 'profiler.db'}", workdir, dict(env or {}))
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def profiler_server(server_factory) -> ServerProcess:
    """The shared test server: no API key (so loopback only), worker on, fast protocol."""
    return server_factory("profiler-server")


@pytest.fixture(scope="session")
def api(profiler_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=profiler_server.url, timeout=30.0) as client:
        yield client
