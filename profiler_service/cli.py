"""Command line: ``profiler-service serve | worker | profile | tables | export | import``.

Bad input prints one line (``error: ...``) and exits 2; a measurement that fails exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from profiler_service.services.errors import ServiceError
from profiler_service.settings import BindError, Settings
from shared.files import WriteFailed, write_text_atomic
from shared.specs import SpecError


class UsageError(Exception):
    """Bad input found after argument parsing."""


def _settings(args: argparse.Namespace, **extra) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "db", None):
        overrides["database_url"] = args.db
    if getattr(args, "device_name", None):
        overrides["device_name"] = args.device_name
    return Settings(**overrides)


# ---- commands ------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port, worker=False if args.no_worker else None)
    settings.check_bind(settings.host)
    import uvicorn

    from profiler_service.app import create_app
    from profiler_service.db.migrate import init_db

    # Open and migrate the database here, so a bad URL is one line and exit 2, not a lifespan traceback.
    init_db(settings).dispose()

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A worker with no HTTP server: one per device, sharing a PostgreSQL with the API servers."""
    import signal
    import threading

    from profiler_service.db.migrate import init_db
    from profiler_service.measure.fingerprint import fingerprint
    from profiler_service.services.devices import ensure_device
    from profiler_service.worker import Worker

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(args)
    db = init_db(settings)
    with db.session() as s:
        device_id = ensure_device(s, settings.device_name, fingerprint()).id
    worker = Worker(db, settings, device_id)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    logging.getLogger(__name__).info("worker %s for device %s", worker.id, settings.device_name)
    while not stop.wait(1.0):
        if not worker.alive:
            return 1
    worker.stop()
    db.dispose()
    return 0


def _read_keys(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"--keys-file: cannot read {path}: {e.strerror}") from None
    keys = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    keys = [k for k in keys if k]
    if not keys:
        raise UsageError(f"--keys-file: {path} holds no keys")
    return keys


def cmd_profile(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shared.schemas import JobCreate

    req = JobCreate(space=args.space, resolution=args.resolution, width_mult=args.width_mult,
                    num_classes=args.num_classes, keys=_read_keys(args.keys_file) if args.keys_file else None,
                    backend=args.backend, threads=args.threads, batch=args.batch)
    settings = _settings(args)
    from profiler_service.db.migrate import init_db
    from profiler_service.measure.fingerprint import fingerprint
    from profiler_service.measure.runner import available_backends
    from profiler_service.services import jobs
    from profiler_service.services.devices import ensure_device
    from profiler_service.worker import Worker

    db = init_db(settings)
    with db.session() as s:
        device = ensure_device(s, settings.device_name, fingerprint())
        worker = Worker(db, settings, device.id)
        # Claimed at creation: a server worker sharing this database must not take it.
        job = jobs.create_profile_job(s, req, device=device, limits=settings.limits,
                                   backends=available_backends(), claimed_by=worker.id)
        job_id, table_id, total = job.id, job.table_id, job.total
    print(f"job {job_id}: {total} ops on {req.backend}, {req.threads} thread(s), batch {req.batch} "
          f"-> table {table_id}", file=sys.stderr)
    bar = tqdm(total=total, unit="op", desc="profiling", file=sys.stderr)

    def progress(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        status = worker.run_job(job_id, progress)
    except KeyboardInterrupt:
        with db.session() as s:
            jobs.cancel_job(s, job_id)
        bar.close()
        print(f"job {job_id}: interrupted; measured ops are kept", file=sys.stderr)
        return 130
    finally:
        bar.close()
    with db.session(write=False) as s:
        job = jobs.get_job(s, job_id)
        print(f"job {job_id}: {job.status}, {job.done}/{job.total} ops in table {table_id}"
              + (f" ({job.error})" if job.error else ""))
    return 0 if status == "done" else 1


def cmd_tables(args: argparse.Namespace) -> int:
    from profiler_service.db.migrate import init_db
    from profiler_service.services.tables import list_tables

    db = init_db(_settings(args))
    with db.session(write=False) as s:
        rows = list_tables(s)
    header = ("ID", "DEVICE", "BACKEND", "THREADS", "BATCH", "DTYPE", "ENTRIES", "UPDATED")
    lines = [header] + [(t.id, t.device, t.backend, str(t.threads), str(t.batch), t.dtype, str(t.entries),
                         t.updated_at.strftime("%Y-%m-%d %H:%M:%S") if t.updated_at else "-") for t in rows]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from profiler_service.db.migrate import init_db
    from profiler_service.services import tables, yaml_io

    db = init_db(_settings(args))
    with db.session(write=False) as s:
        table = tables.get_table(s, args.table_id)
        text = yaml_io.to_yaml(s, table) if args.format == "yaml" else yaml_io.to_json(s, table) + "\n"
    if args.output:
        try:
            write_text_atomic(args.output, text)  # a failed export leaves any earlier file whole
        except WriteFailed as e:
            raise UsageError(f"-o: {e}") from None
    else:
        sys.stdout.write(text)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from profiler_service.db.migrate import init_db
    from profiler_service.services import yaml_io

    try:
        body = Path(args.file).read_bytes()
    except OSError as e:
        raise UsageError(f"FILE: cannot read {args.file}: {e.strerror}") from None
    db = init_db(_settings(args))
    with db.session() as s:
        out = yaml_io.import_table(s, body, device=args.device, backend=args.backend, threads=args.threads,
                                   batch=args.batch, dtype=args.dtype)
    print(f"imported {out.entries} entries into table {out.id}")
    return 0


# ---- parser --------------------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="profiler-service", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    db_help = "database URL or SQLite file path (default: PROFILER_DATABASE_URL or ./var/profiler.db)"

    s = sub.add_parser("serve", help="run the REST API and its worker")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--db", help=db_help)
    s.add_argument("--device-name", help="this device's name (default: hostname)")
    s.add_argument("--no-worker", action="store_true", help="serve only; another process runs the jobs")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("worker", help="run only the job worker of this device (no HTTP server)")
    s.add_argument("--db", help=db_help)
    s.add_argument("--device-name", help="this device's name (default: hostname)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("profile", help="profile ops locally (no server) into the database")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="search space name (see GET /v1/spaces)")
    what.add_argument("--keys-file", help="file with one op key per line")
    s.add_argument("--resolution", type=_positive)
    s.add_argument("--width-mult", type=float)
    s.add_argument("--num-classes", type=_positive)
    s.add_argument("--backend", default="onnxruntime")
    s.add_argument("--threads", type=_positive, default=1)
    s.add_argument("--batch", type=_positive, default=1)
    s.add_argument("--db", help=db_help)
    s.add_argument("--device-name", help="this device's name (default: hostname)")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("tables", help="list tables")
    s.add_argument("--db", help=db_help)
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("export", help="write a table as published yaml or our JSON")
    s.add_argument("table_id")
    s.add_argument("--format", choices=["yaml", "json"], default="yaml")
    s.add_argument("-o", "--output", help="file to write (default: stdout)")
    s.add_argument("--db", help=db_help)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import", help="import published yaml or our JSON into a table")
    s.add_argument("file")
    s.add_argument("--device", required=True)
    s.add_argument("--backend", required=True)
    s.add_argument("--threads", type=_positive, default=1)
    s.add_argument("--batch", type=_positive, default=1)
    s.add_argument("--dtype", default="float32")
    s.add_argument("--db", help=db_help)
    s.set_defaults(func=cmd_import)
    return p


def _validation_line(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'input'}: {err['msg']}" for err in e.errors())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (SpecError, ServiceError, BindError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
    except ValidationError as e:
        print(f"error: {_validation_line(e)}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - one line, no traceback, for any database / environment failure
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(e, SQLAlchemyError | OSError | ImportError | ValueError):
            raise
        print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}", file=sys.stderr)
    return 2
