"""Fixtures of the client tests: a real profiler service in a subprocess, on a free loopback port.

Skipped (not failed) while ``profiler_service.app`` does not exist yet.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 90  # a guard against a hung start, not a performance assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_built() -> bool:
    # the app and the CLI that serves it; both light to import (the engine loads when the server starts)
    try:
        importlib.import_module("profiler_service.app")
        importlib.import_module("profiler_service.cli")
    except ImportError:
        return False
    return True


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            # the service runs benchmarks in a child process: end its whole group (ours, by id)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


def start_server(workdir: Path, env: dict[str, str] | None = None) -> Server:
    if not service_built():
        pytest.skip("profiler service not built yet")
    port = free_port()
    log = workdir / f"profiler-{port}.log"
    base = {k: v for k, v in os.environ.items() if k != "PROFILER_API_KEY"}  # default: no key, loopback
    env = {**base, "PROFILER_BUDGET_S": "0.2", **(env or {})}
    cmd = [sys.executable, "-m", "profiler_service", "serve", "--port", str(port),
           "--db", f"sqlite:///{workdir / f'profiler-{port}.db'}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"profiler service exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"profiler service not healthy after {STARTUP_DEADLINE_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def profiler_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service shared by the tests that do not stop it."""
    server = start_server(tmp_path_factory.mktemp("profiler"))
    yield server.url
    server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """A private service a test may stop or configure (extra environment variables)."""
    started: list[Server] = []

    def make(env: dict[str, str] | None = None) -> Server:
        started.append(start_server(tmp_path, env))
        return started[-1]

    yield make
    for s in started:
        s.stop()
