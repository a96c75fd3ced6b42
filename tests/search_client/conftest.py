"""Fixtures of the search tests: a complete but fake latency table (ms proportional to multiply-adds),
tiny search configs, and the digits splits loaded once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from search_client.data.datasets import DatasetSplits, load_dataset
from search_client.engine.search import SearchConfig
from shared import specs
from shared.spaces import SearchSpace, get_space
from shared.specs import OpSpec

RESOLUTION = 32


def macs(s: OpSpec) -> int:
    """Multiply-adds of one op; a stand-in for a measured latency that orders ops sensibly."""
    if s.type == specs.MBCONV:
        expand = 0 if s.expand == 1 else s.h * s.w * s.cin * s.mid
        return expand + s.out_h * s.out_w * s.mid * (s.kernel**2 + s.cout)
    if s.type in (specs.STEM, specs.FEATURE_MIX):
        return s.out_h * s.out_w * s.cin * s.cout * s.kernel**2
    if s.type == specs.LOGITS:
        return s.cin * s.cout + s.h * s.w * s.cin
    return s.out_h * s.out_w * s.cin * (s.kernel**2 + s.cout)


def fake_entries(space: SearchSpace) -> dict[str, float]:
    # 0.05 ms launch cost + 10 us per 1k MACs: a mobile-32px net lands between ~20 and ~125 ms,
    # above 1 ms so mul#log is defined
    return {s.key: 0.05 + 1e-5 * macs(s) for s in space.all_op_specs()}


@pytest.fixture(autouse=True)
def one_thread():
    """Two intra-op threads on a 2-core box shared with other test processes stall each other (a 7x
    slowdown of BatchNorm was seen); one thread per test process is faster and steadier."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    return load_dataset("digits", resolution=RESOLUTION)


@pytest.fixture(scope="session")
def mobile_space() -> SearchSpace:
    return get_space("proxyless-mobile", RESOLUTION, 1.0, 10)


@pytest.fixture(scope="session")
def entries(mobile_space: SearchSpace) -> dict[str, float]:
    return fake_entries(mobile_space)


@pytest.fixture
def table_file(tmp_path: Path, entries: dict[str, float]) -> Path:
    """Our table JSON, as GET /v1/tables/{id} returns it."""
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"id": "fake", "device": "test", "backend": "onnxruntime", "entries": {
        k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 1}
        for k, v in entries.items()}}))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., SearchConfig]:
    """A search that finishes in seconds on two CPU cores."""

    def make(**kw) -> SearchConfig:
        base = dict(space="proxyless-mobile", resolution=RESOLUTION, dataset="digits", batch_size=32,
                    warmup_epochs=1, epochs=1, steps_per_epoch=4, arch_every=1, eval_batches=2, arch_skip_epochs=0,
                    progress=False, out=str(tmp_path / "run"))
        base.update(kw)
        return SearchConfig(**base)

    return make


@pytest.fixture(scope="session")
def entries_for() -> Callable[..., dict[str, float]]:
    """Fake entries of proxyless-mobile at any size and class count."""

    def make(resolution: int, num_classes: int) -> dict[str, float]:
        return fake_entries(get_space("proxyless-mobile", resolution, 1.0, num_classes))

    return make
