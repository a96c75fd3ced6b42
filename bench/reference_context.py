"""How many untimed runs does each side of the interleave need?

Served figures are ``raw * nominal / ref_ms``: the op's median times the reference's nominal (its burst,
clock/burst.py) over the reference's median inside the measurement. They are the device's real speed
when the reference reads inside a measurement as it read in the burst, and the op reads as it does alone.
The reference and the op evict each other's working set, so each timed reference run follows
``ref_warm_runs`` untimed ones and the op re-runs ``op_rewarm_runs`` times untimed after them.

In one benchmark-like process (onnxruntime, 1 thread, heap frozen), per round: time N random
proxyless-mobile networks alone, back to back; then per variant of the two counts, the burst nominal
and the networks measured with the protocol, printing the reference vs its nominal, the networks' raw
medians vs alone, and the served figure vs alone (it should be within 3%).

    .venv/bin/python bench/reference_context.py [--space proxyless-mobile] [--resolution 160] [--nets 6]
        [--rounds 2] [--variants 1:1 3:1 3:2 3:3] [--matched]

With ``--matched`` each variant is also run against a reference built from the measured space itself
(one mid-size op in every layer, at the networks' resolution, with its own burst nominal): on a host whose
neighbours load the memory system, the 160 px reference slows where a 0.25 ms network does not, and
corrects it for a slow-down it never had (README "Latency fidelity").
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import os
import tempfile

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # before onnxruntime/torch start their pools

import numpy as np  # noqa: E402

from profiler_service.clock import burst  # noqa: E402
from profiler_service.measure.backends import OnnxRuntimeBackend  # noqa: E402
from profiler_service.measure.protocol import Protocol, time_callable  # noqa: E402
from profiler_service.measure.reference import name_for, reference_module  # noqa: E402
from profiler_service.measure.tasks import network_protocol  # noqa: E402
from shared.arch import build_net, make_arch  # noqa: E402
from shared.sampling import sample_choices  # noqa: E402
from shared.spaces import get_space  # noqa: E402


def parse_variant(text: str) -> tuple[int, int]:
    ref_warm, op_rewarm = (int(v) for v in text.split(":"))
    return ref_warm, op_rewarm


def matched_reference(be: OnnxRuntimeBackend, space_name: str, resolution: int):
    """The reference the service times a job of this space and resolution against (measure/reference.py):
    the space's own network of one mid-size op everywhere."""
    name = name_for(space_name, resolution, 1.0)
    module, shape = reference_module(name)
    return be.runner(module, shape, f"reference:{name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--nets", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", nargs="+", type=parse_variant, default=[(1, 1), (3, 1), (3, 2), (3, 3)],
                   help="REF_WARM:OP_REWARM, untimed reference runs before each timed one : untimed op "
                        "runs after them")
    p.add_argument("--matched", action="store_true", help="also run each variant against a reference built "
                   "from the measured space at the networks' resolution")
    args = p.parse_args()
    be = OnnxRuntimeBackend(threads=1, cache_dir=tempfile.mkdtemp())
    ref, filler = be.reference(Protocol()), be.filler(Protocol())
    alone = Protocol(min_runs=200, drift_reference=False)  # back to back: no reference between the runs
    space = get_space(args.space, args.resolution, 1.0)
    shape = (1, 3, args.resolution, args.resolution)
    nets = [build_net(make_arch(space, c)) for c in sample_choices(space, args.nets, seed=11)]
    runners = [be.runner(net, shape, f"net{i}") for i, net in enumerate(nets)]
    references = [("160px", ref)] + ([("matched", matched_reference(be, args.space, args.resolution))]
                                     if args.matched else [])
    gc.collect()
    gc.freeze()
    print(f"{args.nets} random {args.space} nets @{args.resolution}, onnxruntime 1 thread; "
          "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for rnd in range(args.rounds):
        alone_ms = np.array([time_callable(r, alone, be.timer).median_ms for r in runners])
        ref_alone = time_callable(ref, alone, be.timer).median_ms
        print(f"round {rnd + 1}: nets alone " + " ".join(f"{a:.3f}" for a in alone_ms)
              + f" ms; reference alone {ref_alone:.3f} ms")
        for (ref_warm, op_rewarm), (ref_name, reference) in itertools.product(args.variants, references):
            protocol = dataclasses.replace(Protocol(), ref_warm_runs=ref_warm, op_rewarm_runs=op_rewarm)
            nominal = burst.burst(reference, be.timer, protocol, filler=filler).median_ms
            stats = [time_callable(r, network_protocol(protocol), be.timer, reference=reference)
                     for r in runners]
            refs = np.array([s.ref_ms for s in stats])
            raw = np.array([s.median_ms for s in stats])
            served = raw * nominal / refs
            err = 100 * (served / alone_ms - 1)
            ref_off = 100 * (np.median(refs) / nominal - 1)
            print(f"  {ref_warm}:{op_rewarm} {ref_name:>7}  nominal {nominal:.3f}  reference {ref_off:+5.1f}%"
                  f" (spread {100 * (refs.max() / refs.min() - 1):4.1f}%)  raw/alone "
                  f"{100 * (np.mean(raw / alone_ms) - 1):+5.1f}%  served/alone {np.mean(err):+5.1f}% mean, "
                  f"{int(np.sum(np.abs(err) <= 3))}/{len(err)} within 3% ["
                  + " ".join(f"{e:+.1f}" for e in err) + "]", flush=True)


if __name__ == "__main__":
    main()
