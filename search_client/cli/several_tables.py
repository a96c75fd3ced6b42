"""Several tables in one search: ``--table A --max-ms X --table B --max-ms Y`` (a ``--profiler`` each where
they differ), split off the first table, fetched and calibrated as the first is, and reported one line each."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from search_client.cli.budgets import resolve_for_table
from search_client.cli.errors import CliError


def table_line(table: dict, measured_ms: float | None) -> str:
    """One table of a search over several: its prediction against its budget, and what its device measured."""
    verdict = "within" if table["predicted_ms"] <= table["max_ms"] else "OVER"
    line = f"{table['label']}: predicted {table['predicted_ms']:.3f} ms, {verdict} its budget {table['max_ms']:.3f} ms"
    if measured_ms:
        error = 100 * (table["predicted_ms"] - measured_ms) / measured_ms
        line += f"; measured {measured_ms:.3f} ms (median), error {error:+.1f}%"
    return line


def split_tables(args) -> list[ExtraTable]:
    """``--table A --max-ms X --table B --max-ms Y [--profiler P | --profiler P --profiler Q]``: the first
    table (and its limit and profiler) stay on ``args`` as a single search's would; the others come back."""
    tables, limits, profilers = args.table or [], getattr(args, "max_ms", None) or [], args.profiler or []
    if len(tables) > 1:
        if len(limits) != len(tables):
            raise CliError(f"{len(tables)} --table given: give a --max-ms for each, in the same order "
                           f"(got {len(limits)})")
        if len(profilers) not in (1, len(tables)):
            raise CliError(f"{len(tables)} --table given: give one --profiler for all or one for each "
                           f"(got {len(profilers)})")
        if getattr(args, "table_file", None):
            raise CliError("several tables come from profilers (--profiler/--table), not with --table-file")
    elif len(limits) > 1:
        raise CliError(f"--max-ms given {len(limits)} times for one table")
    if len(profilers) > 1 and len(tables) <= 1:
        raise CliError(f"--profiler given {len(profilers)} times for {len(tables)} table(s)")
    if len(profilers) == 1 and len(tables) > 1:  # one device holds every table
        profilers = profilers * len(tables)
    extra = [ExtraTable(profilers[i], tables[i], limits[i]) for i in range(1, len(tables))]
    args.table = tables[0] if tables else None
    args.profiler = profilers[0] if profilers else None
    if limits:
        args.max_ms = limits[0]
    return extra


@dataclass(frozen=True)
class ExtraTable:
    profiler: str
    table: str
    max_ms: str  # milliseconds or pNN, as given


def table_budget(args, space, more: ExtraTable, *, progress: bool, client_for, calibrate):
    """Fetch one more table (profiling what it lacks, as for the first) and its calibration for this space;
    ``client_for`` and ``calibrate`` are the command's own (a client for an args namespace, its calibration step)."""
    from search_client.latency.budget import Percentile, parse_budget
    from search_client.latency.budgets import TableBudget
    from search_client.remote.tables import fetch_table

    one = argparse.Namespace(**{**vars(args), "profiler": more.profiler, "table": more.table, "table_file": None})
    with client_for(one) as client:
        src = fetch_table(client, more.table, space, profile_missing=args.profile_missing, progress=progress)
    calibrate(one, space, src, progress=progress)
    label = f"{src.info.get('backend', 'table')} table {more.table} at {more.profiler}"
    limit = parse_budget(more.max_ms)
    if isinstance(limit, Percentile):
        resolved = resolve_for_table(limit, src, space, profiler=more.profiler, api_key=args.api_key)
        print(f"{label}: {resolved.describe()}")
        limit = resolved.ms
    return TableBudget(label, src.entries, src.calibration, limit, more.profiler, more.table)
