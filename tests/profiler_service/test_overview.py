"""The JSON behind the overview page: the fleet's devices and a table as a layer x op grid."""

from __future__ import annotations

import httpx

from shared.spaces import get_space

SPACE = get_space("proxyless-mobile", 32, 1.0, 10)
LAYER0 = SPACE.layers[0]
# the stem and the six candidates of the first searchable layer, as if measured
ENTRIES = {SPACE.prefix[0].key: 0.05, **{LAYER0.spec(n).key: 0.01 * (i + 1) for i, n in enumerate(LAYER0.candidates)}}


def _import(api: httpx.Client, device: str) -> str:
    body = {"entries": {k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 9}
                        for k, v in ENTRIES.items()}}
    r = api.post("/v1/tables/import", params={"device": device, "backend": "onnxruntime"}, json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_devices_lists_every_device_with_its_tables(api: httpx.Client):
    _import(api, "overview-board")
    devices = {d["name"]: d for d in api.get("/v1/devices").json()}
    assert devices["overview-board"]["tables"] == 1 and devices["overview-board"]["entries"] == len(ENTRIES)
    assert devices["overview-board"]["updated_at"]
    assert devices["test-device"]["fingerprint"]["cores"]  # the worker's own, with its fingerprint


def test_heatmap_infers_space_resolution_and_classes_from_the_table(api: httpx.Client):
    tid = _import(api, "overview-heatmap")
    h = api.get(f"/v1/tables/{tid}/heatmap").json()
    assert (h["space"], h["resolution"], h["resolutions"]) == ("proxyless-mobile", 32, [32])
    assert h["ops"] == [*LAYER0.candidates, "zero"]
    row0 = dict(zip(h["ops"], h["layers"][0]["ms"], strict=True))
    assert row0 == {**{n: 0.01 * (i + 1) for i, n in enumerate(LAYER0.candidates)}, "zero": None}
    assert h["layers"][0]["keys"][h["ops"].index("zero")] is None  # not a candidate of a stride-2 layer
    row1 = dict(zip(h["ops"], h["layers"][1]["ms"], strict=True))
    assert row1["zero"] == 0.0 and row1["3x3_MBConv3"] is None  # zero costs nothing; the rest is missing
    assert SPACE.layers[1].spec("3x3_MBConv3").key in h["missing"]
    # no head in the table: the space's default number of classes, and the head listed as missing
    assert h["num_classes"] == 1000 and h["fixed"]["Logits-input:1x1x1280-output:1000"] is None
    assert h["fixed"][SPACE.prefix[0].key] == 0.05
    h10 = api.get(f"/v1/tables/{tid}/heatmap", params={"num_classes": 10}).json()
    assert "Logits-input:1x1x1280-output:10" in h10["missing"]
    assert h["needed"] == len(SPACE.all_op_specs()) and len(h["layers"]) == 21


def test_heatmap_bad_input_is_a_4xx_naming_it(api: httpx.Client):
    tid = _import(api, "overview-bad")
    r = api.get(f"/v1/tables/{tid}/heatmap", params={"space": "nope"})
    assert r.status_code == 422 and "nope" in r.text
    r = api.get(f"/v1/tables/{tid}/heatmap", params={"resolution": 0})
    assert r.status_code == 422 and "resolution" in r.text
    assert api.get("/v1/tables/nope/heatmap").status_code == 404


def test_page_and_its_assets_are_served_from_the_package(api: httpx.Client):
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/ui/app.js", "/ui/style.css"):
        assert asset in page.text and api.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from outside
    for bad in ("/ui/..%2Fapp.py", "/ui/.hidden.js", "/ui/nope.js", "/ui/index.py"):
        assert api.get(bad).status_code == 404
