"""A profiler service started on this machine: ``python -m profiler_service serve`` on a free loopback port,
with its own database and conversion cache, stopped with everything it started.

What the demo, the benchmarks and the tests use to get a device to talk to when the device is this machine.
The service runs in a process (and a session) of its own: the client imports nothing of it, and stopping
the session also stops a measurement child it left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceFailed(RuntimeError):
    """The service exited or never answered ``/healthz``; the message ends with its log's tail."""


@dataclass
class LocalService:
    """One ``profiler_service serve`` process. ``url`` answers once ``start()`` returns.

    ``env`` is laid over this process's environment (``clean_env`` drops every inherited ``PROFILER_*``
    first); ``prefix`` runs the service under another command (``taskset -c 0``)."""

    workdir: Path
    db_url: str | None = None  # default: a SQLite file in workdir
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    prefix: Sequence[str] = ()
    log_level: str = "warning"
    clean_env: bool = False
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()  # the service runs in it: a relative path would nest
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = self.db_url or f"sqlite:///{self.workdir / 'profiler.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.port}.log"

    @property
    def command(self) -> list[str]:
        return [*self.prefix, sys.executable, "-m", "profiler_service", "serve", "--port", str(self.port),
                "--db", self.db_url, "--log-level", self.log_level]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not (self.clean_env and k.startswith("PROFILER_"))}
        env.update({"PROFILER_CACHE_DIR": str(self.workdir / "cache"), "PYTHONUNBUFFERED": "1"})
        env.update(self.env)
        return env

    def start(self, timeout_s: float = 120.0) -> LocalService:
        with self.log_path.open("ab") as log:
            # a session of its own: Ctrl-C reaches the caller, which then stops the service in order, and
            # a kill of the group takes the measurement child with it
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.environment(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceFailed(f"the profiler service exited with code {self.proc.returncode}:\n"
                                    f"{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceFailed(f"the profiler service did not answer /healthz within {timeout_s:.0f} s:\n"
                            f"{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 40.0) -> None:
        """SIGTERM (the service lets its worker finish the op it is timing), then kill what is left."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the service's whole group: what a power cut or an OOM kill leaves behind."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


@contextmanager
def local_service(workdir: Path, **options) -> Iterator[LocalService]:
    """A started ``LocalService`` (options as its fields), stopped on the way out, however the way out is."""
    service = LocalService(Path(workdir), **options)
    try:
        yield service.start()
    finally:
        service.stop()
