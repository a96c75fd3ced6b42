"""calibrate + validate against a real profiler: disjoint networks, three models scored, a PNG written."""

from pathlib import Path

import pytest

from search_client.cli.main import main
from search_client.remote.profiler_client import ProfilerClient
from shared.spaces import get_space

ARGS = ["--space", "proxyless-cifar", "--resolution", "8", "--width-mult", "0.25"]


@pytest.fixture(scope="module")
def table_id(profiler_url: str) -> str:
    space = get_space("proxyless-cifar", 8, 0.25)
    with ProfilerClient(profiler_url) as client:
        job = client.submit_profile(keys=[s.key for s in space.all_op_specs()], backend="onnxruntime")
        return client.wait_job(job["id"], timeout=600)["table_id"]


def test_validate_calibrates_then_scores_unseen_networks(profiler_url, table_id, tmp_path: Path, capsys):
    png = tmp_path / "fidelity.png"
    rc = main(["validate", "--profiler", profiler_url, "--table", table_id, *ARGS, "--samples", "4",
               "--calib-samples", "4", "--out", str(png)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "has no calibration for proxyless-cifar @ 8: fitting one from 4 networks" in out
    for model in ("raw sum", "one factor", "calibrated"):
        assert model in out
    assert "4 validation networks, none among the 4 calibration networks" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    with ProfilerClient(profiler_url) as client:
        cal = client.get_calibration(table_id)
        assert cal["n_networks"] == 4 and len(cal["networks"]) == 4

    rc = main(["calibrate", "--profiler", profiler_url, "--table", table_id, *ARGS, "--samples", "3",
               "--seed", "7"])
    assert rc == 0 and "calibration v2" in capsys.readouterr().out

    with ProfilerClient(profiler_url) as client:  # what the search and the demo call
        job = client.calibrate_table(table_id, space="proxyless-cifar", resolution=8, width_mult=0.25, samples=3,
                                     seed=9, wait=False)
        assert (job["kind"], job["total"]) == ("calibration", 3)
        client.wait_job(job["id"], timeout=600)
        cal = client.get_calibration(table_id)
        assert (cal["version"], cal["seed"], cal["scope"]["resolution"]) == (3, 9, 8)


def test_calibrate_rejects_too_few_samples(profiler_url, table_id, capsys):
    rc = main(["calibrate", "--profiler", profiler_url, "--table", table_id, *ARGS, "--samples", "2"])
    assert rc == 2 and "at least 3" in capsys.readouterr().err
