"""The profiler's API under load while it profiles: throughput, latency, errors, and what the load does to
the latencies it measures meanwhile.

One real server (SQLite) pinned to one CPU; its benchmark child moved to another CPU as soon as it
appears (so the load competes with the server, not with the op being timed); the load generator shares
the server's CPU. A 10,000-entry table is imported; then:

1. quiet: a profiling job of a few ops runs alone; its stored medians are the baseline;
2. for each client count: the same job again while that many clients each pull the whole table once,
   then send a lookup of 20 keys every --interval-ms (and re-pull the table every 50th request, with
   If-None-Match as search_client's ProfilerClient does: a 304 while the table is unchanged;
   ``--full-repulls`` re-pulls it whole every time) for at least --duration seconds, and until the job is
   done. Each client starts at a random phase within its first interval.

Prints per level: requests per second, lookup and pull p50 / p99, errors, and how far the op medians
measured under load moved from the quiet run (the stored, drift-corrected figure the table serves, and the
raw drift reference timed alongside).

The level ``hostile`` (bench/api_hostile.py) times lookups while 64 connections stall their request bodies
and 20 clients import ~480 KB tables at once, and reports the server's RSS around it; it needs no job.

    .venv/bin/python bench/api_load.py [--clients 10,50,200,hostile] [--duration 30] [--entries 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from search_client.remote.local_service import LocalService

# Ops of about a millisecond (the mobile space at 224 px, 28x28 stage): big enough to time steadily.
JOB_KEYS = [f"expanded_conv-input:28x28x40-output:28x28x40-expand:{e}-kernel:{k}-stride:1-idskip:1"
            for e in (3, 6) for k in (3, 5)]
LOOKUP_KEYS = 20
PULL_EVERY = 50


def table_keys(n: int) -> list[str]:
    keys = [f"sep_conv-input:{h}x{h}x{c}-output:{h}x{h}x{c}-kernel:{k}-stride:1"
            for h in range(8, 200) for c in range(8, 4096, 8) for k in (3, 5, 7)]
    return keys[:n]


class Server:
    """``profiler-service serve`` pinned to ``server_cpu``; benchmark children moved to ``bench_cpu``."""

    def __init__(self, workdir: Path, server_cpu: int, bench_cpu: int, budget_s: float):
        self.server_cpu, self.bench_cpu = server_cpu, bench_cpu
        self.service = LocalService(workdir, clean_env=True, prefix=("taskset", "-c", str(server_cpu)),
                                    env={"PROFILER_DEVICE_NAME": "bench-load", "PROFILER_REL_CI": "1e-9",
                                         "PROFILER_BUDGET_S": str(budget_s), "PROFILER_POLL_INTERVAL_S": "0.2"})
        self.children: dict[int, set[int]] = {}
        self._stop = threading.Event()
        self.service.start(timeout_s=120)
        self.proc = self.service.proc
        threading.Thread(target=self._pin_children, daemon=True).start()

    @property
    def url(self) -> str:
        return self.service.url

    def _pin_children(self) -> None:
        while not self._stop.wait(0.02):
            for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
                try:
                    pids = [int(p) for p in (task / "children").read_text().split()]
                except OSError:
                    continue
                for pid in pids:
                    if pid not in self.children:
                        try:
                            os.sched_setaffinity(pid, {self.bench_cpu})
                            self.children[pid] = os.sched_getaffinity(pid)
                        except OSError:
                            pass

    def stop(self) -> None:
        self._stop.set()
        self.service.stop(60)


def run_job(api: httpx.Client) -> tuple[dict[str, dict], float]:
    t0 = time.perf_counter()
    job = api.post("/v1/jobs", json={"keys": JOB_KEYS, "backend": "onnxruntime"}).json()
    while (j := api.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        time.sleep(0.3)
    if j["status"] != "done":
        raise RuntimeError(f"profiling job ended {j}")
    entries = api.get(f"/v1/tables/{job['table_id']}").json()["entries"]
    return {k: entries[k] for k in JOB_KEYS}, time.perf_counter() - t0


class Connection:
    """One client's keep-alive HTTP/1.1 connection on asyncio streams (Content-Length bodies only, which is
    all this server sends). The load generator shares the server's core, and httpx, pure Python, spent
    ~1.8 ms of it per request: 13 of the 30 CPU-seconds of a 50-client run, time the server's requests
    waited for and the latencies carried. This costs a tenth of that."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if self.streams is None:  # (re)connected inside the timed request, as a client library would
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        n = int(fields.get("content-length", 0))
        return int(lines[0].split()[1]), fields, await reader.readexactly(n) if n else b""

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def client(c: Connection, table_id: str, keys: list[str], interval_s: float, until: asyncio.Event,
                 rng: random.Random, out: dict[str, list], full_repulls: bool = False) -> None:
    n = 0
    etag = None  # re-pulls revalidate, as search_client's ProfilerClient does (304 while unchanged)
    next_at = time.perf_counter() + rng.uniform(0, interval_s)  # spread the clients' phases
    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))  # a fleet does not start in one instant
    while not until.is_set():
        pull = n % PULL_EVERY == 0
        t0 = time.perf_counter()
        try:
            if pull:  # gzip accepted, as httpx (and so search_client) asks by default
                headers = {"Accept-Encoding": "gzip"} | ({"If-None-Match": etag} if etag and not full_repulls else {})
                status, fields, body = await asyncio.wait_for(c.request("GET", f"/v1/tables/{table_id}",
                                                                        headers=headers), 120)
                etag = fields.get("etag", etag)
                if status == 200:
                    out["pull_full"].append(body if not out["pull_full"] else b"")  # the first is checked
                else:
                    out["pull_304"].append(1)
                ok = status in (200, 304)
            else:
                lookup = json.dumps({"keys": rng.sample(keys, LOOKUP_KEYS)}).encode()
                status, _, _ = await asyncio.wait_for(c.request(
                    "POST", f"/v1/tables/{table_id}/lookup", lookup, {"Content-Type": "application/json"}), 120)
                ok = status == 200
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            ok = False
            c.close()
        out["pull" if pull else "lookup"].append(time.perf_counter() - t0)
        if not ok:
            out["errors"].append(1)
        n += 1
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    c.close()


async def load(url: str, table_id: str, keys: list[str], clients: int, interval_s: float, min_s: float,
               job_done: threading.Event, full_repulls: bool = False) -> tuple[dict[str, list], float]:
    out: dict[str, list] = {"lookup": [], "pull": [], "pull_full": [], "pull_304": [], "errors": []}
    until = asyncio.Event()
    host, port = httpx.URL(url).host, httpx.URL(url).port
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client(Connection(host, port), table_id, keys, interval_s, until, random.Random(i),
                                        out, full_repulls)) for i in range(clients)]
    while time.perf_counter() - t0 < min_s or not job_done.is_set():
        await asyncio.sleep(0.1)
    until.set()
    await asyncio.gather(*tasks)
    return out, time.perf_counter() - t0


def check_pull(body: bytes, entries: int) -> None:
    """The first full pull of a level is the whole table (a fast server that sent garbage is not fast)."""
    table = json.loads(gzip.decompress(body))
    if len(table["entries"]) != entries:
        raise RuntimeError(f"a pull returned {len(table['entries'])} entries, not {entries}")


def moved(quiet: dict[str, dict], loaded: dict[str, dict], field: str) -> np.ndarray:
    return np.array([loaded[k][field] / quiet[k][field] - 1 for k in JOB_KEYS])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(a: list[float], q: float) -> float:
    return 1000 * float(np.percentile(a, q)) if a else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="0,10,50,200",
                   help="0: the job alone again, the noise floor; hostile: stalled bodies and an import storm")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load per level (at least)")
    p.add_argument("--entries", type=int, default=10_000)
    p.add_argument("--interval-ms", type=float, default=200.0, help="each client's pause between requests")
    p.add_argument("--budget-s", type=float, default=2.0, help="measuring time per op of the profiling job")
    p.add_argument("--full-repulls", action="store_true",
                   help="re-pull the whole table every time (no If-None-Match)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--bench-cpu", type=int, default=1)
    p.add_argument("--md", help="also write the printed report as the results page here (whole)")
    args = p.parse_args()
    if args.md:
        with report_page(Path(args.md), " ".join(["python bench/api_load.py", *sys.argv[1:]])):
            run(args)
    else:
        run(args)


@contextlib.contextmanager
def report_page(page: Path, command: str):
    """What the bench prints, kept and written as the page when it ends (the terminal still sees it)."""
    kept = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            kept.write(text)
            return sys.__stdout__.write(text)

    with contextlib.redirect_stdout(Tee()):
        yield
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join([
        "# The API under load and under attack", "",
        "One real server (SQLite) pinned to one CPU, its benchmark child on the other, a 10,000-entry table; each",
        "level runs a profiling job while that many clients pull the table and send lookups; the hostile level",
        "times lookups while 64 connections stall their request bodies and 20 clients import tables at once.", "",
        f"Regenerate: `make bench-load` (this page: `{command}`).", "", "```", kept.getvalue().rstrip(), "```", ""]))
    print(f"wrote {page}")


def run(args) -> None:
    tokens = [c.strip() for c in args.clients.split(",") if c.strip()]
    levels = [int(c) for c in tokens if c != "hostile"]
    os.sched_setaffinity(0, {args.server_cpu})  # the load generator shares the server's CPU, not the child's
    keys = table_keys(args.entries)
    with tempfile.TemporaryDirectory() as tmp:
        # Each op measures for its whole budget; the load lasts until the job is done (at least --duration).
        srv = Server(Path(tmp), args.server_cpu, args.bench_cpu, budget_s=args.budget_s)
        try:
            api = httpx.Client(base_url=srv.url, timeout=120)
            entry = {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.1, "count": 20}
            body = json.dumps({"entries": {k: entry for k in keys}})
            r = api.post("/v1/tables/import", params={"device": "bench-load", "backend": "tflite"}, content=body)
            r.raise_for_status()
            table_id = r.json()["id"]
            print(f"server pid {srv.proc.pid} on CPU {sorted(os.sched_getaffinity(srv.proc.pid))}; load generator "
                  f"on CPU {sorted(os.sched_getaffinity(0))}; table {table_id}: {r.json()['entries']} entries "
                  f"({len(body) / 2**20:.1f} MiB as JSON)")
            if "hostile" in tokens and not levels:
                from api_hostile import run_hostile

                run_hostile(srv.url, srv.proc.pid, table_id, keys, args.interval_ms / 1000, args.duration)
                return
            run_job(api)  # warm-up: ONNX export into the cache
            quiet, quiet_s = run_job(api)
            print(f"quiet run: job of {len(JOB_KEYS)} ops took {quiet_s:.1f} s; benchmark children on CPU "
                  f"{sorted({c for cpus in srv.children.values() for c in cpus})}")
            print(f"{'clients':>7} {'seconds':>7} {'req/s':>7} {'lookup p50':>10} {'p99 ms':>7} {'pull p50':>9} "
                  f"{'p99 ms':>7} {'errors':>6}  op medians moved (median / max |.|)   raw reference moved")
            # The load generator is the instrument: a full collection of its heap (numpy, httpx, the
            # recorded latencies) paused every client at once for 40-100 ms and was counted as server time.
            gc.collect()
            gc.freeze()
            cpu: dict[int, tuple[float, float, float]] = {}
            for n in levels:
                done = threading.Event()
                result: dict = {}

                def job(result=result, done=done) -> None:
                    try:
                        result["entries"], result["s"] = run_job(httpx.Client(base_url=srv.url, timeout=120))
                    finally:
                        done.set()
                threading.Thread(target=job, daemon=True).start()
                cpu0 = cpu_s(srv.proc.pid), cpu_s(os.getpid())
                out, secs = asyncio.run(load(srv.url, table_id, keys, n, args.interval_ms / 1000, args.duration, done,
                                             args.full_repulls))
                if out["pull_full"]:
                    check_pull(out["pull_full"][0], args.entries)
                cpu[n] = cpu_s(srv.proc.pid) - cpu0[0], cpu_s(os.getpid()) - cpu0[1], secs
                total = len(out["lookup"]) + len(out["pull"])
                med = moved(quiet, result["entries"], "median_ms")
                ref = moved(quiet, result["entries"], "ref_ms")
                print(f"{n:>7} {secs:>7.1f} {total / secs:>7.1f} {pct(out['lookup'], 50):>10.1f} "
                      f"{pct(out['lookup'], 99):>7.1f} {pct(out['pull'], 50):>9.1f} {pct(out['pull'], 99):>7.1f} "
                      f"{len(out['errors']):>6}  {100 * np.median(np.abs(med)):+.2f}% / {100 * np.abs(med).max():.2f}%"
                      f"{'':>20}{100 * np.median(ref):+.2f}%   pulls {len(out['pull_full'])} full / "
                      f"{len(out['pull_304'])} 304")
            print("CPU seconds on the server's core per level: " + "; ".join(
                f"{n} clients: server {c[0]:.1f}, load generator {c[1]:.1f} of {c[2]:.1f} s" for n, c in cpu.items()))
            print(f"benchmark children seen: {len(srv.children)}, each pinned to CPU "
                  f"{sorted({c for cpus in srv.children.values() for c in cpus})}")
            if "hostile" in tokens:
                from api_hostile import run_hostile

                run_hostile(srv.url, srv.proc.pid, table_id, keys, args.interval_ms / 1000, args.duration)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
