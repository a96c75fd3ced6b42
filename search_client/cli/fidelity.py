"""``calibrate`` and ``validate``: fit the table's calibrated model on the device, then score it on
networks it never saw (raw sum, one global factor, calibrated), with a scatter plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from search_client.latency.budget import device_range
from search_client.latency.fidelity import (
    Measured,
    format_report,
    measure_all,
    predictions,
    sample_choices,
    scatter_png,
    score,
)
from search_client.latency.model import LatencyModel, calibration_fits
from search_client.remote.calibrate import calibration_networks, measured_ms
from shared.calibration import Calibration
from shared.spaces import SPACES, get_space


def _add_common(p: argparse.ArgumentParser, samples: int, seed: int) -> None:
    import os

    p.add_argument("--profiler", required=True, help="profiler service URL")
    p.add_argument("--table", required=True, help="table id")
    p.add_argument("--api-key", default=os.environ.get("PROFILER_API_KEY"))
    p.add_argument("--space", default="proxyless-mobile", choices=sorted(SPACES))
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--width-mult", type=float, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--samples", type=int, default=samples, help="random architectures to measure")
    p.add_argument("--seed", type=int, default=seed)


def _space(args):
    return get_space(args.space, args.resolution, args.width_mult, args.num_classes)


def _measure(client, args, space, archs, what: str) -> list[Measured]:
    with tqdm(total=len(archs), desc=f"measuring {what} networks", unit="net") as bar:
        return measure_all(client, args.table, space, archs, progress=lambda n: bar.update(1))


def _calibrate(client, args, space) -> dict:
    """One request: the device draws, measures and fits; a bar follows its progress in networks."""
    if args.samples < 3:
        raise ValueError(f"--samples {args.samples}: calibration needs at least 3 networks")
    with tqdm(total=args.samples, desc="measuring calibration networks", unit="net") as bar:
        return client.calibrate_table(args.table, space=space.name, resolution=space.resolution,
                                      width_mult=space.width_mult, num_classes=space.num_classes,
                                      samples=args.samples, seed=args.seed,
                                      progress=lambda job: bar.update(job["done"] - bar.n))


def add_calibrate(p: argparse.ArgumentParser) -> None:
    _add_common(p, samples=20, seed=0)


def run_calibrate(args) -> int:
    from search_client.remote.profiler_client import ProfilerClient

    space = _space(args)
    with ProfilerClient(args.profiler, api_key=args.api_key) as client:
        cal = _calibrate(client, args, space)
        print(f"calibration v{cal['version']} of table {args.table} ({args.space} @ {args.resolution}): model "
              f"{cal.get('model', 'group')}, intercept {cal['intercept_ms']:.3f} ms, global scale "
              f"{cal['scale']:.3f}, {cal.get('per_op_ms', 0.0) * 1e3:.1f} us per op, {len(cal['group_scales'])} "
              f"group scales, ridge {cal['ridge']:g}, leave-one-out RMSPE {100 * cal['loo_rmspe']:.2f}% on "
              f"{cal['n_networks']} networks")
        # the table as it is now: its calibration is the one just fitted
        rng = device_range(measured_ms(cal, client), LatencyModel.from_table(client.get_table(args.table), space))
    print("\n".join(rng.lines()))
    return 0


def add_validate(p: argparse.ArgumentParser) -> None:
    _add_common(p, samples=50, seed=1)
    p.add_argument("--calib-samples", type=int, default=20,
                   help="when the table has no calibration yet, fit one first from this many networks")
    p.add_argument("--calib-seed", type=int, default=0)
    p.add_argument("--out", default=None, help="scatter plot PNG (default validate_<table>.png)")


def _calibration_set(client, cal: dict) -> list[Measured]:
    return [Measured(n.arch["choices"], n.arch["keys"], n.measured.median_ms, n.id)
            for n in calibration_networks(client, cal)]


def run_validate(args) -> int:
    from search_client.remote.profiler_client import ProfilerClient

    space = _space(args)
    with ProfilerClient(args.profiler, api_key=args.api_key) as client:
        cal = client.get_calibration(args.table)
        if not cal or not calibration_fits(cal, space):
            print(f"table {args.table} has no calibration for {args.space} @ {args.resolution}: fitting one "
                  f"from {args.calib_samples} networks")
            cal = _calibrate(client, argparse.Namespace(**{**vars(args), "samples": args.calib_samples,
                                                           "seed": args.calib_seed}), space)
        calib = _calibration_set(client, cal)
        seen = {tuple(m.choices) for m in calib}
        valid = _measure(client, args, space, sample_choices(space, args.samples, args.seed, exclude=seen),
                         "validation")
        table = {k: v.median_ms for k, v in client.get_table(args.table).entries.items()}
    calibration = Calibration.from_dict(cal)
    report = score(table, calibration, calib, valid)
    print(f"{args.space} @ {args.resolution}: {len(valid)} validation networks, none among the "
          f"{len(calib)} calibration networks (calibration v{calibration.version})")
    print(format_report(report))
    png = scatter_png(args.out or f"validate_{args.table}.png", predictions(table, calibration, valid),
                      [m.measured_ms for m in valid], f"{args.space} @ {args.resolution}: predicted vs measured")
    print(f"plot: {Path(png).resolve()}")
    return 0
