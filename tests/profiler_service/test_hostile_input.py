"""Hostile and malformed input, on a real server per database (SQLite and PostgreSQL): every answer is a
short 4xx that says what is wrong; nothing is stored, nothing is echoed back at length, no 500."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from profiler_helpers import PUBLISHED

from shared.spaces import get_space

KEY = "s3cret"
HEADERS = {"X-API-Key": KEY}
GOOD_KEY = "Logits-input:7x7x1280-output:1000"
IMPORT = {"device": "hostile", "backend": "onnxruntime"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, server_factory, pg_databases):
    db_url = pg_databases() if request.param == "postgresql" else None
    srv = server_factory(f"hostile-{request.param}", env={"PROFILER_API_KEY": KEY, "PROFILER_WORKER": "0"},
                         db_url=db_url)
    yield srv
    srv.stop()


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, timeout=60, headers=HEADERS) as client:
        yield client


@pytest.fixture
def table_id(api) -> str:
    r = api.post("/v1/tables/import", params=IMPORT, content=PUBLISHED)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _raw(server, request: bytes) -> bytes:
    """Send raw bytes (headers only, say) and read the answer; the timeout guards against a server that
    sits waiting for a body it should have refused on its headers."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def _entry(**over) -> dict:
    return {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.1, "count": 10} | over


def test_a_yaml_alias_bomb_gets_a_short_422(api):
    levels = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]"
                                                    for i in range(1, 7)]
    body = f"{GOOD_KEY}: {{count: 1, var: 0, mean: [{', '.join(levels)}]}}\n"
    r = api.post("/v1/tables/import", params=IMPORT, content=body)
    assert r.status_code == 422 and len(r.content) < 4096, (r.status_code, len(r.content))
    assert "alias" in r.json()["detail"]


def test_auth_and_size_are_checked_on_the_headers_before_the_body(server):
    head = "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n{key}\r\n"
    no_key = _raw(server, head.format(path="/v1/jobs", key="").encode())
    assert no_key.startswith(b"HTTP/1.1 401"), no_key[:200]
    too_big = _raw(server, head.format(path="/v1/jobs", key=f"X-API-Key: {KEY}\r\n").encode())
    assert too_big.startswith(b"HTTP/1.1 413"), too_big[:200]
    lookup = _raw(server, head.format(path="/v1/tables/x/lookup", key="").encode())  # no key by design
    assert lookup.startswith(b"HTTP/1.1 413"), lookup[:200]
    imp = _raw(server, head.format(path="/v1/tables/import?device=d&backend=b", key=f"X-API-Key: {KEY}\r\n")
               .encode())
    assert imp.startswith(b"HTTP/1.1 413"), imp[:200]


def test_a_chunked_body_over_the_cap_is_refused(api):
    chunks = iter([b'{"keys": ["' + b"x" * 65536] + [b"x" * 65536] * 40 + [b'"]}'])
    try:
        r = api.post("/v1/jobs", content=chunks, headers={"Content-Type": "application/json"})
    except httpx.TransportError:  # the server answered and closed while we were still sending: refused
        return
    assert r.status_code == 413, r.text


@pytest.mark.parametrize("bad", [
    {"median_ms": -1.0}, {"mean_ms": "Infinity"}, {"p90_ms": "NaN"}, {"count": -3}, {"count": 2**63},
    {"count": 2**31}, {"std_ms": "-Infinity"}, {"ref_ms": -0.5},
])
def test_json_import_values_are_checked(api, bad):
    entry = _entry(**{k: v for k, v in bad.items() if not isinstance(v, str)})
    body = json.dumps({"entries": {GOOD_KEY: entry}})
    for k, v in bad.items():
        if isinstance(v, str):  # JSON's non-standard literals, as Python's json writes them
            body = body.replace('"count": 10', f'"count": 10, "{k}": {v}')
    r = api.post("/v1/tables/import", params=IMPORT | {"device": "values"}, content=body)
    assert r.status_code == 422, r.text
    assert api.get("/v1/tables").json() == [t for t in api.get("/v1/tables").json() if t["device"] != "values"]


@pytest.mark.parametrize("count", [2**31, 2**63, -1])
def test_yaml_import_count_is_bounded(api, count):
    r = api.post("/v1/tables/import", params=IMPORT, content=f"{GOOD_KEY}: {{count: {count}, mean: 1, var: 0}}\n")
    assert r.status_code == 422 and "count" in r.json()["detail"], r.text


@pytest.mark.parametrize("body", ["a: " + "[" * 50_000, '{"entries": ' + "[" * 50_000, "[" * 50_000,
                                  '{"entries": {"k": ' + '{"a": ' * 50_000])
def test_deep_nesting_is_a_422(api, body):
    r = api.post("/v1/tables/import", params=IMPORT, content=body)
    assert r.status_code == 422, r.text


def test_huge_numbers_inside_keys_are_a_422(api, table_id):
    key = f"sep_conv-input:{'9' * 5000}x8x8-output:8x8x8-kernel:3-stride:1"
    key2 = f"sep_conv-input:8x8x8-output:8x8x8-kernel:{'9' * 5000}-stride:1"
    for k in (key, key2):
        r = api.post(f"/v1/tables/{table_id}/lookup", json={"keys": [k]}, headers={})
        assert r.status_code == 422 and len(r.content) < 2000, r.text
        r = api.post("/v1/jobs", json={"keys": [k]})
        assert r.status_code == 422 and len(r.content) < 2000, r.text
        r = api.post("/v1/tables/import", params=IMPORT, content=f"{k}: {{count: 1, mean: 1, var: 0}}\n")
        assert r.status_code == 422 and len(r.content) < 2000, r.text


def test_nul_bytes_in_ids_are_a_4xx(api, table_id):
    for method, path, kw in [
        ("GET", "/v1/tables/%00", {}), ("GET", "/v1/jobs/a%00b", {}), ("DELETE", "/v1/jobs/%00", {}),
        ("GET", "/v1/networks/%00", {}), ("POST", "/v1/tables/%00/lookup", {"json": {"keys": [GOOD_KEY]}}),
        ("POST", "/v1/tables/import", {"params": IMPORT | {"device": "a\x00b"}, "content": PUBLISHED}),
        ("POST", "/v1/jobs", {"json": {"keys": [GOOD_KEY], "table_id": "\x00"}}),
        ("POST", "/v1/networks", {"json": {"table_id": "\x00", "arch": {"space": "proxyless-cifar", "resolution": 32,
                                                                         "choices": ["identity"] * 12}}}),
        ("POST", f"/v1/tables/{table_id}/calibration", {"json": {"network_ids": ["a\x00", "b", "c"]}}),
        ("POST", f"/v1/tables/{table_id}/lookup", {"json": {"keys": [GOOD_KEY + "\x00"]}}),
    ]:
        r = api.request(method, path, **kw)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)


def test_duplicate_keys_in_an_import_are_refused(api):
    first = PUBLISHED.splitlines()[0]
    r = api.post("/v1/tables/import", params=IMPORT, content=f"{first}\n{first.replace('5.2648', '9.9')}\n")
    assert r.status_code == 422 and "duplicate" in r.json()["detail"], r.text
    one, other = json.dumps(_entry()), json.dumps(_entry(mean_ms=9.0))
    body = f'{{"entries": {{"{GOOD_KEY}": {one}, "{GOOD_KEY}": {other}}}}}'
    r = api.post("/v1/tables/import", params=IMPORT, content=body)
    assert r.status_code == 422 and "twice" in r.json()["detail"], r.text


def test_head_is_answered_like_get_without_a_body(api, table_id):
    for path in ("/healthz", "/v1/tables", f"/v1/tables/{table_id}"):
        r = api.head(path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)


def test_deleting_a_missing_calibration_changes_nothing(api, table_id):
    before = api.get(f"/v1/tables/{table_id}").json()
    r = api.delete(f"/v1/tables/{table_id}/calibration")
    assert r.status_code == 200 and r.json()["calibration"] is None
    after = api.get(f"/v1/tables/{table_id}").json()
    assert (after["updated_at"], after["etag"]) == (before["updated_at"], before["etag"])


def test_a_cifar_architecture_defaults_to_the_spaces_classes(api, table_id):
    choices = [layer.candidates[0] for layer in get_space("proxyless-cifar").layers]
    arch = {"space": "proxyless-cifar", "resolution": 32, "choices": choices}
    r = api.post("/v1/networks", json={"table_id": table_id, "arch": arch})
    assert r.status_code == 202, r.text
    net = r.json()
    assert net["arch"]["num_classes"] == 10
    assert any(k.startswith("Logits-") and k.endswith("-output:10") for k in net["arch"]["keys"])


def test_the_trailing_slash_redirect_is_relative_and_never_names_the_host(server, api):
    answer = _raw(server, b"GET /v1/jobs/?limit=2 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 307") and b"\r\nlocation: /v1/jobs?limit=2\r\n" in head + b"\r\n", head
    assert b"evil" not in answer
    # a path that would read as another host, as a browser resolves it, is no redirect of ours
    assert _raw(server, b"GET //evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
    followed = api.get("/v1/jobs/", params={"limit": 2}, follow_redirects=True)
    assert followed.json() == api.get("/v1/jobs", params={"limit": 2}).json()
