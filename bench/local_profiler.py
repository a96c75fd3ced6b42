"""The benches' profiler: a service on loopback (SQLite in a scratch folder), a table of a
space profiled over REST, measure networks, fit the table's calibration, run the search CLI.

Everything goes through the REST API and the ``search-client`` command a user runs; nothing here
reaches into the service's database.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from search_client.latency.fidelity import Measured, measure_all
from search_client.remote.local_service import local_service
from search_client.remote.profiler_client import ProfilerClient
from shared.spaces import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def profiler(workdir: Path, *, name: str = "bench", budget_s: float | None = None) -> Iterator[ProfilerClient]:
    """A fresh service (new database: a fresh worker that estimates its own nominal) and a client of it,
    stopped on exit; the service's log is ``workdir/server-PORT.log``."""
    env = {"PROFILER_DEVICE_NAME": name}
    if budget_s is not None:
        env["PROFILER_BUDGET_S"] = str(budget_s)
    with local_service(Path(workdir), env=env, log_level="info") as service, \
            ProfilerClient(service.url, cache_dir=Path(workdir) / "client-cache", timeout=60) as client:
        yield client


def profile_table(client: ProfilerClient, space: SearchSpace, *, backend: str = "onnxruntime",
                  threads: int = 1) -> tuple[str, float]:
    """Profile every op of ``space`` (its resolution and class count) -> (table id, seconds)."""
    job = client.submit_profile(space=space.name, resolution=space.resolution, width_mult=space.width_mult,
                                num_classes=space.num_classes, backend=backend, threads=threads, batch=1)
    t0 = time.perf_counter()
    with tqdm(total=job["total"], desc=f"profile {space.name}@{space.resolution} {backend}/{threads}t",
              unit="op", leave=False) as bar:
        job = client.wait_job(job["id"], progress=lambda j: bar.update(j["done"] - bar.n), timeout=None)
    return job["table_id"], time.perf_counter() - t0


def measure(client: ProfilerClient, table_id: str, space: SearchSpace, archs: Sequence[list[str]],
            what: str) -> list[Measured]:
    with tqdm(total=len(archs), desc=f"measure {what}", unit="net", leave=False) as bar:
        return measure_all(client, table_id, space, archs, progress=lambda n: bar.update(1))


def calibrate(client: ProfilerClient, table_id: str, nets: Sequence[Measured]) -> dict:
    return client.calibrate(table_id, [m.network_id for m in nets])


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    return [float(np.percentile(np.asarray(values, dtype=float), q)) for q in qs]


def search_cli(args: Sequence[str], log: Path, *, threads: int | None = None) -> float:
    """``python -m search_client search ARGS`` with its output to ``log``; raises on a non-zero exit."""
    cmd = [sys.executable, "-m", "search_client", "search", *args, "--no-progress"]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"search exited with {rc} (log {log}):\n{tail}")
    return time.perf_counter() - t0


def shared_epochs(warmup_epochs: int | None, search_args: str = "") -> int:
    """Epochs before a search's first architecture step (warm-up + the search epochs that skip them): weights
    only, so one checkpoint of them serves every budget, table and algorithm (``--resume``)."""
    from search_client.engine.search import SearchConfig

    d = SearchConfig()
    warm = warmup_epochs if warmup_epochs is not None else d.warmup_epochs
    skip = getattr(d, "arch_skip_epochs", 0)
    parts = search_args.split()
    if "--arch-skip-epochs" in parts:
        skip = int(parts[parts.index("--arch-skip-epochs") + 1])
    return warm + skip


def cli_options(command: str) -> set[str]:
    """The option strings a ``search-client`` subcommand accepts (so a bench can use a new flag only where
    the CLI has it)."""
    from search_client.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001 - argparse has no public API
    return {opt for a in sub.choices[command]._actions for opt in a.option_strings}  # noqa: SLF001


def cli_choices(command: str, option: str) -> tuple[str, ...]:
    from search_client.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    for a in sub.choices[command]._actions:  # noqa: SLF001
        if option in a.option_strings:
            return tuple(a.choices or ())
    return ()
