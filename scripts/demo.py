"""make demo: start the profiler on SQLite, profile a small table over REST, print it.

Everything goes through the REST API a real deployment uses; the server is stopped at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
JOB = {"space": "proxyless-cifar", "resolution": 32, "backend": "onnxruntime", "threads": 1, "batch": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(client: httpx.Client, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with code {proc.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    sys.exit("server did not become healthy")


def main() -> None:
    var = ROOT / "var" / "demo"
    var.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PROFILER_BUDGET_S": "0.5", "PROFILER_CACHE_DIR": str(var / "onnx-cache")}
    cmd = [sys.executable, "-m", "profiler_service", "serve", "--port", str(port),
           "--db", f"sqlite:///{var / 'profiler.db'}"]
    print("$", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_healthy(client, proc)
            print("device:", client.get("/v1/device").json()["fingerprint"]["cpu_model"])
            print("POST /v1/jobs", JOB)
            job = client.post("/v1/jobs", json=JOB).raise_for_status().json()
            with tqdm(total=job["total"], desc="profiling", unit="op") as bar:
                while job["status"] in ("queued", "running"):
                    time.sleep(0.5)
                    job = client.get(f"/v1/jobs/{job['id']}").json()
                    bar.update(job["done"] - bar.n)
            if job["status"] != "done":
                sys.exit(f"job {job['status']}: {job.get('error')}")
            table = client.get(f"/v1/tables/{job['table_id']}").json()
            print(f"\ntable {table['id']}  device={table['device']} backend={table['backend']} "
                  f"threads={table['threads']} batch={table['batch']}  ({len(table['entries'])} ops)")
            print(f"{'key':<78} {'median':>8} {'p10':>8} {'p90':>8} {'n':>5}")
            for key, s in table["entries"].items():
                print(f"{key:<78} {s['median_ms']:8.3f} {s['p10_ms']:8.3f} {s['p90_ms']:8.3f} {s['count']:5d}")
            yaml_text = client.get(f"/v1/tables/{table['id']}", params={"format": "yaml"}).text
            print("\nGET ?format=yaml (published format), first lines:")
            print("\n".join(yaml_text.splitlines()[:3]))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
