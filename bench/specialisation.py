"""Hardware specialisation: the same search against tables of runtimes of different character.

One profiler (SQLite, loopback) profiles the space at the search resolution on several runtimes of this
machine (default: fp32 onnxruntime, int8 LiteRT under XNNPACK, fp32 OpenVINO; 1 thread each). Each table is
calibrated on the same random nets measured on its own runtime, and its budget is the same percentile of
those measured latencies. One shared warm-up, then one ``search --max-ms`` per table; every derived net is
measured on *every* runtime (the latency matrix), and the nets are compared per stage (depth, kernel,
expansion). Writes a picture, specialisation.json and, with ``--md``, the results page.

    .venv/bin/python bench/specialisation.py [--tables onnxruntime:1 litert-int8:1 openvino:1] [--md PAGE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import local_profiler as lp
from stage_view import format_costs, format_stages, plot_nets, stage_summary

from search_client.latency.fidelity import sample_choices
from shared.arch import load_arch
from shared.spaces import get_space


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless-mobile", choices=["proxyless-mobile", "proxyless-cifar"])
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--dataset", default=None, help="default: mnist when the CLI has it, else digits")
    p.add_argument("--tables", nargs="+", default=["onnxruntime:1", "litert-int8:1", "openvino:1"],
                   metavar="BACKEND:THREADS")
    p.add_argument("--random", type=int, default=10, help="random nets per table (calibration and budget)")
    p.add_argument("--budget-pct", type=float, default=50, help="budget = this percentile of the random nets")
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3, help="search epochs (the first takes no arch step)")
    p.add_argument("--steps-per-epoch", type=int, default=25)
    p.add_argument("--search-args", default="--arch-every 2", help="extra flags for both searches")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each search")
    p.add_argument("--budget-s", type=float, default=0.5, help="profiler time budget per op")
    p.add_argument("--out", default="runs/specialisation")
    p.add_argument("--png", default=None, help="also copy the picture here")
    p.add_argument("--md", default=None, help="write the results page here, its picture beside it")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.dataset is None:
        args.dataset = "mnist" if "mnist" in lp.cli_choices("search", "--dataset") else "digits"
    if args.quick:
        args.random, args.warmup_epochs, args.epochs, args.steps_per_epoch, args.budget_s = 4, 1, 2, 8, 0.3
    return args


def main(argv=None) -> int:
    from search_client.data.datasets import load_dataset

    args = parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    num_classes = load_dataset(args.dataset, resolution=args.resolution, seed=0).num_classes
    space = get_space(args.space, args.resolution, 1.0, num_classes)
    tables = [(t.split(":")[0], int(t.split(":")[1])) for t in args.tables]
    names = [f"{b} {n}t" for b, n in tables]
    rand = sample_choices(space, args.random, seed=2000)
    res: dict = {"space": args.space, "resolution": args.resolution, "dataset": args.dataset, "tables": {}}
    with lp.profiler(out / "service", budget_s=args.budget_s) as client:
        ids = []
        for (backend, threads), name in zip(tables, names, strict=True):
            table_id, t = lp.profile_table(client, space, backend=backend, threads=threads)
            nets = lp.measure(client, table_id, space, rand, f"random nets on {name}")
            cal = lp.calibrate(client, table_id, nets)
            (budget,) = lp.percentiles([m.measured_ms for m in nets], [args.budget_pct])
            entries = {k: v.median_ms for k, v in client.get_table(table_id).entries.items()}
            res["tables"][name] = {"table_id": table_id, "profile_s": round(t, 1), "budget_ms": budget,
                                   "random_measured_ms": [m.measured_ms for m in nets],
                                   "calibration": {k: cal.get(k) for k in ("scale", "intercept_ms", "loo_rmspe")},
                                   "entries": entries}
            ids.append(table_id)
            print(f"{name}: table {table_id} ({t:.0f} s), random nets measured "
                  f"{min(m.measured_ms for m in nets):.3f}-{max(m.measured_ms for m in nets):.3f} ms, "
                  f"budget p{args.budget_pct:g} = {budget:.3f} ms, calibration LOO RMSPE "
                  f"{100 * (cal.get('loo_rmspe') or 0):.1f}%", flush=True)
        base = ["--space", args.space, "--resolution", str(args.resolution), "--dataset", args.dataset,
                "--seed", "0", *args.search_args.split()]
        for flag, v in (("--warmup-epochs", args.warmup_epochs), ("--epochs", args.epochs),
                        ("--steps-per-epoch", args.steps_per_epoch)):
            if v is not None:
                base += [flag, str(v)]
        shared = lp.shared_epochs(args.warmup_epochs, args.search_args)
        log = out / "search.log"
        t = lp.search_cli([*base, "--profiler", client.base_url, "--table", ids[0], "--stop-after",
                           str(shared), "--out", str(out / "warmup"), "--no-onnx"], log, threads=args.threads)
        print(f"shared start ({shared} epochs of weights only): {t:.0f} s", flush=True)
        derived = {}
        for name, table_id in zip(names, ids, strict=True):
            d = out / name.replace(" ", "_")
            budget = res["tables"][name]["budget_ms"]
            t = lp.search_cli([*base, "--profiler", client.base_url, "--table", table_id, "--max-ms", f"{budget:.5f}",
                               "--resume", str(out / "warmup" / "ckpt.pt"), "--out", str(d), "--no-onnx"], log,
                              threads=args.threads)
            derived[name] = load_arch(d / "derived" / "arch.json").choices
            print(f"search against {name} (max {budget:.3f} ms): {t:.0f} s: {' '.join(derived[name])}", flush=True)
        cross = {}
        for name, table_id in zip(names, ids, strict=True):  # every derived net on every backend
            ms = lp.measure(client, table_id, space, [derived[n] for n in names], f"derived nets on {name}")
            cross[name] = {n: m.measured_ms for n, m in zip(names, ms, strict=True)}
    res["derived"] = derived
    res["cross_measured_ms"] = cross  # [table the net is measured on][table the net was searched for]
    res["stages"] = {n: stage_summary(space, derived[n]) for n in names}
    print(f"\n== {args.space} @{args.resolution}: per-op cost relative to the cheapest candidate of its layer")
    print(format_costs(space, {n: res["tables"][n]["entries"] for n in names}))
    print("\n== derived nets per stage")
    print(format_stages(space, res["stages"]))
    print("\n== each derived net measured on each runtime (ms, median; budget in brackets)")
    print(matrix_text(names, res, cross))
    png = plot_nets(out / "specialisation.png", space, derived, res["stages"],
                    title=f"{args.space} @{args.resolution}: one search, {len(names)} runtimes")
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, args.png)
    res["matrix_text"] = matrix_text(names, res, cross)
    res["stages_text"] = format_stages(space, res["stages"])
    res["costs_text"] = format_costs(space, {n: res["tables"][n]["entries"] for n in names})
    if args.space == "proxyless-mobile":
        res["kernel_premium"] = {n: kernel_premium(space, res["tables"][n]["entries"]) for n in names}
    for t in res["tables"].values():
        t.pop("entries")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "specialisation.json").write_text(json.dumps(res, indent=2))
    if args.md:
        write_page(Path(args.md), res, png, names)
    print(f"\n{res['seconds'] / 60:.1f} min; plot {png}; results {out / 'specialisation.json'}")
    return 0


def matrix_text(names: list[str], res: dict, cross: dict) -> str:
    """Rows: the runtime a net is measured on; columns: the runtime it was searched for."""
    lines = [f"{'measured on':<22}" + "".join(f"{'net for ' + n:>24}" for n in names)]
    for on in names:
        lines.append(f"{on + ' [' + format(res['tables'][on]['budget_ms'], '.3f') + ']':<22}"
                     + "".join(f"{cross[on][n]:24.3f}" for n in names))
    return "\n".join(lines)


def crossover(names: list[str], res: dict) -> list[str]:
    """Per runtime: is its own net the fastest of the searched nets there, and does it keep its budget."""
    cross = res["cross_measured_ms"]
    out = []
    for on in names:
        best = min(names, key=lambda n: cross[on][n])
        budget = res["tables"][on]["budget_ms"]
        verdict = "its own net is the fastest there" if best == on else f"the net searched for {best} is faster"
        out.append(f"- on **{on}** (budget {budget:.3f} ms): {verdict}; its own net measures "
                   f"{cross[on][on]:.3f} ms ({'within' if cross[on][on] <= budget else 'over'} budget)")
    return out


def kernel_premium(space, entries: dict[str, float]) -> dict[str, float]:
    """Median over layers of what a 5x5 and a 7x7 MBConv6 cost against the 3x3 MBConv6 of the same layer: why
    a runtime's search avoids (or takes) large kernels."""
    out = {}
    for k in (5, 7):
        ratios = []
        for layer in space.layers:
            small, big = layer.spec("3x3_MBConv6"), layer.spec(f"{k}x{k}_MBConv6")
            if small is not None and big is not None and entries.get(small.key) and entries.get(big.key):
                ratios.append(entries[big.key] / entries[small.key])
        if ratios:
            out[f"{k}x{k}"] = sorted(ratios)[len(ratios) // 2]
    return out


def write_page(page: Path, res: dict, png: Path, names: list[str]) -> None:
    """The results page, whole: setup, the latency matrix, the per-stage table, the picture, what it shows."""
    page.parent.mkdir(parents=True, exist_ok=True)
    picture = page.with_suffix(".png")
    shutil.copy(png, picture)
    lines = ["# Specialisation: one search, several runtimes", "",
             f"{res['space']} at {res['resolution']} px on {res['dataset']}; tables: {', '.join(names)} (this "
             "machine's CPU, 1 thread each). Each table's budget is the same percentile of random nets measured "
             "on its own runtime; one shared warm-up, then one search per table; every derived net measured on "
             "every runtime.", "",
             "Regenerate: `make bench-specialisation` "
             f"({res['seconds'] / 60:.0f} min for this run).", "",
             "## Latency matrix (ms, median)", "", "Rows: measured on; columns: searched for.", "", "```",
             res["matrix_text"], "```", "", "## What it shows", "", *crossover(names, res), "",
             *[f"- {n}: a 5x5 MBConv6 costs {p.get('5x5', float('nan')):.2f}x and a 7x7 "
               f"{p.get('7x7', float('nan')):.2f}x the 3x3 of the same layer (median over layers)"
               for n, p in res.get("kernel_premium", {}).items()],
             "",
             "## Derived nets per stage", "", "```", res["stages_text"], "```", "",
             "## Per-op cost relative to the cheapest candidate of its layer", "", "```", res["costs_text"], "```",
             "", f"![derived nets]({picture.name})", ""]
    page.write_text("\n".join(lines))
    print(f"wrote {page}")


if __name__ == "__main__":
    sys.exit(main())
