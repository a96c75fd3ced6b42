"""Are served milliseconds the device's real speed? Two checks of the quiet nominal.

1. Served vs direct: a fresh service profiles the ops of N random networks and measures the networks;
   each network's ONNX file is then timed directly (onnxruntime, 1 thread, many runs, the service
   idle). Served and direct should agree within 3%.
2. Two fresh services: a second service with a new database profiles the same ops; the table sums of
   the same networks should agree within 3% across the two. Each table names the nominal it is scaled to
   (the device's quiet speed when that service last timed it); where the device itself changed speed
   between the two, the sums agree on one clock (A's scaled by B's nominal over A's), which is printed too.

"Direct" is reported twice: the plain median of all runs, and the lower quartile of the medians of
blocks of runs (the estimator the nominal uses where other processes shared its burst, measure/nominal.py
quiet_ms): on a machine other tenants keep busy, the plain median is the busy speed, not the quiet one.
The load average is printed with the figures.
The device against itself: the same ONNX files are timed directly a second time after service B, and
the two direct readings are compared as the checks compare served figures. On a VM whose host changes
speed by several percent from one minute to the next, that agreement is the floor under both checks:
a service cannot agree with the device at another moment better than the device agrees with itself.
Around the direct runs the bench times the service's nominal burst itself (same reference, filler and
estimator): where the host's own speed moved between the service's burst and the direct runs (a VM's host
drifts by a few percent over tens of minutes), the served figures are also compared on that clock.

    .venv/bin/python bench/nominal.py [--resolution 160] [--nets 10] [--seed 11] [--direct-s 4] [--direct-rounds 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_server import profiler

from profiler_service.clock.burst import burst, quiet_ms
from profiler_service.measure.backends import OnnxRuntimeBackend, export_onnx
from profiler_service.measure.protocol import Protocol, gc_paused
from profiler_service.measure.reference import name_for
from shared.arch import make_arch, net_from_keys
from shared.sampling import sample_choices
from shared.spaces import get_space
from shared.specs import parse_key


def profile(client, keys: list[str]) -> str:
    return client.wait_job(client.submit_profile(keys=keys)["id"], timeout=7200)["table_id"]


def table_sums(client, table_id: str, nets: list[list[str]]) -> tuple[list[float], float]:
    """The networks' op sums as the table serves them now, and the nominal they are scaled to."""
    table = client.get_table(table_id)
    nominals = {table.entries[k].nominal_ms for ks in nets for k in ks}
    if len(nominals) != 1:
        raise RuntimeError(f"the table's entries are on {len(nominals)} clocks: {sorted(nominals)}")
    return [sum(table.entries[k].median_ms for k in ks) for ks in nets], nominals.pop()


def direct_ms(nets: list[list[str]], workdir: Path, seconds: float, rounds: int) -> list[tuple[float, float]]:
    """(median, quiet: lower-quartile block median) per network's ONNX run directly, 1 thread.

    The networks take turns, ``rounds`` times ``seconds / rounds`` each: back to back, a slow stretch of
    the host (seen here: 5 s at +20%) lands on one network's whole window and reads as its speed; taking
    turns spreads it over all of them, where the median sees it as the minority it is.
    """
    backend = OnnxRuntimeBackend(threads=1, cache_dir=workdir)
    runs = []
    for keys in nets:
        shape = parse_key(keys[0]).input_shape(1)
        path = export_onnx(net_from_keys(keys), shape, workdir / f"{abs(hash(tuple(keys)))}.onnx")
        feed = {"x": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        runs.append((backend.session(path), feed))
    samples: list[list[float]] = [[] for _ in nets]
    for _ in range(rounds):
        for (sess, feed), out in zip(runs, samples, strict=True):
            for _ in range(10):
                sess.run(None, feed)  # this network's working set back in cache after the previous one's
            end = time.perf_counter() + seconds / rounds
            while time.perf_counter() < end or len(out) % 15:
                t0 = time.perf_counter()
                sess.run(None, feed)
                out.append((time.perf_counter() - t0) * 1e3)
    return [(float(np.median(s)), quiet_ms(s)) for s in samples]


def host_nominal(workdir: Path, reference: str) -> float:
    """The nominal the service's burst would read now, timed here the same way (measure/nominal.py): the
    host's quiet speed at the direct runs, to tell a served figure's bias from the host's drift since the
    service read its nominal."""
    protocol = Protocol()
    backend = OnnxRuntimeBackend(threads=1, cache_dir=workdir, reference=reference)
    with gc_paused():
        return burst(backend.reference(protocol), backend.timer, protocol, backend.filler(protocol)).median_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--nets", type=int, default=10)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--direct-s", type=float, default=4.0, help="seconds of direct runs per network")
    p.add_argument("--direct-rounds", type=int, default=16, help="turns the networks take (1: back to back)")
    args = p.parse_args()
    space = get_space(args.space, args.resolution)
    archs = [make_arch(space, c) for c in sample_choices(space, args.nets, args.seed)]
    nets = [a.keys for a in archs]
    keys = list(dict.fromkeys(k for ks in nets for k in ks))
    print(f"{args.space} @ {args.resolution}: {len(nets)} networks, {len(keys)} ops; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        with profiler(tmp / "a", "nominal-a") as client:
            table_a = profile(client, keys)
            first_nominal = table_sums(client, table_a, nets)[1]
            ids = [client.measure_network(table_a, {"space": a.space, "resolution": a.resolution,
                                                    "width_mult": a.width_mult, "num_classes": a.num_classes,
                                                    "choices": a.choices}) for a in archs]
            served = [client.wait_network(i, timeout=3600).measured for i in ids]
            sums_a, nominal_a = table_sums(client, table_a, nets)
            clocks = {"A": client.clocks(bursts=10)}
        served_at = time.monotonic() - t0
        load_direct = os.getloadavg()[0]
        reference = name_for(args.space, args.resolution)
        host_before = host_nominal(tmp / "direct", reference)
        direct = direct_ms(nets, tmp / "direct", args.direct_s, args.direct_rounds)
        host_after = host_nominal(tmp / "direct", reference)
        direct_at = time.monotonic()
        with profiler(tmp / "b", "nominal-b") as client:
            sums_b, nominal_b = table_sums(client, profile(client, keys), nets)
            clocks["B"] = client.clocks(bursts=10)
        direct_again = direct_ms(nets, tmp / "direct", args.direct_s, args.direct_rounds)
        again_after = time.monotonic() - direct_at
    print(f"\n1. served vs direct (service A's nominal {first_nominal:.3f} ms when it profiled, "
          f"{served[-1].nominal_ms:.3f} ms when it measured the networks, {served_at:.0f} s in; load average "
          f"during the direct runs {load_direct:.2f})")
    # served = raw * nominal / ref: the last two columns split its error into the network's own reading
    # (raw, in the measurement, vs direct) and the reference's (in the measurement, vs the nominal)
    print(f"{'net':>4} {'served ms':>10} {'direct median':>14} {'direct quiet':>13} {'vs median':>10} {'vs quiet':>9}"
          f" {'raw vs median':>14} {'ref vs nominal':>15}")
    vs_med, vs_quiet = [], []
    for i, (s, (med, quiet)) in enumerate(zip(served, direct, strict=True)):
        vs_med.append(s.median_ms / med - 1)
        vs_quiet.append(s.median_ms / quiet - 1)
        ref_slow = s.ref_ms / s.nominal_ms if s.ref_ms and s.nominal_ms else float("nan")
        print(f"{i:>4} {s.median_ms:10.3f} {med:14.3f} {quiet:13.3f} {100 * vs_med[-1]:+9.2f}% "
              f"{100 * vs_quiet[-1]:+8.2f}% {100 * (s.median_ms * ref_slow / med - 1):+13.2f}% "
              f"{100 * (ref_slow - 1):+14.2f}%")
    # the host's drift between the service's burst and the direct runs, read by the same burst here
    host = (host_before + host_after) / 2
    clock = host / served[-1].nominal_ms
    print(f"the host's nominal around the direct runs (the service's burst, timed here): {host_before:.3f} ms "
          f"before, {host_after:.3f} ms after; served x {clock:.4f} puts them on the direct runs' clock")
    on_clock = [s.median_ms * clock / med - 1 for s, (med, _) in zip(served, direct, strict=True)]
    for name, v in (("direct median", vs_med), ("direct quiet", vs_quiet),
                    ("direct median, on the direct runs' clock", on_clock)):
        v = np.abs(v)
        print(f"served vs {name}: max |diff| {100 * v.max():.2f}%, mean |diff| {100 * v.mean():.2f}%, "
              f"within 3%: {int((v <= 0.03).sum())}/{len(v)}")
    rel = np.abs([a[0] / d[0] - 1 for a, d in zip(direct_again, direct, strict=True)])
    print(f"the device against itself (direct median timed again after service B, {again_after:.0f} s later): "
          f"max |diff| {100 * rel.max():.2f}%, mean {100 * rel.mean():.2f}%, within 3%: "
          f"{int((rel <= 0.03).sum())}/{len(rel)}")
    print(f"\n2. two fresh services, table sums of the same {len(nets)} networks (nominals: A {nominal_a:.3f} ms, "
          f"B {nominal_b:.3f} ms)")
    for name, a in (("as served", np.asarray(sums_a)), ("on one clock (A's scaled to B's nominal)",
                                                         np.asarray(sums_a) * nominal_b / nominal_a)):
        rel = np.abs(a / np.asarray(sums_b) - 1)
        print(f"   {name}: max |diff| {100 * rel.max():.2f}%, mean {100 * rel.mean():.2f}%, within 3%: "
              f"{int((rel <= 0.03).sum())}/{len(rel)}")
    print("   sums A: " + " ".join(f"{v:.2f}" for v in sums_a))
    print("   sums B: " + " ".join(f"{v:.2f}" for v in sums_b))
    print("\nthe services' clocks (GET /v1/device/clocks): each nominal and the bursts behind it, oldest first")
    for name, cs in clocks.items():
        for c in cs:
            bursts = " ".join(f"{b.burst_ms:.4f}{'*' if b.shared else ''}" for b in reversed(c.bursts))
            print(f"   {name} {c.reference}: nominal {c.nominal_ms:.4f} ms v{c.version}; bursts {bursts}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
