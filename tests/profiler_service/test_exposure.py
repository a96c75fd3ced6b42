"""Who may reach the service: a server started any way (here ``uvicorn --factory``, which never tells the app
its host) with no API key serves loopback clients only; the compose file ships no default key and
publishes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from profiler_helpers import SMALL_KEYS, wait_for

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _non_loopback_address() -> str | None:
    """This machine's own address on its outward interface (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


@pytest.fixture
def factory_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILER_")}
    env.update({"PROFILER_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "PROFILER_WORKER": "0",
                "PROFILER_CACHE_DIR": str(tmp_path / "cache"), "PROFILER_DEVICE_NAME": "exposed"})
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "profiler_service.app:create_app",
                             "--host", "0.0.0.0", "--port", str(port), "--log-level", "warning"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def up() -> dict:
        try:
            return {"code": httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code}
        except httpx.HTTPError:
            assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()
            return {"code": None}
    try:
        wait_for(up, lambda b: b["code"] == 200, "uvicorn --factory to answer", 120)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_keyless_server_on_all_interfaces_serves_loopback_only(factory_server):
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to come from")
    job = {"keys": SMALL_KEYS[:1], "backend": "onnxruntime"}
    outside = httpx.post(f"http://{addr}:{factory_server}/v1/jobs", json=job, timeout=30)
    assert outside.status_code == 403 and "PROFILER_API_KEY" in outside.json()["detail"], outside.text
    assert httpx.get(f"http://{addr}:{factory_server}/v1/tables", timeout=30).status_code == 403
    inside = httpx.post(f"http://127.0.0.1:{factory_server}/v1/jobs", json=job, timeout=30)
    assert inside.status_code == 202, inside.text


def test_compose_has_no_default_key_and_publishes_on_loopback():
    text = (REPO / "docker-compose.yml").read_text()
    profiler = yaml.safe_load(text)["services"]["profiler"]
    key = profiler["environment"]["PROFILER_API_KEY"]
    assert key.startswith("${PROFILER_API_KEY:?"), key  # compose refuses to start without one
    assert "change-me" not in text
    assert all(str(p).startswith("${PROFILER_PUBLISH:-127.0.0.1}:") for p in profiler["ports"]), profiler["ports"]
