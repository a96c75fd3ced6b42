"""A table per runtime: the wall time to profile a space, split into conversion and timing.

Per runtime: every op converted into a fresh cache (nothing timed), then timed as the service times a
profile job (the conversions now cached). With ``--repeat``, a second pass and over keys the median and
p90 of |a - b| / mean between the passes: raw, and
drift-corrected to one nominal (each op scaled by the drift reference timed with it: the space's
reference op, as the service times a profile), and as two fresh services would serve them: each pass
scaled to its own quiet nominal, from the burst of the reference alone its benchmark process times
first (profiler_service/clock/burst.py).

    .venv/bin/python bench/profile_table.py [--resolution 160] [--backend onnxruntime litert ...] [--repeat]
        [--md docs/results/profile_table.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from profiler_service.clock.drift import to_nominal
from profiler_service.measure.backends import get_backend
from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import op_name_for
from profiler_service.measure.runner import EngineConfig, measure_ops
from shared.schemas import OpStats
from shared.spaces import get_space
from shared.specs import parse_key


def convert_all(keys: list[str], args, backend: str, cache_dir: str) -> float:
    """Seconds to convert (and load) every op into a fresh cache, nothing timed: a table's conversion cost."""
    runtime = get_backend(backend, threads=args.threads, cache_dir=cache_dir)
    protocol = Protocol(rel_ci=args.rel_ci, budget_s=args.budget_s)
    t0 = time.perf_counter()
    for key in tqdm(keys, desc=f"convert {backend}", unit="op", leave=False):
        runtime.prepare_op(parse_key(key), args.batch, protocol)
    return time.perf_counter() - t0


def one_pass(keys: list[str], args, backend: str, cache_dir: str) -> tuple[dict[str, OpStats], float, float | None]:
    """(stats per key, wall seconds, the pass's quiet nominal), as the service times a profile job."""
    out: dict[str, OpStats] = {}
    nominal: list[OpStats] = []
    t0 = time.perf_counter()
    engine = EngineConfig(backend=backend, threads=args.threads, batch=args.batch,
                          protocol=Protocol(rel_ci=args.rel_ci, budget_s=args.budget_s), cache_dir=cache_dir,
                          on_nominal=nominal.append,
                          reference=op_name_for(args.space, args.resolution))  # as the service times a space
    with tqdm(total=len(keys), desc=f"time {backend}", unit="op", leave=False) as bar:
        measure_ops(keys, engine, on_result=lambda k, v: (out.__setitem__(k, v), bar.update(1)))
    return out, time.perf_counter() - t0, nominal[0].median_ms if nominal else None


def report(name: str, keys: list[str], a: dict[str, float], b: dict[str, float]) -> None:
    diff = np.array([abs(a[k] - b[k]) / ((a[k] + b[k]) / 2) for k in keys])
    print(f"{name} repeatability |a-b|/mean over keys: median {100 * np.median(diff):.2f}%  "
          f"p90 {100 * np.percentile(diff, 90):.2f}%  max {100 * diff.max():.2f}%")
    for i in np.argsort(diff)[::-1][:3]:
        print(f"  {100 * diff[i]:5.1f}%  {a[keys[i]]:.3f} vs {b[keys[i]]:.3f} ms  {keys[i]}")
    print(f"  table sum: pass 1 {sum(a.values()):.2f} ms, pass 2 {sum(b.values()):.2f} ms")


def page(rows: list[dict], args) -> str:
    lines = ["# A table per runtime", "",
             f"Wall time to profile every candidate op of {args.space} at {args.resolution} px ({rows[0]['ops']} "
             f"ops, {args.threads} thread, batch {args.batch}) on each runtime of this machine, split into converting "
             "every op into a fresh cache (export, conversion, int8 calibration, session load) and timing them "
             f"by the service's protocol (budget {args.budget_s:g} s per op, +-{100 * args.rel_ci:g}% confidence "
             "on the median). A second profile of the same space converts nothing: it costs the timing column.",
             "", f"Regenerate: `make bench-table`. CPU: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores.", "",
             "| runtime | conversion | timing | table (conversion + timing) | per op converted |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['convert_s'] / 60:.1f} min | {r['time_s'] / 60:.1f} min | "
                     f"{(r['convert_s'] + r['time_s']) / 60:.1f} min | {r['convert_s'] / r['ops']:.2f} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--backend", nargs="+", default=["onnxruntime"], help="one row per runtime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rel-ci", type=float, default=0.02)
    p.add_argument("--budget-s", type=float, default=3.0)
    p.add_argument("--repeat", action="store_true", help="profile twice and report the repeatability")
    p.add_argument("--md", help="write the results page here")
    args = p.parse_args()
    keys = [s.key for s in get_space(args.space, args.resolution).all_op_specs(args.batch)]
    print(f"{args.space} @ {args.resolution}: {len(keys)} unique specs, {args.threads} thread(s), batch "
          f"{args.batch}; load average {os.getloadavg()[0]:.2f}")
    rows = []
    for backend in args.backend:
        with tempfile.TemporaryDirectory() as cache:
            convert_s = convert_all(keys, args, backend, cache)
            a, time_s, nom_a = one_pass(keys, args, backend, cache)
            rows.append({"backend": backend, "ops": len(keys), "convert_s": convert_s, "time_s": time_s})
            print(f"{backend}: conversion {convert_s:.0f} s, timing {time_s:.0f} s, table {convert_s + time_s:.0f} s "
                  f"(quiet nominal {nom_a} ms)", flush=True)
            if args.repeat:
                b, t_b, nom_b = one_pass(keys, args, backend, cache)
                print(f"{backend} pass 2 (conversions cached): {t_b:.1f} s, quiet nominal {nom_b} ms")
                repeatability(keys, a, b, nom_a, nom_b)
    if args.md:
        Path(args.md).write_text(page(rows, args))
        print(f"wrote {args.md}")


def repeatability(keys: list[str], a: dict[str, OpStats], b: dict[str, OpStats], nom_a, nom_b) -> None:
    report("raw", keys, {k: v.median_ms for k, v in a.items()}, {k: v.median_ms for k, v in b.items()})
    if all(v.ref_ms for v in [*a.values(), *b.values()]):
        nominal = a[keys[0]].ref_ms
        report("drift-corrected", keys, {k: to_nominal(v, nominal).median_ms for k, v in a.items()},
               {k: to_nominal(v, nominal).median_ms for k, v in b.items()})
        report("served (each pass at its own quiet nominal)", keys,
               {k: to_nominal(v, nom_a).median_ms for k, v in a.items()},
               {k: to_nominal(v, nom_b).median_ms for k, v in b.items()})


if __name__ == "__main__":
    main()
