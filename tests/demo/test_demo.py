"""make demo leaves nothing running: the service (and its benchmark child) is gone after the demo
script is interrupted (Ctrl-C's SIGINT, or SIGTERM) or stops on an error."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_demo(tmp: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILER_")}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "demo.py"), "--var", str(tmp / "var"),
                             "--out", str(tmp / "runs"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**env, "PYTHONUNBUFFERED": "1"})


def read_until(proc: subprocess.Popen, pattern: str) -> tuple[re.Match, str]:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if m := re.search(pattern, line):
            return m, "".join(seen)
    raise AssertionError(f"demo ended (code {proc.wait()}) before {pattern!r}:\n{''.join(seen)}")


def group_alive(pid: int) -> bool:
    """Whether any process of the service's process group (the service, a benchmark child) is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_stops_the_service(tmp_path: Path, sig: signal.Signals):
    demo = start_demo(tmp_path)
    try:
        m, _ = read_until(demo, r"profiler service pid (\d+)")
        service = int(m[1])
        read_until(demo, r"profiling \S+ @ \d+ px on \S+ \(job")  # the service is profiling now
        assert group_alive(service)
        demo.send_signal(sig)
        rest = demo.communicate(timeout=120)[0]
    finally:
        demo.kill()
    assert demo.returncode == 130, rest
    assert "interrupted" in rest and f"profiler service stopped (pid {service})" in rest
    assert not group_alive(service), "the service or its benchmark child outlived the demo"


def test_failing_demo_stops_the_service(tmp_path: Path):
    demo = start_demo(tmp_path, "--resolution", "7")  # refused by search-client profile, the service up
    try:
        m, _ = read_until(demo, r"profiler service pid (\d+)")
        rest = demo.communicate(timeout=120)[0]
    finally:
        demo.kill()
    assert demo.returncode == 1, rest
    assert "search-client profile failed" in rest and "resolution" in rest
    assert not group_alive(int(m[1]))
