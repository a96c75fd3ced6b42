"""Benchmark child: reads one job as JSON on stdin, writes one JSON line per result on stdout."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the server dies, instead of a benchmark running on (and
    holding the device) until its next result finds the pipe closed."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before the request above took effect
        os._exit(1)


def main() -> None:
    _die_with_parent()
    # Keep the result channel clean: anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    job = json.loads(sys.stdin.read())

    def send(kind: str, label: str | None, payload) -> None:
        out.write(json.dumps([kind, label, payload]) + "\n")

    from profiler_service.measure.backends import get_backend
    from profiler_service.measure.protocol import Protocol
    from profiler_service.measure.reference import NAME, parse
    from profiler_service.measure.tasks import TaskError, run_task

    try:
        reference = job.get("reference", NAME)
        parse(reference)  # an unknown name fails the job before any timing
        backend = get_backend(job["backend"], threads=job["threads"], cache_dir=job["cache_dir"],
                              reference=reference)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which owns error handling
        send("error", None, f"{type(e).__name__}: {e}")
        return
    protocol = Protocol(**job["protocol"])
    # torch and onnxruntime are loaded: their objects live as long as this child, so leave them out of
    # every collection (a full one walked them all in 100-200 ms; timing itself runs with gc off).
    gc.collect()
    gc.freeze()
    for task in job["tasks"]:
        try:
            for label, stats in run_task(backend, task, job["batch"], protocol):
                send("result", label, stats.model_dump())
        except TaskError as e:
            if task[0] == "op":  # one op the runtime cannot convert or run: the other ops still count
                send("op-failed", e.label, str(e))
                continue
            send("error", e.label, str(e))
            return
        if task[0] == "reference":  # the burst's quiet speed: what this child's slow-downs are read against
            protocol = dataclasses.replace(protocol, quiet_ref_ms=stats.median_ms)
        gc.freeze()  # what this task loaded (modules, sessions, caches) stays for the next ones too
    send("done", None, None)


if __name__ == "__main__":
    main()
