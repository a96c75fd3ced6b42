"""``profile``: have the device measure every candidate op of a space, with a progress bar, and print the
table's id, the only thing on stdout, so that ``TABLE=$(search-client profile ...)`` works in a script.

The job runs on the device, not in this process: Ctrl-C stops the watching, never the job, and says how to
follow or cancel it. A job that fails or is cancelled fails the command with its reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import get_args

from shared.schemas import Backend
from shared.spaces import SPACES, get_space

EXIT_INTERRUPTED = 130


def add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiler", required=True, help="profiler service URL, e.g. http://my-board:8000")
    p.add_argument("--space", required=True, choices=sorted(SPACES))
    p.add_argument("--resolution", type=int, required=True, help="input size in px")
    p.add_argument("--width-mult", type=float, help="default: the space's")
    p.add_argument("--num-classes", type=int, help="classes of the head (default: the space's); the data set's")
    p.add_argument("--backend", default="onnxruntime", choices=get_args(Backend),
                   help="the runtime the device deploys with (GET /v1/device lists what it has)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--api-key", default=os.environ.get("PROFILER_API_KEY"))
    p.add_argument("--no-progress", action="store_true")


def run_profile(args) -> int:
    from tqdm import tqdm

    from search_client.remote.profiler_client import ProfilerClient
    from search_client.remote.tables import describe_missing, missing_keys

    space = get_space(args.space, args.resolution, args.width_mult, args.num_classes)  # bad sizes fail here
    with ProfilerClient(args.profiler, api_key=args.api_key) as client:
        job = client.submit_profile(space=space.name, resolution=space.resolution, width_mult=space.width_mult,
                                    num_classes=space.num_classes, backend=args.backend, threads=args.threads,
                                    batch=args.batch)
        desc = f"profiling {space.name} @ {space.resolution} px on {args.backend} (job {job['id']})"
        # stderr: stdout carries the table id alone
        bar = tqdm(total=job.get("total") or None, desc=desc, unit="op", file=sys.stderr,
                   disable=args.no_progress)

        def show(state: dict) -> None:
            bar.total = state.get("total") or bar.total
            bar.update(max(0, int(state.get("done") or 0) - bar.n))
            bar.set_postfix_str(state.get("status", ""), refresh=True)

        try:
            done = client.wait_job(job["id"], timeout=None, progress=show)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: job {job['id']} keeps running on the device (GET {client.base_url}/v1/jobs/"
                  f"{job['id']} follows it, DELETE cancels it); its table is {job.get('table_id')}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            bar.close()
        table_id = done.get("table_id") or job.get("table_id")
        table = client.get_table(table_id)
    missing = missing_keys(space, {k: v.median_ms for k, v in table.entries.items()})
    if missing:  # the job said done, but a search would refuse the table
        raise ValueError(describe_missing(missing, f"table {table_id} after job {job['id']}"))
    print(table_id)
    return 0


__all__ = ["add_profile", "run_profile"]
