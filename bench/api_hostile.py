"""The hostile level of bench/api_load.py: lookups while attackers stall request bodies and imports storm.

For ``--duration`` seconds (at least), on the running server:

- ``STALLED`` connections each send a lookup's headers with ``Content-Length: 1000`` and one byte of the
  body, then nothing; when the server cuts one (408), it is opened again at once, so ``STALLED`` are
  stalled all along;
- ``IMPORTS`` clients import a ~480 KB published-yaml table each, all at once, round after round;
- one client sends a lookup of 20 keys every --interval-ms and records its latency.

Prints lookup p50 / p99 / max, lookups failed, imports done, stalls cut with 408, and the server's RSS
before, at its peak and after a few seconds' rest.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from api_load import Connection, pct

STALLED = 64
IMPORTS = 20
IMPORT_ENTRIES = 5000  # about 480 KB of yaml, the size the attack used


def storm_table(index: int) -> bytes:
    lines = (f"sep_conv-input:{8 + i // 500}x{8 + i // 500}x{8 + i % 500}-output:{8 + i // 500}x{8 + i // 500}x"
             f"{8 + i % 500}-kernel:3-stride:1: {{count: 20, mean: {1 + index / 100}, var: 0.01}}\n"
             for i in range(IMPORT_ENTRIES))
    return "".join(lines).encode()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _stall(host: str, port: int, path: str, until: asyncio.Event, out: dict) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000"
            "\r\n\r\n{").encode()
    while not until.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.write(head)
        try:
            answer = await asyncio.wait_for(reader.read(64), 600)  # until the server cuts it
            if answer.startswith(b"HTTP/1.1 408"):
                out["cut"] += 1
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


async def _importer(host: str, port: int, body: bytes, index: int, until: asyncio.Event, out: dict) -> None:
    while not until.is_set():
        conn = Connection(host, port)
        try:
            status, _, _ = await conn.request("POST", f"/v1/tables/import?device=storm-{index}&backend=tflite",
                                              body, {"Content-Type": "application/x-yaml"})
            out["imports" if status == 201 else "import_errors"] += 1
        except (OSError, asyncio.IncompleteReadError):
            out["import_errors"] += 1
        finally:
            conn.close()


async def _lookups(host: str, port: int, table_id: str, keys: list[str], interval_s: float, until: asyncio.Event,
                   out: dict) -> None:
    rng, conn = random.Random(0), Connection(host, port)
    while not until.is_set():
        body = json.dumps({"keys": rng.sample(keys, 20)}).encode()
        t0 = time.perf_counter()
        try:
            status, _, _ = await asyncio.wait_for(conn.request(
                "POST", f"/v1/tables/{table_id}/lookup", body, {"Content-Type": "application/json"}), 60)
            ok = status == 200
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            ok = False
            conn.close()
        out["lookup"].append(time.perf_counter() - t0)
        out["errors"] += not ok
        await asyncio.sleep(interval_s)
    conn.close()


async def hostile(url: str, pid: int, table_id: str, keys: list[str], interval_s: float, duration_s: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    port = int(port)
    out: dict = {"lookup": [], "errors": 0, "imports": 0, "import_errors": 0, "cut": 0,
                 "rss_before": rss_mb(pid)}
    bodies = [storm_table(i) for i in range(IMPORTS)]
    until = asyncio.Event()
    path = f"/v1/tables/{table_id}/lookup"
    stalls = [asyncio.create_task(_stall(host, port, path, until, out)) for _ in range(STALLED)]
    await asyncio.sleep(1.0)  # every stall in place before the storm and the timed lookups
    tasks = [asyncio.create_task(_importer(host, port, bodies[i], i, until, out)) for i in range(IMPORTS)]
    tasks.append(asyncio.create_task(_lookups(host, port, table_id, keys, interval_s, until, out)))
    await asyncio.sleep(duration_s)
    until.set()
    for t in stalls:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*stalls, return_exceptions=True)
    out["rss_peak"] = rss_mb(pid, "VmHWM")
    await asyncio.sleep(5.0)
    out["rss_after"] = rss_mb(pid)
    return out


def run_hostile(url: str, pid: int, table_id: str, keys: list[str], interval_s: float, duration_s: float) -> None:
    out = asyncio.run(hostile(url, pid, table_id, keys, interval_s, duration_s))
    lookups = out["lookup"]
    print(f"hostile: {STALLED} stalled bodies + {IMPORTS} concurrent imports of {len(storm_table(0)) / 1024:.0f} KB "
          f"for {duration_s:.0f} s: lookups {len(lookups)}, p50 {pct(lookups, 50):.1f} ms, p99 "
          f"{pct(lookups, 99):.1f} ms, max {1000 * max(lookups, default=float('nan')):.1f} ms, failed {out['errors']}; "
          f"imports done {out['imports']} (failed {out['import_errors']}); stalls cut with 408: {out['cut']}; "
          f"server RSS {out['rss_before']:.0f} MB before, {out['rss_peak']:.0f} MB peak, "
          f"{out['rss_after']:.0f} MB after")
