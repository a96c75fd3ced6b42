"""The REST API against a real uvicorn server in a subprocess (tests/conftest.py), real engine, no mocks."""

from __future__ import annotations

import httpx
import pytest
import yaml
from profiler_helpers import PUBLISHED, SMALL_KEYS, wait_for, wait_job

from shared.arch import make_arch
from shared.spaces import get_space

MB = "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1"


def submit(api: httpx.Client, **body) -> dict:
    r = api.post("/v1/jobs", json={"backend": "onnxruntime", "threads": 1, "batch": 1, **body})
    assert r.status_code == 202, r.text
    return r.json()


def test_health_device_spaces(api: httpx.Client):
    assert api.get("/healthz").json() == {"status": "ok", "device": "test-device", "worker": True}
    dev = api.get("/v1/device").json()
    assert dev["name"] == "test-device" and "onnxruntime" in dev["backends"] and dev["fingerprint"]["cores"]
    spaces = {s["name"]: s for s in api.get("/v1/spaces").json()}
    assert spaces["proxyless-mobile"]["layers"] == 21 and "zero" in spaces["proxyless-mobile"]["candidates"][1]
    assert "proxyless-cifar" in spaces
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/tables", "/v1/tables/{table_id}", "/v1/tables/{table_id}/lookup",
            "/v1/tables/import", "/v1/networks", "/v1/networks/{network_id}", "/v1/device", "/v1/spaces",
            "/healthz", "/metrics"} <= set(paths)
    assert api.get("/docs").status_code == 200


def test_profile_small_ops_end_to_end(api: httpx.Client):
    job = submit(api, keys=SMALL_KEYS)
    assert (job["status"], job["total"], job["done"]) == ("queued", 4, 0)
    job = wait_job(api, job["id"])
    assert (job["status"], job["done"], job["error"]) == ("done", 4, None), job

    r = api.get(f"/v1/tables/{job['table_id']}")
    assert r.status_code == 200 and r.headers["etag"].strip('"') == r.json()["etag"]
    table = r.json()
    assert (table["device"], table["backend"], table["threads"], table["batch"]) == ("test-device",
                                                                                      "onnxruntime", 1, 1)
    assert set(table["entries"]) >= set(SMALL_KEYS)
    for e in table["entries"].values():
        assert e["count"] >= 5 and 0 < e["p10_ms"] <= e["median_ms"] <= e["p90_ms"]
        assert e["ref_ms"] > 0  # the drift reference was timed with every op

    r = api.get(f"/v1/tables/{job['table_id']}", params={"format": "yaml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-yaml")
    published = yaml.safe_load(r.text)
    for key in SMALL_KEYS:
        # the published readers sum "mean": it is the served median; the sample mean stays beside it
        assert published[key]["mean"] == table["entries"][key]["median_ms"]
        assert published[key]["raw_mean"] == table["entries"][key]["mean_ms"]
        assert published[key]["count"] == table["entries"][key]["count"]

    zero = "zero-input:8x8x16-output:8x8x16"
    absent = "sep_conv-input:8x8x16-output:8x8x16-kernel:7-stride:1"
    r = api.post(f"/v1/tables/{job['table_id']}/lookup", json={"keys": [SMALL_KEYS[1], absent, zero]})
    assert r.status_code == 200, r.text
    assert set(r.json()["found"]) == {SMALL_KEYS[1], zero} and r.json()["missing"] == [absent]
    assert r.json()["found"][SMALL_KEYS[1]] == table["entries"][SMALL_KEYS[1]]

    summaries = {t["id"]: t for t in api.get("/v1/tables").json()}
    assert summaries[job["table_id"]]["entries"] == len(table["entries"])
    assert summaries[job["table_id"]]["etag"] == table["etag"]

    # the clock the figures are on, audited: the nominal they name, and the burst of the reference behind it
    nominal = {e["nominal_ms"] for e in table["entries"].values()}
    assert len(nominal) == 1
    clocks = [c for c in api.get("/v1/device/clocks").json() if c["nominal_ms"] in nominal]
    assert len(clocks) == 1 and clocks[0]["bursts"], clocks
    latest = clocks[0]["bursts"][0]
    assert (latest["nominal_ms"], latest["version"]) == (clocks[0]["nominal_ms"], clocks[0]["version"])
    assert latest["burst_ms"] > 0 and latest["pooled_ms"] > 0
    assert api.get("/v1/device/clocks", params={"bursts": -1}).status_code == 422


def test_etag_gives_304_until_the_table_changes(api: httpx.Client):
    params = {"device": "etag-device", "backend": "tflite", "threads": 1, "batch": 1}
    first, rest = PUBLISHED.splitlines(keepends=True)[:2], PUBLISHED.splitlines(keepends=True)[2:]
    table_id = api.post("/v1/tables/import", params=params, content="".join(first)).json()["id"]
    etag = api.get(f"/v1/tables/{table_id}").headers["etag"]
    r = api.get(f"/v1/tables/{table_id}", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert api.get(f"/v1/tables/{table_id}", params={"format": "yaml"},
                   headers={"If-None-Match": etag}).status_code == 200  # another representation
    assert api.post("/v1/tables/import", params=params, content="".join(rest)).status_code == 201
    r = api.get(f"/v1/tables/{table_id}", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag and len(r.json()["entries"]) == 6


def test_tables_are_served_gzipped_to_clients_that_ask_and_plain_to_others(api: httpx.Client):
    import gzip

    table_id = api.post("/v1/tables/import", params={"device": "gzip-device", "backend": "tflite"},
                        content=PUBLISHED).json()["id"]
    with httpx.Client(base_url=str(api.base_url)) as raw:  # read the bytes on the wire, undecoded
        for fmt in ("json", "yaml"):
            with raw.stream("GET", f"/v1/tables/{table_id}", params={"format": fmt},
                            headers={"Accept-Encoding": "gzip"}) as r:
                zipped = b"".join(r.iter_raw())
                assert r.headers["content-encoding"] == "gzip" and "Accept-Encoding" in r.headers["vary"]
            with raw.stream("GET", f"/v1/tables/{table_id}", params={"format": fmt},
                            headers={"Accept-Encoding": "identity"}) as r:
                plain = b"".join(r.iter_raw())
                assert "content-encoding" not in r.headers
            assert gzip.decompress(zipped) == plain
        r = raw.get(f"/v1/tables/{table_id}", headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in r.headers and r.json()["id"] == table_id
    assert api.get(f"/v1/tables/{table_id}").json()["entries"]  # httpx asks for gzip and decodes it


def test_import_published_yaml_and_our_json(api: httpx.Client):
    r = api.post("/v1/tables/import", params={"device": "pixel1", "backend": "tflite"}, content=PUBLISHED,
                 headers={"Content-Type": "application/x-yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["entries"] == 6
    table = api.get(f"/v1/tables/{r.json()['id']}").json()
    assert table["entries"]["Logits-input:7x7x1280-output:1000"]["mean_ms"] == 0.6421
    r = api.post("/v1/tables/import", params={"device": "pixel1-copy", "backend": "tflite"}, json=table)
    assert r.status_code == 201 and r.json()["entries"] == 6
    assert api.get(f"/v1/tables/{r.json()['id']}").json()["entries"] == table["entries"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"keys": ["foo-input:8x8x16-output:8x8x16"]}, 422, ["keys[0]", "type", "unknown op type 'foo'"]),
    ({"keys": ["sep_conv-input:8x8x16-output:8x8x16-kernel:4-stride:1"]}, 422, ["kernel", "4"]),
    ({"keys": ["sep_conv-input:9x9x16-output:3x3x16-kernel:3-stride:3"]}, 422, ["stride", "3"]),
    ({"keys": ["Conv_1-input:7x7x320-output:7x7x1000000"]}, 422, ["output channels", "1000000"]),
    ({"keys": ["identity-input:0x0x16-output:0x0x16"]}, 422, ["input height", "0"]),
    ({"keys": ["expanded_conv-input:1024x1024x64-output:1024x1024x64-expand:6-kernel:3-stride:1-idskip:1"]},
     422, ["memory", "MiB"]),
    ({"keys": ["expanded_conv-input:8x8x16"]}, 422, ["key", "missing"]),
    ({"keys": ["sep_conv-input:8x8-output:8x8x16-kernel:3-stride:1"]}, 422, ["input", "HxWxC"]),
    ({"keys": ["zero-input:8x8x16-output:8x8x16"]}, 422, ["keys", "nothing to profile"]),
    ({"keys": []}, 422, ["keys"]),
    ({"space": "proxyless-mobile", "resolution": 0}, 422, ["resolution"]),
    ({"space": "proxyless-mobile", "resolution": 1024, "batch": 64}, 422, ["memory"]),
    ({"space": "no-such-space"}, 422, ["space", "unknown space"]),
    ({"space": "proxyless-mobile", "keys": [MB]}, 422, ["exactly one of 'space' or 'keys'"]),
    ({"keys": [MB], "backend": "tensorflow"}, 422, ["backend"]),
    ({"keys": [MB], "threads": 256}, 422, ["threads", "cores"]),
    ({"keys": [MB], "table_id": "nope"}, 404, ["table", "nope"]),
])
def test_bad_job_requests_get_a_4xx_naming_the_field(api: httpx.Client, body: dict, status: int,
                                                     words: list[str]):
    r = api.post("/v1/jobs", json={"backend": "onnxruntime", **body})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for w in words:
        assert w in detail, detail


def test_unavailable_backend_is_refused_by_name(api: httpx.Client):
    if "torch-cuda" in api.get("/v1/device").json()["backends"]:
        pytest.skip("this machine has CUDA")
    r = api.post("/v1/jobs", json={"keys": [MB], "backend": "torch-cuda"})
    assert r.status_code == 422 and "backend: 'torch-cuda' is not available" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path", "kw", "status", "words"), [
    ("get", "/v1/jobs/nope", {}, 404, ["job 'nope' not found"]),
    ("delete", "/v1/jobs/nope", {}, 404, ["job 'nope' not found"]),
    ("get", "/v1/tables/nope", {}, 404, ["table 'nope' not found"]),
    ("post", "/v1/tables/nope/lookup", {"json": {"keys": [MB]}}, 404, ["table 'nope' not found"]),
    ("get", "/v1/networks/nope", {}, 404, ["network 'nope' not found"]),
    ("post", "/v1/networks", {"json": {"table_id": "nope", "arch": {"space": "proxyless-cifar", "resolution": 8,
                                                                     "choices": ["identity"]}}}, 404, ["nope"]),
    ("post", "/v1/tables/import?device=d&backend=b", {"content": "a: {count: 1, mean: [1"}, 422,
     ["yaml", "malformed", "line 1"]),
    ("post", "/v1/tables/import?device=d&backend=b", {"content": "Logits-input:7x7x8-output:10: {count: 3}"}, 422,
     ["Logits-input:7x7x8-output:10", "missing field 'mean'"]),
    ("post", "/v1/tables/import?device=d&backend=b&threads=0", {"content": PUBLISHED}, 422, ["threads"]),
    ("post", "/v1/tables/import?backend=b", {"content": PUBLISHED}, 422, ["device", "required"]),
    ("get", "/v1/tables/nope?format=xml", {}, 422, ["format"]),
])
def test_bad_requests_elsewhere_get_a_4xx_with_a_message(api: httpx.Client, method, path, kw, status, words):
    r = api.request(method.upper(), path, **kw)
    assert r.status_code == status, r.text
    for w in words:
        assert w in r.json()["detail"], r.json()


def test_lookup_rejects_a_malformed_key(api: httpx.Client):
    table_id = api.post("/v1/tables/import", params={"device": "lk", "backend": "tflite"},
                        content=PUBLISHED).json()["id"]
    r = api.post(f"/v1/tables/{table_id}/lookup", json={"keys": ["Conv-input:224x224x3-output:112x112x32",
                                                                  "expanded_conv-kernel:9"]})
    assert r.status_code == 422 and "keys[1]" in r.json()["detail"]


def test_cancel_queued_and_running_jobs(api: httpx.Client):
    # Mid-sized ops (several ms a run): still running, with many ops to go, when the cancel lands.
    heavy = [f"expanded_conv-input:{r}x{r}x{c}-output:{r}x{r}x{c}-expand:{e}-kernel:{k}-stride:1-idskip:1"
             for r in (56, 112) for c in (24, 32, 40) for e in (3, 6) for k in (3, 5, 7)]
    long = submit(api, keys=heavy)
    queued = submit(api, keys=SMALL_KEYS[:1])
    r = api.delete(f"/v1/jobs/{queued['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    wait_job(api, long["id"], until=lambda j: j["status"] != "queued" and j["done"] >= 1)
    r = api.delete(f"/v1/jobs/{long['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert api.delete(f"/v1/jobs/{long['id']}").json()["status"] == "cancelled"  # idempotent
    # The worker is free again once a later job completes: by then it has stopped the cancelled one.
    after = wait_job(api, submit(api, keys=SMALL_KEYS[3:])["id"])
    assert after["status"] == "done"
    long = api.get(f"/v1/jobs/{long['id']}").json()
    assert long["status"] == "cancelled" and 1 <= long["done"] < long["total"] == len(heavy)
    assert api.get(f"/v1/jobs/{queued['id']}").json()["done"] == 0
    r = api.delete(f"/v1/jobs/{after['id']}")
    assert r.status_code == 409 and "already done" in r.json()["detail"]


def test_network_measured_next_to_its_prediction(api: httpx.Client):
    space = get_space("proxyless-cifar", 8, 0.25, 10)
    choices = ["3x3_SepConv" if "identity" not in layer.candidates else "identity" for layer in space.layers]
    choices[0] = "3x3_MaxPool"
    arch = make_arch(space, choices)
    job = wait_job(api, submit(api, keys=arch.keys)["id"])
    assert job["status"] == "done", job
    table_before = api.get(f"/v1/tables/{job['table_id']}").json()
    body = {"table_id": job["table_id"], "arch": {"space": "proxyless-cifar", "resolution": 8, "width_mult": 0.25,
                                                  "num_classes": 10, "choices": choices}}
    r = api.post("/v1/networks", json=body)
    assert r.status_code == 202, r.text
    net = r.json()
    assert net["status"] == "queued" and net["missing"] == [] and net["predicted_ms"] > 0
    assert net["arch"]["keys"] == arch.keys
    net = wait_for(lambda: api.get(f"/v1/networks/{net['id']}").json(),
                   lambda n: n["status"] in ("done", "failed", "cancelled"), "network")
    assert net["status"] == "done", net
    assert net["measured"]["count"] >= 5 and net["measured"]["median_ms"] > 0
    assert net["measured"]["ref_ms"] > 0
    assert net["calibrated_ms"] is None  # measuring a network never calibrates by itself
    assert api.get(f"/v1/tables/{job['table_id']}").json()["etag"] == table_before["etag"]

    r = api.post(f"/v1/tables/{job['table_id']}/calibration", json={"network_ids": [net["id"]] * 3})
    assert r.status_code == 422 and "at least 3" in r.text
    others = [choices[:1] + ["identity" if "identity" in layer.candidates else c for layer, c in
                             zip(space.layers[1:], choices[1:], strict=True)],
              ["3x3_AvgPool"] + choices[1:]]
    ids = [net["id"]]
    for ch in others:
        body_i = {**body, "arch": {**body["arch"], "choices": ch}}
        wait_job(api, submit(api, keys=make_arch(space, ch).keys)["id"])
        ids.append(api.post("/v1/networks", json=body_i).json()["id"])
    for i in ids:
        wait_for(lambda i=i: api.get(f"/v1/networks/{i}").json(), lambda n: n["status"] == "done", "network")
    r = api.post(f"/v1/tables/{job['table_id']}/calibration", json={"network_ids": ids})
    assert r.status_code == 201, r.text
    cal = r.json()
    assert cal["version"] == 1 and cal["networks"] == ids and cal["n_networks"] == 3
    # the networks' own space and size: a search of that space trusts the fit instead of fitting its own
    assert cal["scope"] == {"space": "proxyless-cifar", "resolution": 8, "width_mult": 0.25, "num_classes": 10}
    table_after = api.get(f"/v1/tables/{job['table_id']}").json()
    assert table_after["calibration"]["version"] == 1 and table_after["etag"] != table_before["etag"]
    net = api.get(f"/v1/networks/{net['id']}").json()
    assert net["calibrated_ms"] > 0
    assert api.post(f"/v1/tables/{job['table_id']}/calibration", json={"network_ids": ids}).json()["version"] == 2

    bad = {**body, "arch": {**body["arch"], "choices": choices[:3]}}
    r = api.post("/v1/networks", json=bad)
    assert r.status_code == 422 and "choices" in r.json()["detail"]


def test_metrics_count_requests_jobs_and_ops(api: httpx.Client):
    api.get("/healthz")
    text = api.get("/metrics").text
    assert 'profiler_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'profiler_jobs{kind="profile",status="done"}' in text
    assert "profiler_ops_measured_total" in text and "profiler_table_entries" in text
    assert "/v1/jobs/nope" not in text  # route templates, not raw paths
