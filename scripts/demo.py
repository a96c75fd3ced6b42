"""make demo: the whole product on this machine, over the REST API a real deployment uses.

Starts the profiler service on SQLite in the background, profiles the space the demo searches,
calibrates the table on a few measured networks, searches on the bundled digits data with a latency
budget, derives the net, has the device measure it, retrains it briefly and prints a summary. The
service (and any step still running) is stopped on the way out: at the end, on an error, on Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
from demo_service import Service  # scripts/, beside this file
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--var", default=str(ROOT / "var" / "demo"), help="service database and caches")
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"), help="search and training runs")
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--calibration-samples", type=int, default=8)
    p.add_argument("--max-ms", type=float, help="latency budget (default: a third of the way from the "
                                                "cheapest net to the uniform mix)")
    p.add_argument("--epochs", type=int, default=6, help="search epochs after 3 warm-up epochs")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=0.5, help="profiler time budget per op (s)")
    return p.parse_args(argv)


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_cli(svc: Service, *args: str) -> str:
    """One search-client command, its output shown as it comes and returned; a failure stops the demo."""
    cmd = [sys.executable, "-m", "search_client", *args]
    print("$ search-client", " ".join(args), flush=True)
    lines = []
    with svc.child(cmd) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        if proc.wait() != 0:
            raise SystemExit(f"demo: search-client {args[0]} failed with exit code {proc.returncode}")
    return "".join(lines)


def profile(client: httpx.Client, job: dict) -> dict:
    print("POST /v1/jobs", json.dumps(job))
    job = client.post("/v1/jobs", json=job)
    if job.status_code >= 400:
        raise SystemExit(f"demo: POST /v1/jobs refused ({job.status_code}): {job.text}")
    job = job.json()
    with tqdm(total=job["total"], desc="profiling ops", unit="op") as bar:
        while job["status"] in ("queued", "running"):
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job['id']}").json()
            bar.update(job["done"] - bar.n)
    if job["status"] != "done":
        raise SystemExit(f"demo: profiling job {job['status']}: {job.get('error')}")
    return client.get(f"/v1/tables/{job['table_id']}").json()


def pick_budget(table: dict, space: str, resolution: int) -> tuple[float, float, float]:
    """(budget, cheapest, uniform-mix) in ms, by the table's calibrated model (what the search predicts
    with): a quarter of the way from the cheapest net to the uniform mix, a budget the search must work for."""
    from search_client.latency.model import LatencyModel
    from shared.calibration import Calibration
    from shared.spaces import get_space

    cal = Calibration.from_dict(table["calibration"]) if table.get("calibration") else None
    lat = LatencyModel({k: v["median_ms"] for k, v in table["entries"].items()},
                       get_space(space, resolution, None, 10), cal)
    cheapest = lat.fixed_ms + sum(float(c.min()) for c in lat.layer_costs)
    uniform = lat.fixed_ms + sum(float(c.mean()) for c in lat.layer_costs)
    return round(cheapest + (uniform - cheapest) / 4, 3), cheapest, uniform


def check_calibration(url: str, tid: str, space: str, resolution: int) -> dict:
    """The table with its calibration, or without it when the fit is not one to search with: a few
    networks timed on a busy machine can fit a model that is far off (leave-one-out error over 15%)
    or prices some op at <= 0 ms. The demo then says so and searches on the raw table."""
    table = httpx.get(f"{url}/v1/tables/{tid}", timeout=30).json()
    cal = table.get("calibration")
    if not cal:
        return table
    scales = [cal["scale"], *cal.get("group_scales", {}).values()]
    loo = cal.get("loo_rmspe")
    if min(scales) > 0 and (loo is None or loo <= 0.15):
        return table
    print(f"calibration dropped: leave-one-out RMSPE {100 * (loo or 0):.0f}%, smallest scale {min(scales):.2f} "
          "(too few or too noisy measurements); the search uses the raw table sum. A quieter machine or "
          "--calibration-samples 20 gives a usable fit.")
    httpx.delete(f"{url}/v1/tables/{tid}/calibration", timeout=30).raise_for_status()
    return httpx.get(f"{url}/v1/tables/{tid}", timeout=30).json()


def summary(out: Path, table: dict, budget: float, train_acc: float | None, t0: float) -> None:
    search = out / "search"
    derived = json.loads((search / "derived" / "derive.json").read_text())
    net = json.loads((search / "measurement.json").read_text())
    measured = net["measured"]["median_ms"]
    cal = net.get("calibrated_ms")
    print("\n" + "=" * 78 + "\nDEMO SUMMARY")
    print(f"table        {table['id']} ({len(table['entries'])} ops, {table['backend']}, "
          f"{table['threads']} thread, device {table['device']})")
    print(f"architecture {' '.join(derived['choices'])}")
    print(f"budget       --max-ms {budget:g}  (swaps to meet it: {len(derived.get('swaps') or [])})")
    line = f"latency      predicted {derived['predicted_ms']:.3f} ms (search), table sum {net['predicted_ms']:.3f} ms"
    if cal is not None:
        line += f", calibrated {cal:.3f} ms"
    print(line + f"; measured {measured:.3f} ms (median, p10-p90 {net['measured']['p10_ms']:.3f}-"
                 f"{net['measured']['p90_ms']:.3f}); {'within' if measured <= budget else 'OVER'} budget")
    print(f"error        {100 * ((cal or net['predicted_ms']) - measured) / measured:+.1f}% "
          f"({'calibrated' if cal is not None else 'table sum'} vs measured)")
    last = json.loads((search / "log.jsonl").read_text().splitlines()[-1])
    print(f"accuracy     supernet argmax valid {last['valid_acc']:.3f}"
          + (f", retrained test {train_acc:.3f}" if train_acc is not None else ""))
    print(f"pictures     {search}/ " + ", ".join(p.name for p in sorted(search.glob("*.png"))))
    print(f"files        {search / 'derived'} (arch.json, net.config, model.onnx), {out / 'train'}")
    print(f"took         {time.time() - t0:.0f} s")


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    var, out = Path(args.var), Path(args.out)
    var.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM takes Ctrl-C's clean-up path
    # a shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C handler of
    # its own: the demo (and its service) would run on through a Ctrl-C (seen: a CI run started with `&`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PROFILER_BUDGET_S": str(args.budget_s), "PROFILER_CACHE_DIR": str(var / "onnx-cache"),
           "PROFILER_DEVICE_NAME": "demo-" + socket.gethostname()}
    svc = Service(port, f"sqlite:///{var / 'profiler.db'}", env, log=var / "service.log")
    try:
        step("1/6 start the profiler service (SQLite, background)")
        svc.start()
        url = svc.url
        print(f"profiler service pid {svc.pid} at {url}  (log {var / 'service.log'}; page: {url}/)", flush=True)
        with httpx.Client(base_url=url, timeout=30) as client:
            dev = client.get("/v1/device").json()
            print(f"device {dev['name']}: {dev['fingerprint'].get('cpu_model')}, backends {dev['backends']}")
            step(f"2/6 profile {args.space} @ {args.resolution}px, 10 classes (every candidate op)")
            table = profile(client, {"space": args.space, "resolution": args.resolution, "num_classes": 10,
                                     "backend": "onnxruntime", "threads": 1, "batch": 1})
        tid = table["id"]
        print(f"table {tid}: {len(table['entries'])} ops")
        common = ["--profiler", url, "--table", tid]
        step(f"3/6 calibrate the table on {args.calibration_samples} measured random networks")
        run_cli(svc, "calibrate", *common, "--space", args.space, "--resolution", str(args.resolution),
                "--num-classes", "10", "--samples", str(args.calibration_samples))
        table = check_calibration(url, tid, args.space, args.resolution)
        budget, cheapest, uniform = pick_budget(table, args.space, args.resolution)
        budget = args.max_ms or budget
        step(f"4/6 search on digits with budget --max-ms {budget:g} (table: cheapest net {cheapest:.3f} ms, "
             f"uniform mix {uniform:.3f} ms), derive, measure on the device")
        run_cli(svc, "search", *common, "--space", args.space, "--resolution", str(args.resolution),
                "--dataset", "digits", "--target-ms", f"{budget:g}", "--max-ms", f"{budget:g}",
                "--epochs", str(args.epochs), "--measure", "--no-progress", "--out", str(out / "search"),
                # step 3 calibrated (or dropped a fit too noisy to search with): no second calibration here
                "--calib-samples", "0")
        step(f"5/6 retrain the derived net briefly ({args.train_epochs} epochs, from the supernet's weights)")
        text = run_cli(svc, "train", str(out / "search" / "derived" / "arch.json"), "--dataset", "digits",
                       "--epochs", str(args.train_epochs), "--init", str(out / "search" / "derived" / "model.pt"),
                       "--no-progress", "--out", str(out / "train"))
        acc = next((float(w.split()[2]) for w in text.splitlines() if w.startswith("test accuracy")), None)
        step("6/6 summary")
        summary(out, table, budget, acc, t0)
        return 0
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping the service", file=sys.stderr, flush=True)
        return 130
    finally:
        svc.stop()
        print(f"profiler service stopped (pid {svc.pid})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
