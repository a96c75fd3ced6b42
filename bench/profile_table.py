"""Profile the whole proxyless-mobile space twice and report wall time and repeatability.

Prints the number of unique specs, the wall time of each pass (the first includes ONNX export into a
fresh cache), and over keys the median and p90 of |a - b| / mean between the passes: raw, and
drift-corrected to one nominal (each op scaled by the drift reference timed with it: the space's
reference op, as the service times a profile), and as two fresh services would serve them: each pass
scaled to its own quiet nominal, from the burst of the reference alone its benchmark process times
first (measure/nominal.py).

    .venv/bin/python bench/profile_table.py [--resolution 224] [--threads 1] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from profiler_service.clock.drift import to_nominal
from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import op_name_for
from profiler_service.measure.runner import EngineConfig, measure_ops
from shared.schemas import OpStats
from shared.spaces import get_space


def one_pass(keys: list[str], args, cache_dir: str) -> tuple[dict[str, OpStats], float, float | None]:
    """(stats per key, wall seconds, the pass's quiet nominal)."""
    out: dict[str, OpStats] = {}
    nominal: list[OpStats] = []
    t0 = time.perf_counter()
    engine = EngineConfig(backend=args.backend, threads=args.threads, batch=args.batch,
                          protocol=Protocol(rel_ci=args.rel_ci, budget_s=args.budget_s), cache_dir=cache_dir,
                          on_nominal=nominal.append,
                          reference=op_name_for(args.space, args.resolution))  # as the service times a space
    measure_ops(keys, engine, on_result=out.__setitem__)
    return out, time.perf_counter() - t0, nominal[0].median_ms if nominal else None


def report(name: str, keys: list[str], a: dict[str, float], b: dict[str, float]) -> None:
    diff = np.array([abs(a[k] - b[k]) / ((a[k] + b[k]) / 2) for k in keys])
    print(f"{name} repeatability |a-b|/mean over keys: median {100 * np.median(diff):.2f}%  "
          f"p90 {100 * np.percentile(diff, 90):.2f}%  max {100 * diff.max():.2f}%")
    for i in np.argsort(diff)[::-1][:3]:
        print(f"  {100 * diff[i]:5.1f}%  {a[keys[i]]:.3f} vs {b[keys[i]]:.3f} ms  {keys[i]}")
    print(f"  table sum: pass 1 {sum(a.values()):.2f} ms, pass 2 {sum(b.values()):.2f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rel-ci", type=float, default=0.02)
    p.add_argument("--budget-s", type=float, default=3.0)
    args = p.parse_args()
    keys = [s.key for s in get_space(args.space, args.resolution).all_op_specs(args.batch)]
    print(f"{args.space} @ {args.resolution}: {len(keys)} unique specs, backend {args.backend}, "
          f"{args.threads} thread(s), batch {args.batch}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as cache:
        a, t_a, nom_a = one_pass(keys, args, cache)
        print(f"pass 1 (with ONNX export): {t_a:.1f} s, quiet nominal {nom_a} ms")
        b, t_b, nom_b = one_pass(keys, args, cache)
        print(f"pass 2 (export cached):    {t_b:.1f} s, quiet nominal {nom_b} ms")
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
