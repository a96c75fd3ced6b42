"""The demo's background processes: the profiler service and the search-client steps, each in its own
process group, so that stopping the demo (at the end, on an error, Ctrl-C or SIGTERM) leaves none of
them, nor a measurement child of theirs, running."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from search_client.remote.local_service import LocalService, ServiceFailed

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
    """The demo's profiler service (``search_client.remote.local_service``) and the steps it runs."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.local = LocalService(workdir, env=env, log_level="info")
        self.children: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def pid(self) -> int | None:
        return self.local.proc.pid if self.local.proc else None

    @property
    def log(self) -> Path:
        return self.local.log_path

    def start(self, timeout: float = 120) -> None:
        print("$", " ".join(self.local.command), flush=True)
        try:
            self.local.start(timeout)
        except ServiceFailed as e:
            raise SystemExit(f"demo: {e}") from None

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
        self.local.stop(STOP_GRACE_S)
