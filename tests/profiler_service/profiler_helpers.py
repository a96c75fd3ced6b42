"""Small helpers of the profiler tests (polling with a deadline: a guard against hangs, not a timing)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

TERMINAL = ("done", "failed", "cancelled")
DEADLINE_S = 240.0

# The format of the official mobile table (mobile_trim.yaml); the first line is the entry quoted in
# once-for-all#37, the others follow the same key scheme for the stem, the feature mix and the classifier.
PUBLISHED = """\
expanded_conv-input:7x7x192-output:7x7x320-expand:6-kernel:5-stride:1-idskip:0: {count: 154, mean: 5.2648, var: 0.195}
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0: {count: 150, mean: 8.9, var: 0.41}
expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:1: {count: 153, mean: 2.13, var: 0.07}
Conv-input:224x224x3-output:112x112x32: {count: 151, mean: 3.9271, var: 0.0412}
Conv_1-input:7x7x320-output:7x7x1280: {count: 152, mean: 1.5514, var: 0.0027}
Logits-input:7x7x1280-output:1000: {count: 150, mean: 0.6421, var: 0.0009}
"""

# Small real ops: 8x8 inputs, 16 channels, so a handful profile in seconds.
SMALL_KEYS = [
    "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1",
    "sep_conv-input:8x8x16-output:8x8x16-kernel:5-stride:1",
    "max_pool-input:8x8x16-output:4x4x16-kernel:3-stride:2",
    "Logits-input:8x8x16-output:10",
]


def wait_for(fetch: Callable[[], dict], done: Callable[[dict], bool], what: str,
             deadline_s: float = DEADLINE_S) -> dict:
    end = time.monotonic() + deadline_s
    body = fetch()
    while not done(body):
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {deadline_s} s; last: {body}")
        time.sleep(0.2)
        body = fetch()
    return body


def wait_job(api: httpx.Client, job_id: str, until: Callable[[dict], bool] | None = None) -> dict:
    def fetch() -> dict:
        r = api.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()
    return wait_for(fetch, until or (lambda j: j["status"] in TERMINAL), f"job {job_id}")
