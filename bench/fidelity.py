"""Latency fidelity over a grid of sizes and runtimes, measured the way a user would.

For each configuration and runtime: a profiler (SQLite, loopback, its own worker) profiles the space over REST,
calibrates the table in one request (the device draws 20 random networks from a hidden seed, measures
them and fits), then measures 30 unseen random networks; the raw sum, one global factor and the
calibrated model are scored on those. Prints per configuration a row (within +-10%, within
+-5%, RMSPE, raw sum within +-10%), writes a scatter PNG each, and keeps every measurement in
``fidelity.json`` so the models can be re-scored from it (``--rescore``) without measuring again.

    .venv/bin/python bench/fidelity.py [--configs mobile@160 mobile@160x0.75 cifar@32 ...]
        [--backends onnxruntime litert litert-int8 onnxruntime-int8 openvino]
        [--calib 20] [--valid 30] [--out runs/fidelity] [--rescore runs/fidelity/fidelity.json] [--md PAGE]

A configuration is ``space@resolution[xwidth]``, ``mobile``/``cifar`` short for proxyless-mobile and
proxyless-cifar. Default: the whole grid on onnxruntime; with ``--backends`` and no ``--configs``, mobile@160
on each runtime named. ``--md`` writes the results page (table and plots) from every measurement saved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
from local_profiler import profiler
from tqdm import tqdm

from search_client.latency.fidelity import Measured, measure_all, predictions, sample_choices, scatter_png, score
from shared.calibration import fit
from shared.spaces import get_space

GRID = ["cifar@32", "mobile@96", "mobile@128", "mobile@160", "mobile@160x0.75", "mobile@160x1.4", "mobile@192",
        "mobile@224"]  # cheapest first: a run cut short keeps the most configurations
SHORT = {"mobile": "proxyless-mobile", "cifar": "proxyless-cifar"}
DEFAULT_BACKEND = "onnxruntime"
RUNTIME_CONFIGS = ["mobile@160"]
REGENERATE = {"fidelity.md": "make bench-fidelity", "fidelity_sizes.md": "make bench-fidelity-sizes"}


def parse_config(text: str, backend: str = DEFAULT_BACKEND) -> dict:
    space, _, rest = text.partition("@")
    res, _, width = rest.partition("x")
    name = text if backend == DEFAULT_BACKEND else f"{text} {backend}"
    return {"name": name, "config": text, "backend": backend, "space": SHORT.get(space, space),
            "resolution": int(res), "width_mult": float(width) if width else 1.0}


def measure_config(client, cfg: dict, args) -> dict:
    """Profile, calibrate in one request, measure unseen networks; every figure kept for re-scoring."""
    space = get_space(cfg["space"], cfg["resolution"], cfg["width_mult"])
    t0 = time.perf_counter()
    job = client.submit_profile(space=space.name, resolution=space.resolution, width_mult=space.width_mult,
                                num_classes=space.num_classes, backend=cfg["backend"])
    with tqdm(total=job["total"], desc=f"profile {cfg['name']}", unit="op") as bar:
        job = client.wait_job(job["id"], timeout=7200, progress=lambda j: bar.update(j["done"] - bar.n))
    table_id = job["table_id"]
    profile_s = time.perf_counter() - t0  # the whole table, conversions included
    seed = secrets.randbelow(2**31)  # hidden: the validation draw cannot be tuned to it
    with tqdm(total=args.calib, desc=f"calibrate {cfg['name']}", unit="net") as bar:
        cal = client.calibrate_table(table_id, space=space.name, resolution=space.resolution,
                                     width_mult=space.width_mult, num_classes=space.num_classes,
                                     samples=args.calib, seed=seed, timeout=7200,
                                     progress=lambda j: bar.update(j["done"] - bar.n))
    # the calibration's seed names its networks (shared.sampling): the unseen ones are drawn around them
    valid_choices = sample_choices(space, args.valid, secrets.randbelow(2**31),
                                   exclude={tuple(c) for c in sample_choices(space, args.calib, seed)})
    with tqdm(total=args.valid, desc=f"validate {cfg['name']}", unit="net") as bar:
        valid = measure_all(client, table_id, space, valid_choices, progress=lambda n: bar.update(1))
    # every figure read once all are measured: a new nominal meanwhile (the worker re-times it every few
    # minutes) rescales what the service stores, so figures read at different times may be on two clocks
    calib = [_network(client, net_id) for net_id in cal["networks"]]
    needed = {s.key for s in space.all_op_specs()}
    table = {k: v.median_ms for k, v in client.get_table(table_id).entries.items() if k in needed}
    return {**cfg, "seconds": time.perf_counter() - t0, "profile_s": profile_s, "ops": job["total"],
            "cpu": platform.processor() or platform.machine(),
            "load_avg": os.getloadavg()[0], "table": table,
            "device_calibration": client.get_calibration(table_id) or cal, "calib": calib,
            "valid": [_network(client, m.network_id) for m in valid]}


def _network(client, net_id: str) -> dict:
    """A measured network with its slow-down: the reference's median then over its quiet nominal."""
    net = client.get_network(net_id)
    m = net.measured
    slowdown = m.ref_ms / m.nominal_ms if m.ref_ms and m.nominal_ms else None
    return {"choices": net.arch["choices"], "keys": net.arch["keys"], "measured_ms": m.median_ms, "id": net_id,
            "slowdown": slowdown, "nominal_ms": m.nominal_ms}


def _measured(rows: list[dict]) -> list[Measured]:
    return [Measured(r["choices"], r["keys"], r["measured_ms"], r.get("id", "")) for r in rows]


def report(data: dict, out: Path) -> dict:
    """Fit with this code's calibration (as the device does) and score on the unseen networks."""
    calib, valid, table = _measured(data["calib"]), _measured(data["valid"]), data["table"]
    cal = fit([m.keys for m in calib], [m.measured_ms for m in calib], table)
    rep = score(table, cal, calib, valid)
    slug = data["name"].replace("@", "_").replace(" ", "_")
    png = scatter_png(out / f"fidelity_{slug}.png", predictions(table, cal, valid),
                      [m.measured_ms for m in valid], f"{data.get('backend', DEFAULT_BACKEND)}, {data['space']} @ "
                      f"{data['resolution']} px, width {data['width_mult']}: {len(calib)} calibration, "
                      f"{len(valid)} unseen networks")
    slow = [m["slowdown"] for m in data["calib"] + data["valid"] if m.get("slowdown")]
    return {"name": data["name"], "backend": data.get("backend", DEFAULT_BACKEND), "report": rep,
            "minutes": data.get("seconds", 0) / 60, "profile_min": data.get("profile_s", 0) / 60,
            "ops": data.get("ops"), "calibration": cal.to_dict(), "png": str(png),
            "load_avg": data.get("load_avg"), "slowdown": float(np.median(slow)) if slow else None,
            "uncorrected": _uncorrected(data)}


def _uncorrected(data: dict) -> dict | None:
    """The same fit and score on the networks' raw medians (served x slow-down): what the drift correction
    adds or takes away. The 160 px reference slows with contention that a 0.25 ms network does not feel,
    so on a host whose neighbours load the memory system it can correct a small network that did not
    slow down."""
    rows = data["calib"] + data["valid"]
    if not all(r.get("slowdown") for r in rows):
        return None
    calib, valid = ([Measured(r["choices"], r["keys"], r["measured_ms"] * r["slowdown"], r.get("id", ""))
                     for r in data[part]] for part in ("calib", "valid"))
    cal = fit([m.keys for m in calib], [m.measured_ms for m in calib], data["table"])
    return score(data["table"], cal, calib, valid)["calibrated"]


def print_table(results: list[dict]) -> None:
    print("\n" + "\n".join(table_lines(results)))


def table_lines(results: list[dict]) -> list[str]:
    lines = ["| configuration | runtime | within +-10% | within +-5% | RMSPE | raw sum within +-10% "
             "| model (LOO RMSPE) | machine slow-down | load | uncorrected nets: +-5%, RMSPE |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c, raw, cal = r["report"]["calibrated"], r["report"]["raw sum"], r["calibration"]
        u = r.get("uncorrected")
        lines.append(f"| {r['name'].split(' ')[0]} | {r.get('backend', DEFAULT_BACKEND)} | "
                     f"{100 * c['within_10']:.0f}% | {100 * c['within_5']:.0f}% | {100 * c['rmspe']:.2f}% | "
                     f"{100 * raw['within_10']:.0f}% | "
                     f"{cal.get('model', cal['form'])} ({100 * (cal['loo_rmspe'] or 0):.2f}%) | "
                     f"{_fmt(r['slowdown'], 'x')} | {_fmt(r['load_avg'])} | "
                     + (f"{100 * u['within_5']:.0f}%, {100 * u['rmspe']:.2f}% |" if u else "- |"))
    return lines


def write_page(page: Path, results: list[dict], data: list[dict]) -> None:
    """The results page, whole: the table of every configuration measured, and each one's scatter plot."""
    import shutil

    plots = page.parent / "fidelity"
    shutil.rmtree(plots, ignore_errors=True)
    plots.mkdir(parents=True)
    runtimes = sorted({r["backend"] for r in results})
    cpu = next((d.get("cpu") for d in data if d.get("cpu")), "this machine's CPU")
    lines = ["# Latency fidelity", "",
             "How well a calibrated table predicts whole networks it has never seen, on each runtime: the service",
             "profiles the space, calibrates on 20 random networks it draws and measures itself, and the bench then",
             "measures 30 unseen random networks and compares them with the calibrated prediction. The bar:",
             ">= 99% of unseen networks within +-10%, >= 95% within +-5%, RMSPE <= 2.5%.", "",
             f"Runtimes: {', '.join(runtimes)}; 1 thread, batch 1; CPU: {cpu}.", "",
             f"Regenerate: `{REGENERATE.get(page.name, 'python bench/fidelity.py --md ' + str(page))}`.", "",
             *table_lines(results), "",
             "*model*: the calibration form the service chose by leave-one-out error; *machine slow-down*: the",
             "drift reference's median over its quiet nominal while the networks were measured; *uncorrected*: the",
             "same fit on the networks' raw medians, without the drift correction.", ""]
    for r in results:
        dest = plots / Path(r["png"]).name
        shutil.copyfile(r["png"], dest)
        lines += [f"## {r['name']}", "", f"{r['profile_min']:.1f} min to profile the {r['ops']}-op table (conversions "
                  f"included), {r['minutes']:.0f} min with calibration and validation.", "",
                  f"![{r['name']}](fidelity/{dest.name})", ""]
    page.write_text("\n".join(lines))
    print(f"wrote {page}")


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", help="space@resolution[xwidth], e.g. mobile@160x0.75 (default: the grid, "
                   "or mobile@160 with --backends)")
    p.add_argument("--backends", nargs="+", help="runtimes to profile and calibrate (default: onnxruntime)")
    p.add_argument("--md", help="write the results page (markdown, plots beside it) from every saved measurement")
    p.add_argument("--calib", type=int, default=20)
    p.add_argument("--valid", type=int, default=30)
    p.add_argument("--out", default="runs/fidelity")
    p.add_argument("--rescore", metavar="JSON", help="re-score measurements saved by an earlier run")
    args = p.parse_args()
    backends = args.backends or [DEFAULT_BACKEND]
    configs = args.configs or (RUNTIME_CONFIGS if args.backends else GRID)
    wanted = [parse_config(c, b) for c in configs for b in backends]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "fidelity.json"
    if args.rescore:
        names = {w["name"] for w in wanted}
        data = [d for d in json.loads(Path(args.rescore).read_text()) if d["name"] in names]
    else:
        data = json.loads(saved.read_text()) if saved.exists() else []
        with tempfile.TemporaryDirectory() as tmp:
            for cfg in wanted:
                slug = cfg["name"].replace("@", "_").replace(" ", "_")
                with profiler(Path(tmp) / slug, name=f"fidelity-{slug}") as client:
                    measured = measure_config(client, cfg, args)
                data = [d for d in data if d["name"] != cfg["name"]] + [measured]
                saved.write_text(json.dumps(data))  # after each configuration: a long run keeps what it got
                print_table([report(measured, out)])
    results = [report(d, out) for d in data]
    print_table(results)
    (out / "report.json").write_text(json.dumps(results, indent=2))
    if args.md:
        write_page(Path(args.md), results, [d for d in data])


if __name__ == "__main__":
    main()
