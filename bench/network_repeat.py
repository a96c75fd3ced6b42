"""How far apart are two measurements of the same network? The floor under any latency model.

Measures N random networks of a space twice per round with the service's engine: all in one benchmark
process, their windows in turns (as a calibration job or a batch of network jobs is), and each alone in its
own process, its windows back to back (a network job queued by itself), and prints per network the
raw median, the reference's median beside it and their ratio (what the drift correction serves, up to
the nominal). A model cannot predict a network closer than its own measurements agree. Each
measurement is the engine's: three windows, the median one kept (``measure/tasks.py middle_window``).

    .venv/bin/python bench/network_repeat.py [--space proxyless-mobile] [--resolution 96] [--nets 8]
        [--rounds 2] [--min-runs 40]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import name_for
from profiler_service.measure.runner import EngineConfig, measure_network, measure_networks
from shared.arch import make_arch
from shared.sampling import sample_choices
from shared.spaces import get_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=96)
    p.add_argument("--nets", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-runs", type=int, default=40, help="samples per network (the service uses 40)")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    space = get_space(args.space, args.resolution)
    nets = {f"n{i}": make_arch(space, c).keys for i, c in enumerate(sample_choices(space, args.nets, args.seed))}
    reference = name_for(args.space, args.resolution)
    protocol = Protocol(min_runs=args.min_runs, min_ref_runs=max(15, args.min_runs),
                        budget_s=max(3.0, args.min_runs * 0.01))
    engine = EngineConfig(backend="onnxruntime", threads=1, batch=1, protocol=protocol,
                          cache_dir=tempfile.mkdtemp(), reference=reference)
    ratios: dict[str, list[float]] = {k: [] for k in nets}
    for rnd in range(args.rounds):
        one: dict = {}
        measure_networks(nets, engine, on_result=one.__setitem__)
        own = {k: measure_network(keys, engine) for k, keys in nets.items()}
        print(f"round {rnd + 1} (reference {reference})")
        for k in nets:
            a, b = one[k], own[k]
            ratios[k] += [a.median_ms / a.ref_ms, b.median_ms / b.ref_ms]
            print(f"  {k}: one process {a.median_ms:.3f} ms / ref {a.ref_ms:.3f} = {a.median_ms / a.ref_ms:.3f}"
                  f"   own process {b.median_ms:.3f} / {b.ref_ms:.3f} = {b.median_ms / b.ref_ms:.3f}")
    spread = [100 * (max(r) / min(r) - 1) for r in ratios.values()]
    print(f"per network, the ratio's spread over its {2 * args.rounds} measurements (max/min - 1): "
          f"median {np.median(spread):.1f}%, max {max(spread):.1f}%")


if __name__ == "__main__":
    main()
