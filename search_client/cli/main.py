"""``search-client`` / ``python -m search_client``: profile, calibrate, search, derive, train, predict, tables,
validate.

Every command fails with one ``error: ...`` line and exit status 2 on a bad input, never a traceback.
A search runs data-parallel under ``torchrun --nproc_per_node=N -m search_client search ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from search_client.cli.budgets import MAX_MS_HELP, resolve_for_checkpoint, resolve_for_table, take_percentile
from search_client.cli.clock import add_clock, run_clock
from search_client.cli.errors import CliError
from search_client.cli.fidelity import add_calibrate, add_validate, run_calibrate, run_validate
from search_client.cli.profile import add_profile, run_profile
from search_client.cli.several_tables import split_tables, table_budget, table_line
from search_client.data.datasets import DATASETS
from search_client.engine.config import RECIPES, SearchConfig
from search_client.report.summary import Measurement, SearchSummary

EXIT_USAGE = 2



# ---- table plumbing -----------------------------------------------------------------------------

def _client(args):
    from search_client.remote.profiler_client import ProfilerClient

    return ProfilerClient(args.profiler, api_key=args.api_key)


def _add_table_args(p: argparse.ArgumentParser, required: bool = True, repeat: bool = False) -> None:
    many = {"action": "append"} if repeat else {}
    p.add_argument("--profiler", help="profiler service URL, e.g. http://127.0.0.1:8000"
                   + ("; once per --table where the tables live on several devices" if repeat else ""), **many)
    p.add_argument("--table", help="table id on that service (see the tables command)"
                   + ("; repeat it, each with its own --max-ms, for a net that must meet several budgets"
                      if repeat else ""), **many)
    p.add_argument("--table-file", help="offline table: our table JSON, {KEY: ms}, or the published yaml")
    p.add_argument("--api-key", default=os.environ.get("PROFILER_API_KEY"))
    p.set_defaults(table_required=required)


def _table(args, space, *, profile_missing: bool = False, progress: bool = True):
    """-> TableSource, or None when no table was given and none is required."""
    from search_client.remote.tables import describe_missing, fetch_table, load_table_file, missing_keys

    if args.table_file:
        src = load_table_file(args.table_file)
        missing = missing_keys(space, src.entries)
        if missing:
            raise CliError(describe_missing(missing, args.table_file))
        return src
    if args.profiler and args.table:
        with _client(args) as client:
            return fetch_table(client, args.table, space, profile_missing=profile_missing, progress=progress)
    if args.profiler or args.table:
        raise CliError("give both --profiler URL and --table ID (or --table-file PATH)")
    if args.table_required:
        raise CliError("a latency table is needed: --profiler URL --table ID, or --table-file PATH")
    return None


def _calibrated(args, space, src, *, progress: bool) -> None:
    """Put the table's calibration for this space into ``src`` (fitting one on the device when it has
    none), so target_ms / max_ms constrain the calibrated prediction, not the raw op sum."""
    if src is None:  # no table: search() refuses target_ms / max_ms with a clear message
        return
    if args.table_file:
        if not src.calibration:
            print(f"note: {args.table_file} has no calibration: the latency target/limit applies to the raw "
                  f"table sum (calibrate on the device with --profiler/--table for a faithful number)")
        return
    if args.calib_samples == 0:
        if not src.calibration:
            print("note: --calib-samples 0: the latency target/limit applies to the raw table sum")
        return
    from search_client.remote.calibrate import ensure_calibration

    with _client(args) as client:
        src.calibration = ensure_calibration(client, args.table, space, samples=args.calib_samples,
                                             progress=progress)


def _measure(args, table_id: str, arch):
    """The device's ``NetworkOut`` for ``arch``; the search's summary reports it."""
    with _client(args) as client:
        job = client.measure_network(table_id, arch)
        print(f"measuring on the device (job {job}) ...", flush=True)
        res = client.wait_network(job)
    if res.measured is None or res.predicted_ms is None:
        raise CliError(f"network {job} came back without a measurement or prediction "
                       f"(missing keys: {res.missing[:5]})")
    return res


# ---- commands -----------------------------------------------------------------------------------

def add_search(p: argparse.ArgumentParser) -> None:
    """Flags that set a SearchConfig field are absent from the parsed namespace unless given, so a
    recipe's value survives unless a flag overrides it (``engine.config.resolve``)."""
    _add_table_args(p, required=False, repeat=True)
    d = SearchConfig()

    def opt(*flags: str, help: str = "", **kw) -> None:  # noqa: A002 - argparse's own keyword
        dest = kw.get("dest") or flags[0].lstrip("-").replace("-", "_")
        default = getattr(d, dest, None)
        shown = f" (default: {default})" if default is not None and kw.get("action") != "store_true" else ""
        p.add_argument(*flags, default=argparse.SUPPRESS, help=(help + shown).strip() or None, **kw)

    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a whole set of settings: official-imagenet is the original ImageNet search (224 px, "
                        "40 + 120 epochs, batch 256, full_v2, mul#log, 50,000 valid images); flags given with it "
                        "override single values")
    opt("--space", choices=["proxyless-mobile", "proxyless-cifar"])
    opt("--resolution", type=int)
    opt("--width-mult", type=float)
    opt("--dataset", choices=DATASETS)
    opt("--data-dir", help="imagefolder: CLASS/**/IMAGE, or train/CLASS/ + val/ (class folders, or flat with "
                           "--val-labels)")
    opt("--val-labels", help="label file of a flat val/: 'FILE CLASS' per line (CLASS a class folder name or index)")
    opt("--valid-size", type=int, help="images held out of train for the architecture steps (default: a fifth)")
    opt("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
        help="image folder normalisation (default: estimated from the training images)")
    opt("--std", type=float, nargs=3, metavar=("R", "G", "B"))
    opt("--augment", action=argparse.BooleanOptionalAction,
        help="image folder: RandomResizedCrop(0.08-1) + flip + colour jitter for training")
    opt("--synthetic-size", type=int)
    opt("--epochs", type=int, help="search epochs after the warm-up")
    opt("--warmup-epochs", type=int)
    opt("--batch-size", type=int, help="per process; under torchrun the global batch is world x this")
    opt("--steps-per-epoch", type=int)
    opt("--stop-after", type=int, help="run at most N epochs now, leaving a resumable checkpoint")
    opt("--stop-after-steps", type=int, help="run until weight step N, leaving a resumable checkpoint")
    opt("--lr", type=float, help="for one process's batch; x world under torchrun (linear rule)")
    opt("--warmup-lr", type=float)
    opt("--arch-lr", type=float,
        help="Adam lr of the architecture logits (default: 100 / planned architecture steps, "
             "10 / steps for reinforce, at least the original's 1e-3, at most 1.0)")
    opt("--target-ms", type=float)
    opt("--max-ms", action="append",
        help=MAX_MS_HELP + "; with several --table, one each, in the same order")
    opt("--fill", type=float,
        help="with --max-ms and no --target-ms: pull E[LAT] up to fill x max-ms during the search, and spend "
             "the budget the derived net leaves (e.g. 0.9; 0: off, derive the projected argmax)")
    opt("--fill-margin", type=float,
        help="derive fills up to max-ms x (1 - margin) (default: the calibration's leave-one-out "
             "error, at most 0.10; 0.05 without a calibration)")
    opt("--loss", choices=["mul#log", "add#linear"])
    opt("--grad-mode", choices=["two", "full", "full_v2"])
    opt("--arch-algo", choices=["grad", "reinforce"],
        help="grad: BinaryConnect gradient; reinforce: policy gradient on sampled nets")
    opt("--rl-batch", type=int, help="reinforce: nets sampled per step")
    opt("--rl-tradeoff", type=float, help="reinforce: w of acc * (LAT / target) ** -w")
    opt("--arch-every", type=int)
    opt("--arch-skip-epochs", type=int,
        help="search epochs at the start with no architecture step (the original skips one)")
    opt("--workers", dest="num_workers", type=int,
        help="DataLoader workers per process, decoding and augmenting (default: the CPUs less one, at most 8; "
             "0 for the bundled in-memory sets)")
    opt("--amp", choices=["off", "bf16", "fp16"], help="mixed precision (fp16 needs CUDA)")
    opt("--channels-last", action=argparse.BooleanOptionalAction, help="default: on CUDA only")
    opt("--compile", action="store_true", help="torch.compile every candidate op (long runs on a GPU)")
    opt("--ckpt-every", type=int, help="also checkpoint every N weight steps, mid-epoch")
    opt("--log-every", type=int, help="steps between progress updates")
    opt("--seed", type=int)
    opt("--out")
    opt("--device")
    p.add_argument("--threads", type=int, help="torch intra-op threads per process (default: torch's)")
    p.add_argument("--resume", help="checkpoint to continue from (e.g. OUT/ckpt.pt)")
    p.add_argument("--measure", action="store_true", help="have the device measure the derived net")
    p.add_argument("--profile-missing", action=argparse.BooleanOptionalAction, default=True,
                   help="have the device profile keys the table lacks first, e.g. the head of a dataset "
                        "with another class count (default: on)")
    p.add_argument("--calib-samples", type=int, default=20,
                   help="with --target-ms/--max-ms and a table that has no calibration for this space and "
                        "resolution: fit one first from this many random nets measured on the device "
                        "(0: use the raw table sum)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--dump-alphas", action="store_true", help=argparse.SUPPRESS)  # DDP tests


def run_search(args) -> int:
    from search_client.engine import ddp
    from search_client.engine.config import resolve
    from search_client.engine.derive import derive
    from search_client.engine.search import load_splits, make_space, search
    from search_client.report.plots import write_report

    extra_tables = split_tables(args)  # args keeps the first table; the others are budgets beside it
    percentile = take_percentile(args)  # pNN: resolved on the table below
    names = {f.name for f in fields(SearchConfig)}
    cfg = resolve(args.recipe, {k: v for k, v in vars(args).items() if k in names and k != "recipe"})
    cfg.progress = not args.no_progress
    if args.measure and not (args.profiler and args.table):
        raise CliError("--measure needs --profiler and --table (the device that owns the table measures)")
    dist = ddp.setup(cfg.device)
    if cfg.recipe and cfg.target_ms is None and dist.is_main:
        print("note: the recipe sets how the search runs, not the device's latency target: without --target-ms "
              "the search has no latency term (the original's 80 ms was a Pixel 1's)", file=sys.stderr)
    try:
        splits = load_splits(cfg)
        space = make_space(cfg, splits.num_classes)
        # rank 0 talks to the service (and may profile); the others get its answer
        payload: dict = {}
        if dist.is_main:
            try:
                payload["table"] = _table(args, space, profile_missing=args.profile_missing,
                                          progress=cfg.progress)
                if cfg.target_ms is not None or cfg.max_ms is not None or percentile is not None:
                    _calibrated(args, space, payload["table"], progress=cfg.progress)
                if percentile is not None:
                    budget = resolve_for_table(percentile, payload["table"], space,
                                               profiler=None if args.table_file else args.profiler,
                                               api_key=args.api_key)
                    print(budget.describe())
                    payload["max_ms"] = budget.ms
                payload["budgets"] = [table_budget(args, space, more, progress=cfg.progress, client_for=_client,
                                                   calibrate=_calibrated)
                                      for more in extra_tables]
            except Exception as e:  # noqa: BLE001 - forwarded to every rank, then raised there
                payload["error"] = f"{type(e).__name__}: {e}" if not isinstance(e, CliError | ValueError) \
                    else str(e)
        payload = ddp.broadcast_object(payload, dist)
        if "error" in payload:
            raise CliError(payload["error"])
        src = payload["table"]
        cfg.max_ms = payload.get("max_ms", cfg.max_ms)
        res = search(cfg, entries=src.entries if src else None, calibration=src.calibration if src else None,
                     table_info=src.info if src else None, splits=splits, resume=args.resume, announce=True,
                     budgets=payload["budgets"])
        if res["stopped"]:
            if dist.is_main:
                print(f"stopped at step {res['step']}: checkpoint {res['checkpoint']} "
                      f"(continue with --resume {res['checkpoint']})")
            return 0
        if dist.is_main:
            out = derive(res["checkpoint"], Path(cfg.out) / "derived", onnx=not args.no_onnx)
            summary = SearchSummary(out["summary"], out["paths"], budget_label=percentile and percentile.text)
            if args.measure:
                res = _measure(args, args.table, out["arch"])
                summary.paths.update(write_report(cfg.out, network=res.model_dump(mode="json")))  # + latency.png
                summary.measured = Measurement.of(res)
            measured = {}  # the other tables' devices measure the net too
            for budget in payload["budgets"] if args.measure else []:
                on = argparse.Namespace(**{**vars(args), "profiler": budget.profiler})
                measured[budget.label] = _measure(on, budget.table_id, out["arch"]).measured.median_ms
            print("\n".join(summary.lines()))
            for table in out["summary"].get("tables", []):
                print("  " + table_line(table, measured.get(table["label"])))
    finally:
        ddp.cleanup()
    return 0


def add_derive(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--out", help="default: derived/ beside the checkpoint")
    p.add_argument("--max-ms", help="override the search's limit: " + MAX_MS_HELP.split(": ", 1)[1])
    p.add_argument("--fill", action=argparse.BooleanOptionalAction, default=None,
                   help="spend the budget the projected argmax leaves, up to the fill ceiling (--no-fill: keep "
                        "the projected argmax; default: as the search was run, i.e. with its --fill)")
    p.add_argument("--no-onnx", action="store_true")


def run_derive(args) -> int:
    from search_client.engine.derive import derive

    percentile = take_percentile(args)
    if percentile is not None:
        budget = resolve_for_checkpoint(percentile, args.checkpoint)
        print(budget.describe())
        args.max_ms = budget.ms
    out = derive(args.checkpoint, args.out, max_ms=args.max_ms if args.max_ms is not None else "config",
                 fill=args.fill, onnx=not args.no_onnx)
    summary = SearchSummary(out["summary"], out["paths"], budget_label=percentile and percentile.text)
    print("\n".join(summary.lines()))
    return 0


def add_train(p: argparse.ArgumentParser) -> None:
    from search_client.engine.train import TrainConfig

    d = TrainConfig()
    p.add_argument("arch", help="architecture JSON or ProxylessNAS net.config")
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    p.add_argument("--data-dir")
    p.add_argument("--val-labels", help="label file of a flat val/: 'FILE CLASS' per line")
    p.add_argument("--workers", dest="num_workers", type=int, default=d.num_workers,
                   help="DataLoader workers decoding and augmenting")
    p.add_argument("--synthetic-size", type=int, default=d.synthetic_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out)
    p.add_argument("--init", help="start from these weights (derive's model.pt) instead of scratch")
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")


def run_train(args) -> int:
    from search_client.engine.train import TrainConfig, train_arch
    from shared.arch import load_arch

    arch = load_arch(args.arch)
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    cfg.progress = not args.no_progress
    res = train_arch(arch, cfg)
    print(f"test accuracy {res['test_acc']:.4f}  checkpoint {res['checkpoint']}")
    return 0


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("arch", help="architecture JSON or ProxylessNAS net.config")
    _add_table_args(p)


def run_predict(args) -> int:
    from search_client.engine.search import latency_model
    from search_client.latency.model import LatencyModel
    from shared.arch import load_arch

    arch = load_arch(args.arch)
    space = arch.space_instance()
    src = _table(args, space)
    raw = LatencyModel(src.entries, space)  # what the table says, uncalibrated
    cal = latency_model(src.entries, space, src.calibration) if src.calibration else None
    if cal is not None and cal.calibration is None:  # fitted on another space or size: not applied
        cal = None
    model = cal or raw  # the number the search constrains: calibrated when the table has a calibration
    for i, (name, ms) in enumerate(model.layer_breakdown(arch.choices)):
        print(f"  layer {i:2d}  {name:12s} {ms:9.3f} ms")
    print(f"  fixed (prefix + suffix{' + intercept' if cal else ''}) {model.fixed_ms:9.3f} ms")
    source = src.info.get("source")
    if cal is not None:
        version = src.calibration.get("version")
        print(f"predicted {cal.predict(arch.choices):.3f} ms calibrated (calibration v{version}), "
              f"raw table sum {raw.predict(arch.choices):.3f} ms  ({source})")
    else:
        print(f"predicted {raw.predict(arch.choices):.3f} ms raw table sum (the table has no calibration)  "
              f"({source})")
    return 0


def add_tables(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiler", required=True)
    p.add_argument("--api-key", default=os.environ.get("PROFILER_API_KEY"))


def run_tables(args) -> int:
    with _client(args) as client:
        rows = client.list_tables()
    if not rows:
        print("no tables")
    for t in rows:
        print(f"{t.id}  {t.device}  {t.backend}  threads={t.threads}  batch={t.batch}  {t.dtype}  "
              f"entries={t.entries}  updated={t.updated_at}")
    return 0


# name -> (help, add arguments, run); a new subcommand is one more entry
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "profile": ("have the device measure every candidate op of a space; prints the table id", add_profile,
                run_profile),
    "search": ("run the architecture search, then derive", add_search, run_search),
    "derive": ("argmax arch + standalone net + ONNX from a search checkpoint", add_derive, run_derive),
    "train": ("retrain a derived architecture, report test accuracy", add_train, run_train),
    "predict": ("predicted latency of an architecture from a table", add_predict, run_predict),
    "tables": ("list the tables of a profiler service", add_tables, run_tables),
    "clock": ("the device's nominals, the bursts behind them and how far they moved", add_clock, run_clock),
    "calibrate": ("fit the table's calibrated latency model from measured random networks", add_calibrate,
                  run_calibrate),
    "validate": ("score raw / one-factor / calibrated predictions on unseen measured networks", add_validate,
                 run_validate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search-client", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search_client.latency.constraint import InfeasibleLimitError
    from search_client.latency.model import MissingKeysError
    from search_client.remote.profiler_client import ProfilerError

    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, OSError, MissingKeysError, ProfilerError, InfeasibleLimitError) as e:
        # OSError: a file that cannot be read or written (shared.files.WriteFailed names which and why)
        msg = str(e).strip().replace("\n", " ")
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
