"""Tables of every edge runtime through the real service: profile, name the runtime and its precision,
export and import, measure a whole network; and a runtime the worker lacks refused by name."""

from __future__ import annotations

import os

import httpx
import pytest
from profiler_helpers import wait_for, wait_job

from shared.arch import make_arch
from shared.spaces import get_space

SPACE = get_space("proxyless-cifar", 8, 0.25, 10)
CHOICES = ["3x3_MaxPool"] + ["identity" if "identity" in layer.candidates else "3x3_SepConv"
                             for layer in SPACE.layers[1:]]
ARCH = make_arch(SPACE, CHOICES)
PRECISION = {"litert": "float32", "litert-int8": "int8", "onnxruntime-int8": "int8", "openvino": "float32"}


@pytest.mark.parametrize("backend", list(PRECISION))
def test_a_table_per_runtime_profiled_exported_and_measured(api: httpx.Client, backend: str):
    assert backend in api.get("/v1/device").json()["backends"]
    r = api.post("/v1/jobs", json={"keys": ARCH.keys, "backend": backend})
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["id"])
    assert job["status"] == "done", job
    table = api.get(f"/v1/tables/{job['table_id']}").json()
    assert (table["backend"], table["dtype"]) == (backend, PRECISION[backend])
    assert all(e["median_ms"] > 0 for e in table["entries"].values())
    listed = {t["id"]: t for t in api.get("/v1/tables").json()}[table["id"]]
    assert (listed["backend"], listed["dtype"]) == (backend, PRECISION[backend])

    exported = api.get(f"/v1/tables/{table['id']}", params={"format": "yaml"}).text
    assert f"backend={backend}" in exported and f"dtype={PRECISION[backend]}" in exported
    r = api.post("/v1/tables/import", params={"device": f"copy-of-{backend}", "backend": backend},
                 content=exported, headers={"Content-Type": "application/x-yaml"})
    assert r.status_code == 201, r.text
    copy = api.get(f"/v1/tables/{r.json()['id']}").json()
    assert (copy["backend"], copy["dtype"]) == (backend, PRECISION[backend])  # the runtime's own precision
    assert set(copy["entries"]) == set(table["entries"])

    body = {"table_id": table["id"], "arch": {"space": SPACE.name, "resolution": 8, "width_mult": 0.25,
                                              "num_classes": 10, "choices": CHOICES}}
    r = api.post("/v1/networks", json=body)
    assert r.status_code == 202, r.text
    net = wait_for(lambda: api.get(f"/v1/networks/{r.json()['id']}").json(),
                   lambda n: n["status"] in ("done", "failed", "cancelled"), "network")
    assert net["status"] == "done", net
    assert net["measured"]["median_ms"] > 0 and net["predicted_ms"] > 0


def test_a_runtime_the_worker_lacks_is_refused_naming_the_extra(server_factory, tmp_path_factory):
    """A worker without OpenVINO (an import hook refuses it, as a machine without the wheel would)."""
    hooks = tmp_path_factory.mktemp("no-openvino")
    (hooks / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoOpenVino:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'openvino' or name.startswith('openvino.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, _NoOpenVino())\n")
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    srv = server_factory("no-openvino", env={"PYTHONPATH": path})
    with httpx.Client(base_url=srv.url, timeout=30.0) as api:
        backends = api.get("/v1/device").json()["backends"]
        assert "openvino" not in backends and "onnxruntime" in backends
        r = api.post("/v1/jobs", json={"keys": ARCH.keys, "backend": "openvino"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "'openvino' is not available" in detail and "pip install 'proxyless-latency[openvino]'" in detail
