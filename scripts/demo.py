"""make demo: the whole product on this machine, over the REST API a real deployment uses.

Starts the profiler service on SQLite in the background, then runs the README's quick start against it,
command for command: ``search-client profile``, ``calibrate``, ``search --max-ms p50 --measure`` (on the
bundled digits data, which a few minutes can learn) and ``train``. The
service (and any step still running) is stopped on the way out: at the end, on an error, on Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

from demo_service import Service  # scripts/, beside this file

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--var", default=str(ROOT / "var" / "demo"), help="service database and caches")
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"), help="search and training runs")
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--calibration-samples", type=int, default=20)
    p.add_argument("--max-ms", default="p50", help="latency budget: ms, or a percentile of the device's "
                                                   "measured random nets (p25, p50, p75)")
    p.add_argument("--epochs", type=int, default=6, help="search epochs after 3 warm-up epochs")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=0.5, help="profiler time budget per op (s)")
    return p.parse_args(argv)


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_cli(svc: Service, *args: str) -> str:
    """One search-client command as a user types it, its output shown as it comes and returned; a failure
    stops the demo."""
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


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    var, out = Path(args.var), Path(args.out)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM takes Ctrl-C's clean-up path
    # a shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C handler of
    # its own: the demo (and its service) would run on through a Ctrl-C (seen: a CI run started with `&`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    svc = Service(var, {"PROFILER_BUDGET_S": str(args.budget_s),
                        "PROFILER_DEVICE_NAME": "demo-" + socket.gethostname()})
    space = ["--space", args.space, "--resolution", str(args.resolution), "--num-classes", "10"]
    try:
        step("1/5 start the profiler service (SQLite, background)")
        svc.start()
        print(f"profiler service pid {svc.pid} at {svc.url}  (log {svc.log}; page: {svc.url}/)", flush=True)
        step(f"2/5 profile every candidate op of {args.space} at {args.resolution} px, 10 classes")
        table = run_cli(svc, "profile", "--profiler", svc.url, *space).strip().splitlines()[-1]
        common = ["--profiler", svc.url, "--table", table]
        step(f"3/5 calibrate the table on {args.calibration_samples} random networks the device measures")
        run_cli(svc, "calibrate", *common, *space, "--samples", str(args.calibration_samples))
        step(f"4/5 search on digits under --max-ms {args.max_ms}, derive, measure on the device")
        search = out / "search"
        run_cli(svc, "search", *common, "--resolution", str(args.resolution), "--dataset", "digits",
                "--max-ms", args.max_ms, "--epochs", str(args.epochs), "--measure", "--no-progress",
                "--out", str(search))
        step(f"5/5 retrain the derived net briefly ({args.train_epochs} epochs, from the supernet's weights)")
        run_cli(svc, "train", str(search / "derived" / "arch.json"), "--dataset", "digits",
                "--epochs", str(args.train_epochs), "--init", str(search / "derived" / "model.pt"),
                "--no-progress", "--out", str(out / "train"))
        print(f"\ndemo done in {time.time() - t0:.0f} s: the search's run in {search}, the retrained net in "
              f"{out / 'train'}", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping the service", file=sys.stderr, flush=True)
        return 130
    finally:
        svc.stop()
        print(f"profiler service stopped (pid {svc.pid})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
