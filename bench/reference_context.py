"""Does the drift reference read the same inside a measurement as in its nominal burst? (issue 11, item 1)

In one benchmark-like process (onnxruntime, 1 thread, heap frozen): time the nominal burst (the
reference interleaved with the filler, measure/nominal.py) and print its block medians; measure N random
proxyless-mobile networks with the measurement protocol and print the reference median each carried
(``ref_ms``); then time three of the networks and the reference alone, back to back. Served figures are
``raw * nominal / ref_ms``: where the reference reads slower inside measurements than in the burst while
the networks read at their alone speed, every served figure is that much under the device's speed.
Then the same networks are timed again with variants of what runs, untimed, right before each timed
reference run: one reference run (the protocol's warm pair), three reference runs, the burst's filler.

    .venv/bin/python bench/reference_context.py [--resolution 160] [--nets 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # before onnxruntime/torch start their pools

import numpy as np  # noqa: E402

from profiler_service.measure import nominal as N  # noqa: E402
from profiler_service.measure.backends import OnnxRuntimeBackend  # noqa: E402
from profiler_service.measure.protocol import Protocol, time_callable  # noqa: E402
from profiler_service.measure.tasks import network_protocol  # noqa: E402
from shared.arch import build_net, make_arch  # noqa: E402
from shared.sampling import sample_choices  # noqa: E402
from shared.spaces import get_space  # noqa: E402


def before_timed_reference(ref, untimed, warmup_calls: int):
    """The reference as ``time_callable`` calls it with the warm pair (an untimed call, then the timed one),
    but with ``untimed`` run in place of each untimed call after the warm-up's ``warmup_calls``."""
    calls = [0]

    def call():
        calls[0] += 1
        if calls[0] > warmup_calls and (calls[0] - warmup_calls) % 2 == 1:
            return untimed()
        return ref()
    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--nets", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    be = OnnxRuntimeBackend(threads=1, cache_dir=tempfile.mkdtemp())
    protocol = Protocol()
    alone = Protocol(min_runs=200, drift_reference=False)  # back to back: no reference between the runs
    ref, filler = be.reference(protocol), be.filler(protocol)
    space = get_space("proxyless-mobile", args.resolution, 1.0, 1000)
    shape = (1, 3, args.resolution, args.resolution)
    nets = [build_net(make_arch(space, c)) for c in sample_choices(space, args.nets, seed=11)]
    gc.collect()
    gc.freeze()
    for rnd in range(args.rounds):
        burst = N.burst(ref, be.timer, protocol, filler=filler)
        print(f"round {rnd + 1}: burst nominal (fastest block median) {burst.median_ms:.3f} ms, "
              f"runs p10-p90 {burst.p10_ms:.3f}-{burst.p90_ms:.3f} ms")
        stats = [be.measure(net, shape, f"net{i}", network_protocol(protocol)) for i, net in enumerate(nets)]
        refs = np.array([s.ref_ms for s in stats])
        print(f"  reference inside network measurements: median {np.median(refs):.3f} ms "
              f"({100 * (np.median(refs) / burst.median_ms - 1):+.1f}% vs the nominal), per net "
              + " ".join(f"{r:.3f}" for r in refs))
        for i in range(min(3, len(nets))):
            alone_ms = time_callable(be.runner(nets[i], shape, f"net{i}"), alone, be.timer).median_ms
            print(f"  net {i}: inside a measurement {stats[i].median_ms:.3f} ms, alone {alone_ms:.3f} ms "
                  f"(ratio {stats[i].median_ms / alone_ms:.3f})")
        print(f"  reference alone, back to back: {time_callable(ref, alone, be.timer).median_ms:.3f} ms")
        _print_variant("1 reference run (the pair)", stats, burst.median_ms)  # the measurements above
        protocol_net = network_protocol(protocol)
        variants = {"3 reference runs": lambda: (ref(), ref(), ref()), "the burst's filler": filler}
        for name, untimed in variants.items():
            got = [time_callable(be.runner(net, shape, f"net{i}"), protocol_net, be.timer,
                                 reference=before_timed_reference(ref, untimed, protocol_net.warmup_runs))
                   for i, net in enumerate(nets)]
            _print_variant(name, got, burst.median_ms)


def _print_variant(name: str, stats: list, nominal_ms: float) -> None:
    refs = np.array([s.ref_ms for s in stats])
    print(f"  untimed before each timed reference run: {name:<27} reference {np.median(refs):.3f} ms "
          f"({100 * (np.median(refs) / nominal_ms - 1):+.1f}% vs the nominal, spread over nets "
          f"{100 * (refs.max() / refs.min() - 1):.1f}%); nets " + " ".join(f"{s.median_ms:.3f}" for s in stats))


if __name__ == "__main__":
    main()
