"""The demo's background processes: the profiler service and the search-client steps, each in its own
process group, so that stopping the demo (at the end, on an error, Ctrl-C or SIGTERM) leaves none of
them, nor a measurement child of theirs, running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STOP_GRACE_S = 40  # the worker finishes the op it is timing before it lets the service exit


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process's group, wait, then SIGKILL what is left of it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (a measurement child)
    except ProcessLookupError:
        pass
    proc.wait()


class Service:
    def __init__(self, port: int, db_url: str, env: dict[str, str], log: Path):
        self.port, self.db_url, self.env, self.log = port, db_url, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.children: list[subprocess.Popen] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 120) -> None:
        cmd = [sys.executable, "-m", "profiler_service", "serve", "--port", str(self.port), "--db", self.db_url]
        print("$", " ".join(cmd), flush=True)
        with open(self.log, "ab") as log:
            # a session of its own: Ctrl-C reaches the demo, which then stops the service in order
            self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"demo: the service exited with code {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"demo: the service did not answer /healthz in {timeout:.0f} s; see {self.log}")

    @contextmanager
    def child(self, cmd: list[str]) -> Iterator[subprocess.Popen]:
        """A step's process, output piped line by line; stopped if the demo leaves early."""
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.children.append(proc)
        try:
            yield proc
        finally:
            _stop_group(proc, 10)
            self.children.remove(proc)

    def stop(self) -> None:
        for proc in list(self.children):
            _stop_group(proc, 10)
        if self.proc is not None:
            _stop_group(self.proc, STOP_GRACE_S)
