"""A newcomer's first hour against a real profiler service, as the README's quick start runs it: ``profile``
prints the table id alone (and fails loudly), ``calibrate`` ends with the device's range, a search under
``--max-ms p50`` resolves the budget from the calibration's measured nets and ends with one summary, and the
yaml export of the table carries its calibration to a search from the file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from search_client.cli.budgets import resolve_for_calibration
from search_client.cli.main import main
from search_client.latency.budget import Percentile, uniform_mix
from search_client.latency.model import LatencyModel, required_keys
from search_client.remote.tables import load_table_file
from shared.arch import make_arch
from shared.schemas import TableOut
from shared.spaces import get_space

REPO = Path(__file__).resolve().parents[3]
SPACE = ["--space", "proxyless-cifar", "--resolution", "8", "--width-mult", "0.35", "--num-classes", "10"]
BIG = ["--space", "proxyless-mobile", "--resolution", "32", "--width-mult", "0.35"]  # long enough to interrupt
SAMPLES = 4


def _ctrl_c_reachable() -> None:
    """A suite started in the background (``make test &``) inherits SIGINT ignored, and Python then installs no
    Ctrl-C handler in the command: what a terminal's Ctrl-C does is tested with SIGINT at its default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(args: list[str], home: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}  # the client's table cache lives under ~
    return subprocess.Popen([sys.executable, "-m", "search_client", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_reachable, **kw)


def run_main(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def url(server_factory) -> str:
    return server_factory("first-hour").url


@pytest.fixture(scope="module")
def profiled(url: str, home: Path) -> tuple[subprocess.CompletedProcess, str]:
    proc = cli(["profile", "--profiler", url, *SPACE], home)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), stdout.strip()


@pytest.fixture(scope="module")
def calibrated(url: str, profiled, home: Path) -> tuple[str, dict, str]:
    """(table id, its calibration, what calibrate printed)."""
    table_id = profiled[1]
    code, out = run_main(["calibrate", "--profiler", url, "--table", table_id, *SPACE, "--samples", str(SAMPLES)])
    assert code == 0, out
    return table_id, httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json()["calibration"], out


def measured_ms(url: str, calibration: dict) -> list[float]:
    return [httpx.get(f"{url}/v1/networks/{i}", timeout=30).json()["measured"]["median_ms"]
            for i in calibration["networks"]]


def test_profile_prints_only_the_table_id_and_the_table_is_complete(url: str, profiled):
    done, table_id = profiled
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == table_id + "\n"  # TABLE=$(search-client profile ...) holds the id alone
    assert "profiling proxyless-cifar @ 8 px" in done.stderr and "31/31" in done.stderr  # the bar, on stderr
    table = TableOut.model_validate(httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json())
    assert set(required_keys(get_space("proxyless-cifar", 8, 0.35, 10))) <= set(table.entries)


@pytest.mark.parametrize("extra, needle", [(["--backend", "torch-cuda"], "POST /v1/jobs -> 422"),
                                           (["--resolution", "4"], "resolution")])
def test_a_profile_the_device_refuses_is_one_line(url: str, home: Path, extra, needle):
    if extra[0] == "--backend" and "torch-cuda" in httpx.get(f"{url}/v1/device", timeout=30).json()["backends"]:
        pytest.skip("this worker has a GPU runtime; the refusal needs one it lacks")
    proc = cli(["profile", "--profiler", url, *SPACE, *extra], home)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stdout == "", stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr


def test_a_bad_key_is_one_line(server_factory, home: Path):
    keyed = server_factory("first-hour-keyed", {"PROFILER_API_KEY": "the-right-key"})
    proc = cli(["profile", "--profiler", keyed.url, *SPACE, "--api-key", "a-wrong-key"], home)
    stdout, stderr = proc.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 2 and stdout == "" and len(lines) == 1 and "401" in lines[0], stderr


def _job_of(url: str, proc: subprocess.Popen) -> dict:
    """The running profile job the command submitted, once the device has measured an op of it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        jobs = [j for j in httpx.get(f"{url}/v1/jobs", timeout=30).json() if j["status"] in ("queued", "running")]
        if jobs and jobs[0]["done"] > 0:
            return jobs[0]
        time.sleep(0.2)
    raise AssertionError("no job started")


def test_ctrl_c_leaves_the_job_running_and_a_cancelled_job_fails_the_command(url: str, profiled, home: Path):
    proc = cli(["profile", "--profiler", url, *BIG], home)
    job = _job_of(url, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stdout == "", stderr
    assert f"job {job['id']} keeps running on the device" in stderr
    assert httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=30).json()["status"] in ("queued", "running")
    assert httpx.delete(f"{url}/v1/jobs/{job['id']}", timeout=30).status_code == 200

    proc = cli(["profile", "--profiler", url, *BIG], home)  # the ops measured above are not measured again
    job = _job_of(url, proc)
    assert httpx.delete(f"{url}/v1/jobs/{job['id']}", timeout=30).status_code == 200
    stdout, stderr = proc.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 2 and stdout == "", stderr
    assert lines[-1] == f"error: job {job['id']} cancelled: cancelled by request", stderr


def test_calibrate_ends_with_the_device_range(url: str, calibrated):
    table_id, calibration, out = calibrated
    ms = measured_ms(url, calibration)
    assert len(ms) == SAMPLES
    table = TableOut.model_validate(httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json())
    lat = LatencyModel.from_table(table, get_space("proxyless-cifar", 8, 0.35, 10))
    assert lat.calibration is not None
    block = out[out.index("the device's range"):]
    assert f"the device's range over {SAMPLES} measured random nets:" in block
    assert f"fastest      {min(ms):8.3f} ms" in block and f"slowest      {max(ms):8.3f} ms" in block
    assert f"median (p50) {np.median(ms):8.3f} ms" in block
    assert f"uniform mix  {lat.predict(uniform_mix(lat)):8.3f} ms predicted, every layer at its middle" in block
    assert "--max-ms p50" in block


def test_search_under_p50_resolves_it_and_ends_with_one_summary(url: str, calibrated, home: Path, tmp_path: Path,
                                                                monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    table_id, calibration, _ = calibrated
    p50 = float(np.percentile(measured_ms(url, calibration), 50))
    run = tmp_path / "run"
    code, out = run_main(["search", "--profiler", url, "--table", table_id, *SPACE[:6], "--dataset", "digits",
                          "--max-ms", "p50", "--measure", "--out", str(run), "--batch-size", "32",
                          "--warmup-epochs", "0", "--epochs", "1", "--steps-per-epoch", "2", "--no-progress",
                          "--threads", "1", "--no-onnx"])
    assert code == 0, out
    assert f"budget p50 = {p50:.3f} ms (median of the {SAMPLES} random nets the device measured)" in out
    assert out.count("\nsummary\n") == 1 and "predicted latency" not in out
    assert "calibrating" not in out  # the table's calibration is of this space: used, not refitted
    block = out[out.index("\nsummary\n"):]
    derived = json.loads((run / "derived" / "derive.json").read_text())
    measured = json.loads((run / "measurement.json").read_text())["measured"]["median_ms"]
    assert derived["max_ms"] == pytest.approx(p50) and derived["calibrated"]
    error = 100 * (derived["predicted_ms"] - measured) / measured
    assert f"predicted  {derived['predicted_ms']:.3f} ms, calibrated (calibration v{calibration['version']}" in block
    assert f"measured   {measured:.3f} ms (median of" in block
    assert f"error {error:+.1f}% (calibrated prediction vs measured)" in block
    verdict = "within" if measured <= p50 else "OVER"
    assert f"budget     {p50:.3f} ms (p50): {verdict}" in block
    pictures = [run / f"{name}.png" for name in ("curves", "arch_probs", "arch", "latency")]
    assert f"pictures   {' '.join(map(str, pictures))}" in block and all(p.is_file() for p in pictures)


def test_the_yaml_export_carries_the_calibration_to_a_search_from_the_file(url: str, calibrated, tmp_path: Path):
    table_id, calibration, _ = calibrated
    text = httpx.get(f"{url}/v1/tables/{table_id}", params={"format": "yaml"}, timeout=30).text
    table = httpx.get(f"{url}/v1/tables/{table_id}", timeout=30).json()
    assert set(yaml.safe_load(text)) == set(table["entries"])  # what a published reader sees: ops only
    path = tmp_path / "table.yaml"
    path.write_text(text)
    src = load_table_file(path)
    assert {k: v for k, v in src.calibration.items() if k != "network_ms"} == calibration
    # a calibration network: the service's calibrated prediction of it against the file's
    net = httpx.get(f"{url}/v1/networks/{calibration['networks'][0]}", timeout=30).json()
    space = get_space("proxyless-cifar", 8, 0.35, 10)
    arch = tmp_path / "arch.json"
    arch.write_text(make_arch(space, net["arch"]["choices"]).model_dump_json())
    code, out = run_main(["predict", str(arch), "--table-file", str(path)])
    assert code == 0 and f"predicted {net['calibrated_ms']:.3f} ms calibrated" in out, out
    assert net["calibrated_ms"] != pytest.approx(net["predicted_ms"], rel=1e-3)  # not the raw sum by chance
    # and --max-ms p50 from the file alone is the device's p50
    resolved = resolve_for_calibration(Percentile(50), src.calibration, space, profiler=None, api_key=None)
    assert resolved.ms == pytest.approx(np.percentile(measured_ms(url, calibration), 50))
