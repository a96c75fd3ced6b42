"""The overview page in a real headless Chromium: it loads, shows a table that was just profiled and a
running job's progress; a screenshot is kept as a test artefact (path printed, and under
``$PAGE_ARTIFACTS`` or ``var/test-artifacts/``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from profiler_helpers import wait_job

from shared.spaces import get_space

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PAGE_ARTIFACTS", ROOT / "var" / "test-artifacts"))
SPACE = get_space("proxyless-mobile", 32, 1.0, 10)
# the stem and the first searchable layer's six candidates: profiled in seconds with the fast protocol
SMALL = [SPACE.prefix[0].key, *(SPACE.layers[0].spec(n).key for n in SPACE.layers[0].candidates)]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine: `apt-get install -y chromium` (Debian) brings it; .ci/run "
                "installs it when missing")


def browse(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the page's scripts run for 6 s of virtual time (polls included)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=6000", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page_server(server_factory):
    # a slower protocol than the suite's, so the second job is still running while Chromium reads the page
    return server_factory("page", env={"PROFILER_BUDGET_S": "1.0", "PROFILER_MIN_RUNS": "20"})


def test_page_shows_a_fresh_table_and_a_running_job(page_server, tmp_path: Path):
    chromium()
    with httpx.Client(base_url=page_server.url, timeout=30) as api:
        job = api.post("/v1/jobs", json={"keys": SMALL}).json()
        profiled = wait_job(api, job["id"])
        assert profiled["status"] == "done", profiled
        # a whole space on another table (batch 2): 70+ ops, running while the page is read
        running = api.post("/v1/jobs", json={"space": "proxyless-mobile", "resolution": 64, "batch": 2}).json()
        running = wait_job(api, running["id"], until=lambda j: j["status"] == "running" and j["done"] >= 1)
        try:
            # the page as linked from elsewhere: the fresh table chosen for the table view
            url = f"{page_server.url}/?table={profiled['table_id']}"
            res = browse(url, tmp_path, "--dump-dom")
            assert res.returncode == 0, res.stderr[-2000:]
            dom = res.stdout
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "overview-page.png"
            res = browse(url, tmp_path, "--window-size=1400,1900", f"--screenshot={shot}")
            assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]
            print(f"\npage screenshot: {shot}")
            still = api.get(f"/v1/jobs/{running['id']}").json()
        finally:
            api.delete(f"/v1/jobs/{running['id']}")
    # the table just profiled: its row, its entry count, and its heatmap with the measured cells
    row = re.search(rf'<tr data-id="{profiled["table_id"]}"[^>]*>(.*?)</tr>', dom, re.S)
    assert row and f'<td class="entries">{len(SMALL)}</td>' in row[1], dom[:3000]
    assert 'data-space="proxyless-mobile"' in dom and "as proxyless-mobile @ 32px" in dom
    first_layer = re.search(r"<tr><th>0: 16x16x16 -&gt; 24, stride 2</th>(.*?)</tr>", dom, re.S)
    assert first_layer and len(re.findall(r"<td style=\"background:", first_layer[1])) == 6
    # the running job: its row says running, with a done/total figure that moved off zero
    assert still["status"] == "running", f"the job finished before the page was read: {still}"
    job_row = re.search(rf'<tr id="job-{running["id"]}">(.*?)</tr>', dom, re.S)
    assert job_row and 'class="status-running">running<' in job_row[1], dom[:3000]
    done, total = map(int, re.search(r'class="progress">(\d+)/(\d+) \(\d+%\)', job_row[1]).groups())
    assert 1 <= done < total == running["total"]
    assert "this worker: test-device" in dom  # the page's first request (device) answered too
