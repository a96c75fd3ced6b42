"""Stalled request bodies and import storms, on a real server with real sockets: a connection that never
finishes its body is cut with 408 and holds no slot meanwhile, and reads keep answering while imports
queue. Lookups are bounded by a client timeout (a guard against a freeze), never timed."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from profiler_helpers import PUBLISHED

STALLED = 64
IMPORTS = 20
BODY_TIMEOUT_S = 12  # long enough that a read which waited behind the stall would miss its own timeout
READ_TIMEOUT_S = 6.0
KEY = PUBLISHED.split(": {", 1)[0]


def storm_table(index: int, entries: int = 2000) -> str:
    """About 190 KB of published yaml (5000 entries: the 480 KB of bench/api_load.py's hostile level)."""
    return "".join(f"sep_conv-input:{8 + i // 500}x{8 + i // 500}x{8 + i % 500}-output:{8 + i // 500}x"
                   f"{8 + i // 500}x{8 + i % 500}-kernel:3-stride:1: {{count: 20, mean: {1 + index / 100}, "
                   f"var: 0.01}}\n" for i in range(entries))


def _stall(url: str, path: str) -> socket.socket:
    """Send a request's headers and one byte of its 1000-byte body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=120)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 1000\r\n\r\n{{".encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    with sock:
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def server(server_factory):
    srv = server_factory("slow-bodies", env={"PROFILER_WORKER": "0", "PROFILER_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def table_id(server) -> str:
    r = httpx.post(f"{server.url}/v1/tables/import", params={"device": "slow", "backend": "tflite"},
                   content=PUBLISHED, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_stalled_bodies_hold_no_slot_and_are_cut_with_408(server, table_id):
    paths = [f"/v1/tables/{table_id}/lookup", "/v1/jobs", "/v1/tables/import?device=d&backend=b"]
    stalled = [_stall(server.url, paths[i % len(paths)]) for i in range(STALLED)]
    try:
        with httpx.Client(base_url=server.url, timeout=READ_TIMEOUT_S) as api:
            # every stalled request is in the server before the reads go (its headers parsed, its body awaited)
            assert api.get("/healthz").status_code == 200
            for _ in range(3):
                r = api.post(f"/v1/tables/{table_id}/lookup", json={"keys": [KEY]})
                assert r.status_code == 200 and list(r.json()["found"]) == [KEY], r.text
                assert api.get("/v1/tables").status_code == 200
        answers = [_answer(s) for s in stalled]
    finally:
        for s in stalled:
            s.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    assert b"body: not complete within" in answers[0]


def test_lookups_answer_under_stalled_bodies_and_an_import_storm(server, table_id):
    stalled = [_stall(server.url, f"/v1/tables/{table_id}/lookup") for _ in range(STALLED)]
    bodies = [storm_table(i) for i in range(IMPORTS)]
    go = threading.Barrier(IMPORTS + 1)

    def one_import(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            go.wait(60)
            return c.post("/v1/tables/import", params={"device": f"storm-{i}", "backend": "tflite"},
                          content=bodies[i]).status_code

    try:
        with ThreadPoolExecutor(IMPORTS) as pool, httpx.Client(base_url=server.url, timeout=READ_TIMEOUT_S) as api:
            imports = [pool.submit(one_import, i) for i in range(IMPORTS)]
            go.wait(60)
            answered = []
            while not all(f.done() for f in imports) and len(answered) < 20:
                r = api.post(f"/v1/tables/{table_id}/lookup", json={"keys": [KEY]})
                answered.append((r.status_code, list(r.json()["found"])))
            statuses = [f.result() for f in imports]
        assert answered and all(a == (200, [KEY]) for a in answered), answered[:3]
        assert statuses == [201] * IMPORTS, statuses
    finally:
        for s in stalled:
            s.close()


def test_a_slow_chunked_body_is_cut_too(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 408")
