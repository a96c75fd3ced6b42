"""A profiler service started for a benchmark: its own SQLite file and ONNX cache, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from search_client.remote.profiler_client import ProfilerClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def profiler(workdir: Path, name: str = "bench") -> Iterator[ProfilerClient]:
    """A fresh service (new database: a fresh worker that estimates its own nominal) and a client of it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PROFILER_CACHE_DIR": str(workdir / "onnx"), "PROFILER_DEVICE_NAME": name}
    proc = subprocess.Popen([sys.executable, "-m", "profiler_service", "serve", "--port", str(port),
                             "--db", f"sqlite:///{workdir / 'profiler.db'}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with ProfilerClient(f"http://127.0.0.1:{port}", cache_dir=workdir / "cache", timeout=60) as client:
            client.wait_healthy(120)
            yield client
    finally:
        proc.terminate()
        proc.wait(30)
