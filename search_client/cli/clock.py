"""``clock``: the clocks a device's figures are on: each nominal (the drift reference's quiet speed, and its
version), the bursts behind it, and how far the last hour's lay apart. Two latencies of the same network
read minutes apart differ by about that much from the device alone, however well each was measured."""

from __future__ import annotations

import argparse
import os


def add_clock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiler", required=True, help="profiler service URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--bursts", type=int, default=5, help="recent bursts to list per clock")
    p.add_argument("--api-key", default=os.environ.get("PROFILER_API_KEY"))


def run_clock(args) -> int:
    from search_client.remote.profiler_client import ProfilerClient

    with ProfilerClient(args.profiler, api_key=args.api_key) as client:
        clocks = client.clocks(bursts=args.bursts)
    if not clocks:
        print("no clocks yet: the device has measured nothing against a drift reference")
    for c in clocks:
        print(f"{c.reference}  {c.backend} x{c.threads}: nominal {c.nominal_ms:.4f} ms (v{c.version}, {c.source}, "
              f"{c.updated_at:%Y-%m-%d %H:%M:%S} UTC)")
        if c.spread_pct is None:
            print(f"  last hour: {c.spread_bursts} unshared burst(s), too few for a spread")
        else:
            print(f"  last hour: {c.spread_bursts} unshared bursts {c.spread_pct:.1f}% apart (max - min over median)")
        for b in c.bursts:
            shared = f"  shared ({b.others_cores:.2f} cores busy)" if b.shared and b.others_cores is not None else (
                "  shared (unknown)" if b.shared else "")
            print(f"  {b.at:%Y-%m-%d %H:%M:%S}  burst {b.burst_ms:.4f} ms, pooled {b.pooled_ms:.4f} ms -> nominal "
                  f"{b.nominal_ms:.4f} ms v{b.version}{shared}")
    return 0
