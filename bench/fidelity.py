"""Latency fidelity on this machine: table sum vs one factor vs calibrated model, on unseen networks.

For each resolution: start a profiler (SQLite, loopback), profile proxyless-mobile over REST, have the
device measure calibration networks, fit the calibration on the device, then measure validation
networks the calibration never saw and score the three models. Writes a scatter PNG per resolution.

    .venv/bin/python bench/fidelity.py [--resolutions 224 160] [--calib 20] [--valid 50] [--out runs/fidelity]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from search_client.latency.fidelity import format_report, measure_all, predictions, sample_choices, scatter_png, score
from search_client.remote.profiler_client import ProfilerClient
from shared.calibration import Calibration, error_stats
from shared.spaces import get_space


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PROFILER_CACHE_DIR": str(workdir / "onnx")}
    proc = subprocess.Popen([sys.executable, "-m", "profiler_service", "serve", "--port", str(port),
                             "--db", f"sqlite:///{workdir / 'fidelity.db'}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def run_resolution(client: ProfilerClient, res: int, args) -> dict:
    space = get_space("proxyless-mobile", res)
    job = client.submit_profile(space="proxyless-mobile", resolution=res, backend="onnxruntime", threads=1, batch=1)
    t0 = time.perf_counter()
    with tqdm(total=job["total"], desc=f"profile @{res}", unit="op") as bar:
        job = client.wait_job(job["id"], progress=lambda j: bar.update(j["done"] - bar.n))
    t_profile = time.perf_counter() - t0
    table_id = job["table_id"]
    calib_archs = sample_choices(space, args.calib, seed=args.seed)
    valid_archs = sample_choices(space, args.valid, seed=args.seed + 1, exclude={tuple(a) for a in calib_archs})
    # Measured in one shuffled sequence: the machine's speed drifts by several percent over minutes here,
    # and measuring all calibration networks before all validation ones would turn that drift into bias.
    order = list(range(len(calib_archs) + len(valid_archs)))
    random.Random(args.seed).shuffle(order)
    archs = [(calib_archs + valid_archs)[i] for i in order]
    with tqdm(total=len(archs), desc=f"networks @{res}", unit="net") as bar:
        measured = measure_all(client, table_id, space, archs, progress=lambda n: bar.update(1))
    by_index = dict(zip(order, measured, strict=True))
    calib = [by_index[i] for i in range(len(calib_archs))]
    valid = [by_index[i] for i in range(len(calib_archs), len(order))]
    calibration = Calibration.from_dict(client.calibrate(table_id, [m.network_id for m in calib]))
    repeat = []
    if args.repeat:
        # The floor no model can beat: the same networks measured a second time, later.
        with tqdm(total=len(valid), desc=f"re-measure @{res}", unit="net") as bar:
            again = measure_all(client, table_id, space, [m.choices for m in valid], progress=lambda n: bar.update(1))
        repeat = error_stats([m.measured_ms for m in again], [m.measured_ms for m in valid])
    needed = {s.key for s in space.all_op_specs()}
    table = {k: v.median_ms for k, v in client.get_table(table_id).entries.items() if k in needed}
    report = score(table, calibration, calib, valid)
    png = scatter_png(Path(args.out) / f"fidelity_{res}.png", predictions(table, calibration, valid),
                      [m.measured_ms for m in valid], f"proxyless-mobile @{res}, onnxruntime 1 thread "
                                                      f"({len(valid)} unseen networks)")
    print(f"\n== proxyless-mobile @ {res}: table of {len(table)} ops profiled in {t_profile:.0f} s; "
          f"{len(calib)} calibration + {len(valid)} validation networks")
    print(format_report(report))
    print(f"calibration: intercept {calibration.intercept_ms:.3f} ms, global scale {calibration.scale:.3f}, "
          f"ridge {calibration.ridge:g}, LOO RMSPE {100 * (calibration.loo_rmspe or 0):.2f}%")
    if repeat:
        print(f"measurement repeatability (same {repeat['n']} networks measured twice): RMSPE "
              f"{100 * repeat['rmspe']:.2f}%, within +-5% {100 * repeat['within_5']:.0f}%, "
              f"within +-10% {100 * repeat['within_10']:.0f}%")
    print(f"plot: {png}")
    return {"resolution": res, "report": report, "calibration": calibration.to_dict(), "repeat": repeat}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[224, 160])
    p.add_argument("--calib", type=int, default=20)
    p.add_argument("--valid", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fidelity")
    p.add_argument("--no-repeat", dest="repeat", action="store_false",
                   help="skip measuring the validation networks a second time (the repeatability floor)")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            client = ProfilerClient(url, cache_dir=Path(tmp) / "cache", timeout=60)
            client.wait_healthy(60)
            results = [run_resolution(client, res, args) for res in args.resolutions]
        finally:
            proc.terminate()
            proc.wait(10)
    (Path(args.out) / "fidelity.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
