"""Our yaml export read the way once-for-all reads it gives our raw prediction; over a real server.

The table is imported over REST as our JSON with skewed statistics (a few huge samples pull the mean to
several times the median, as on a shared machine), so a reader that summed the raw mean would be far off.
"""

from __future__ import annotations

import json
import math
import random

import httpx
import pytest
import torch
import yaml
from published_readers import ofa_keys, ofa_predict

from search_client.latency.model import LatencyModel, required_keys
from shared.arch import make_arch, to_net_config
from shared.schemas import TableOut
from shared.spaces import get_space

RESOLUTION, WIDTHS = 32, (0.35, 1.3)


def skewed_stats(rng: random.Random) -> dict:
    med = rng.uniform(0.05, 2.0)
    p10, p90 = med * rng.uniform(0.85, 0.97), med * rng.uniform(1.05, 1.4)
    return {"median_ms": med, "mean_ms": med * rng.uniform(1.5, 4.0), "std_ms": med * rng.uniform(3, 10),
            "p10_ms": p10, "p90_ms": p90, "count": rng.randint(20, 400), "ref_ms": rng.uniform(5, 6)}


def import_table(api: httpx.Client, device: str, body: str) -> str:
    r = api.post("/v1/tables/import", params={"device": device, "backend": "onnxruntime", "threads": 1,
                                              "batch": 1}, content=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def random_choices(space, rng: random.Random, zeros: bool) -> list[str]:
    while True:
        choices = [rng.choice([c for c in layer.candidates if zeros or c != "zero"]) for layer in space.layers]
        if not zeros or "zero" in choices:
            return choices


@pytest.fixture(scope="module")
def measured_like(api: httpx.Client) -> str:
    rng = random.Random(3)
    keys = {k for w in WIDTHS for k in required_keys(get_space("proxyless-mobile", RESOLUTION, w))}
    entries = {k: skewed_stats(rng) for k in sorted(keys)}
    return import_table(api, "interop-skewed", json.dumps({"entries": entries}))


def test_once_for_all_on_our_yaml_and_net_config_equals_our_prediction(api: httpx.Client, measured_like: str):
    table = TableOut.model_validate(api.get(f"/v1/tables/{measured_like}").json())
    lut = yaml.safe_load(api.get(f"/v1/tables/{measured_like}", params={"format": "yaml"}).text)
    rng = random.Random(0)
    for width in WIDTHS:
        space = get_space("proxyless-mobile", RESOLUTION, width)
        model = LatencyModel.from_table(table, space, use_calibration=False)
        for i in range(10):
            choices = random_choices(space, rng, zeros=i % 2 == 1)
            cfg = json.loads(json.dumps(to_net_config(make_arch(space, choices))))
            ours = model.predict(choices)
            assert ofa_predict(lut, cfg, RESOLUTION) == pytest.approx(ours, rel=1e-6)
            raw_mean_sum = sum(table.entries[k].mean_ms for k in ofa_keys(cfg, RESOLUTION))
            assert raw_mean_sum > 1.4 * ours  # what the published tools read before: the polluted mean


def test_yaml_mean_is_the_served_median_and_var_its_robust_spread(api: httpx.Client, measured_like: str):
    entries = api.get(f"/v1/tables/{measured_like}").json()["entries"]
    lut = yaml.safe_load(api.get(f"/v1/tables/{measured_like}", params={"format": "yaml"}).text)
    for key, st in entries.items():
        e = lut[key]
        assert e["mean"] == st["median_ms"] and e["count"] == st["count"]
        assert e["var"] == pytest.approx(((st["p90_ms"] - st["p10_ms"]) / 2.5631031310892007) ** 2, rel=1e-12)
        assert math.sqrt(e["var"]) < st["std_ms"]  # robust: the huge samples do not inflate it
        assert (e["raw_mean"], e["raw_var"]) == (st["mean_ms"], pytest.approx(st["std_ms"] ** 2, rel=1e-12))


def test_our_yaml_imports_back_to_the_same_served_figures(api: httpx.Client, measured_like: str):
    text = api.get(f"/v1/tables/{measured_like}", params={"format": "yaml"}).text
    copy_id = import_table(api, "interop-yaml-copy", text)
    a = api.get(f"/v1/tables/{measured_like}").json()["entries"]
    b = api.get(f"/v1/tables/{copy_id}").json()["entries"]
    assert b.keys() == a.keys()
    for key in a:
        assert b[key].keys() == a[key].keys()
        for field, value in a[key].items():  # unset fields (ref_ms, nominal_ms) stay unset
            assert b[key][field] == (None if value is None else pytest.approx(value, rel=1e-12)), (key, field)


def test_a_published_table_gives_a_search_the_published_tools_figure(api: httpx.Client):
    """count/mean/var only, as the Pixel-1 table: E[LAT] of a one-hot search = once-for-all's sum."""
    rng = random.Random(5)
    space = get_space("proxyless-mobile", RESOLUTION, 1.3)
    published = {k: {"count": rng.randint(50, 200), "mean": round(rng.uniform(0.1, 9.0), 4),
                     "var": round(rng.uniform(0.0, 0.5), 5)} for k in required_keys(space)}
    text = yaml.safe_dump(published, default_flow_style=None, width=10**6)
    table_id = import_table(api, "interop-published", text)
    exported = yaml.safe_load(api.get(f"/v1/tables/{table_id}", params={"format": "yaml"}).text)
    for key, src in published.items():  # through import and export unchanged
        assert (exported[key]["count"], exported[key]["mean"]) == (src["count"], src["mean"])
        assert exported[key]["var"] == pytest.approx(src["var"], rel=1e-12, abs=1e-15)
    model = LatencyModel.from_table(TableOut.model_validate(api.get(f"/v1/tables/{table_id}").json()), space)
    for i in range(6):
        choices = random_choices(space, rng, zeros=i % 2 == 1)
        probs = [torch.tensor([float(c == name) for c in layer.candidates])
                 for layer, name in zip(space.layers, choices, strict=True)]
        cfg = to_net_config(make_arch(space, choices))
        assert float(model.expected_latency(probs)) == pytest.approx(ofa_predict(published, cfg, RESOLUTION),
                                                                     rel=1e-6)


def test_a_net_config_over_rest(api: httpx.Client, measured_like: str):
    space = get_space("proxyless-mobile", RESOLUTION, 0.35)
    choices = random_choices(space, random.Random(9), zeros=True)
    cfg = to_net_config(make_arch(space, choices))
    cfg.pop("resolution")
    table = TableOut.model_validate(api.get(f"/v1/tables/{measured_like}").json())
    want = LatencyModel.from_table(table, space).predict(choices)
    r = api.post("/v1/networks", json={"table_id": measured_like, "net_config": cfg, "resolution": RESOLUTION})
    assert r.status_code == 202, r.text
    net = r.json()
    assert net["predicted_ms"] == pytest.approx(want, rel=1e-9) and net["missing"] == []
    assert (net["arch"]["width_mult"], net["arch"]["choices"]) == (0.35, choices)

    cfg["blocks"][4]["mobile_inverted_conv"]["stride"] = 2
    r = api.post("/v1/networks", json={"table_id": measured_like, "net_config": cfg, "resolution": RESOLUTION})
    assert r.status_code == 422 and r.json()["field"] == "blocks[4]" and "stride 2" in r.json()["detail"], r.text
    r = api.post("/v1/networks", json={"table_id": measured_like})
    assert r.status_code == 422 and "exactly one of 'arch' or 'net_config'" in r.text
