"""The client against a server that misbehaves (tests/search_client/remote/hostile_server.py, real sockets on loopback):
every answer is bounded in size and time, no redirect is followed, a table whose numbers are no latencies
is refused whole and never cached, and each failure is one line. Peak memory is the kernel's high-water
mark of a client process (VmHWM); no duration is asserted, the deadline is only made short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_server import HostileServer

from search_client.remote.profiler_client import ProfilerClient, ProfilerError, ProfilerUnavailable
from search_client.remote.tables import load_table_file
from shared.arch import make_arch
from shared.spaces import get_space

REPO = Path(__file__).resolve().parents[3]
DEADLINE_S = 4
RSS_LIMIT_MB = 500
KEY = "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1"
OTHER = "sep_conv-input:8x8x16-output:8x8x16-kernel:5-stride:1"

# A client process of its own, so its peak RSS is its own: fetch a table, print the one-line error, then
# the high-water mark of its memory (VmHWM belongs to the program; ru_maxrss would carry the test
# process's own, inherited over fork and exec).
PROBE = """
import sys
from pathlib import Path
from search_client.remote.profiler_client import ProfilerClient, ProfilerError
client = ProfilerClient(sys.argv[1], deadline_s=float(sys.argv[2]), cache_dir=sys.argv[3], backoff=0.2)
try:
    client.get_table("t")
except ProfilerError as e:
    print(type(e).__name__, e)
else:
    print("accepted")
hwm = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) // 1024)
"""


@pytest.fixture(scope="module")
def hostile():
    srv = HostileServer()
    yield srv
    srv.shutdown()
    srv.server_close()


def _entry(ms) -> dict:
    return {"median_ms": ms, "mean_ms": ms, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.1, "count": 10}


def _table(**entries) -> str:
    """Table JSON as Python's json writes it (NaN and Infinity as bare literals)."""
    return json.dumps({"id": "t", "device": "d", "backend": "onnxruntime", "threads": 1, "batch": 1,
                       "dtype": "float32", "updated_at": None, "etag": "e", "entries": entries})


def _probe(url: str, cache: Path) -> tuple[str, str, int]:
    """(its one-line answer, stderr, peak RSS in MB) of one client process fetching a table from ``url``."""
    proc = subprocess.run([sys.executable, "-c", PROBE, url, str(DEADLINE_S), str(cache)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # a hung client fails, not hangs
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer, peak_mb = proc.stdout.strip().rsplit("\n", 1)
    return answer, proc.stderr, int(peak_mb)


@pytest.mark.parametrize(("mode", "says"), [
    ("huge", "ProfilerError GET /v1/tables/t: the answer exceeded 32 MB (it declared 2000000000 bytes)"),
    ("endless", "ProfilerError GET /v1/tables/t: the answer exceeded 32 MB"),
    ("bomb", "ProfilerError GET /v1/tables/t: the answer exceeded 32 MB"),
    ("trickle", f"ProfilerUnavailable GET /v1/tables/t: no complete answer within {DEADLINE_S} s"),
    ("away", "ProfilerError GET /v1/tables/t: the profiler answered 302 to another host (evil.example)"),
    ("moved", "ProfilerError GET /v1/tables/t: the profiler answered 301 (to '/v2/tables'); redirects are not "
              "followed"),
])
def test_every_answer_is_bounded_and_refused_in_one_line(hostile, tmp_path, mode, says):
    hostile.mode = mode
    out, err, rss_mb = _probe(hostile.url, tmp_path)
    assert out.startswith(says) and "\n" not in out, out
    assert "Traceback" not in err, err[-2000:]
    assert rss_mb < RSS_LIMIT_MB, f"{mode}: client peaked at {rss_mb} MB"
    assert not list(tmp_path.rglob("*.json"))  # nothing cached


@pytest.mark.parametrize(("entry", "says"), [
    ("NaN", "is NaN"), ("Infinity", "is infinite"), ("-40.0", "is negative (-40 ms)"),
    ("0.0", "is 0 ms, and only an op with nothing to compute"),
])
def test_a_table_with_a_value_that_is_no_latency_is_refused_and_not_cached(hostile, tmp_path, entry, says):
    hostile.mode = "body"
    hostile.body = _table(**{OTHER: _entry(1.0)}).replace("}}}", "}, " + json.dumps(KEY) + ": "
                                                          + json.dumps(_entry(1.0)).replace("1.0", entry, 1) + "}}")
    with ProfilerClient(hostile.url, cache_dir=tmp_path, deadline_s=DEADLINE_S) as client:
        with pytest.raises(ProfilerError) as e:
            client.get_table("t")
    message = str(e.value)
    assert f"entry {KEY!r} median_ms {says}" in message and "not used or cached" in message, message
    assert "\n" not in message
    assert not list(tmp_path.rglob("*.json"))


def test_strings_for_numbers_are_one_line_not_a_validation_dump(hostile, tmp_path):
    hostile.mode = "body"
    hostile.body = _table(**{k: {f: "abc" for f in _entry(1.0)} for k in (KEY, OTHER)})
    with ProfilerClient(hostile.url, cache_dir=tmp_path, deadline_s=DEADLINE_S) as client:
        with pytest.raises(ProfilerError) as e:
            client.get_table("t")
    message = str(e.value)
    assert "\n" not in message and f"entries.{KEY}.median_ms" in message and "11 more fields" in message, message


def test_a_cached_table_with_nan_is_not_used(hostile, tmp_path):
    hostile.mode = "body"
    hostile.body = _table(**{KEY: _entry(1.5)})
    with ProfilerClient(hostile.url, cache_dir=tmp_path, retries=0, deadline_s=DEADLINE_S) as client:
        assert client.get_table("t").entries[KEY].median_ms == 1.5
        [cached] = tmp_path.rglob("t.json")
        cached.write_text(cached.read_text().replace("1.5", "NaN"))
        assert client.cached_table("t") is None  # refused, with a warning naming it
        hostile.mode = "down"
        with pytest.raises(ProfilerUnavailable):  # the service down, and no usable cache: no NaN table served
            client.get_table("t")


@pytest.mark.parametrize("text", [
    f'{{"entries": {{"{KEY}": {{"median_ms": NaN}}}}}}',
    f'{{"{KEY}": -3}}',
    f'{{"{KEY}": "fast"}}',
])
def test_a_table_file_with_a_value_that_is_no_latency_is_refused_in_one_line(tmp_path, text):
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_table_file(path)
    assert str(e.value).startswith(f"table file {path}: entry {KEY!r}") and "\n" not in str(e.value), e.value


def _cli(*args: str, deadline_s: float = DEADLINE_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEARCH_CLIENT_DEADLINE_S": str(deadline_s)}
    return subprocess.run([sys.executable, "-m", "search_client", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_cli_says_one_line_and_exits_non_zero(hostile, tmp_path):
    for mode, says in [("away", "answered 302 to another host"), ("trickle", "no complete answer within 4 s"),
                       ("huge", "the answer exceeded 32 MB")]:
        hostile.mode = mode
        proc = _cli("tables", "--profiler", hostile.url)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_the_cli_refuses_a_nan_table_with_one_line(hostile, tmp_path):
    space = get_space("proxyless-cifar", 32, 1.0, 10)
    arch = tmp_path / "arch.json"
    arch.write_text(make_arch(space, [layer.candidates[0] for layer in space.layers]).model_dump_json())
    hostile.mode = "body"
    hostile.body = _table(**{KEY: _entry(float("nan"))})
    proc = _cli("predict", str(arch), "--profiler", hostile.url, "--table", "t")
    assert proc.returncode == 2 and f"entry {KEY!r} median_ms is NaN" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


CACHE_FULL = """
import logging, resource, signal, sys
from search_client.remote.profiler_client import ProfilerClient
logging.basicConfig(level=logging.WARNING, format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # a disk that has just filled up
table = ProfilerClient(sys.argv[1], cache_dir=sys.argv[2], deadline_s=10).get_table("t")
print(len(table.entries))
"""


def test_a_cache_write_that_fails_is_named_and_the_table_still_served(hostile, tmp_path):
    hostile.mode = "body"
    keys = [f"sep_conv-input:8x8x{c}-output:8x8x{c}-kernel:3-stride:1" for c in range(8, 48)]
    hostile.body = _table(**{k: _entry(1.0) for k in keys})
    proc = subprocess.run([sys.executable, "-c", CACHE_FULL, hostile.url, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(len(keys)), proc.stderr[-2000:]
    assert "table t not cached: could not write " in proc.stderr and "File too large" in proc.stderr, proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no half-written cache file
