"""``--max-ms`` as the commands take it: milliseconds, or ``pNN`` of the device's measured random nets
(``latency.budget``), turned into milliseconds before the search or the derivation starts."""

from __future__ import annotations

import os

from search_client.latency.budget import BUDGET_FORMS, Percentile, ResolvedBudget, parse_budget, resolve_percentile
from search_client.latency.model import fitted_elsewhere
from search_client.remote.calibrate import measured_ms
from search_client.remote.tables import TableSource
from shared.spaces import SearchSpace

MAX_MS_HELP = f"hard limit on the derived net's predicted latency: {BUDGET_FORMS}"


def take_percentile(args) -> Percentile | None:
    """Check ``args.max_ms`` (absent, ms or pNN): ms stay on ``args`` as a float; a percentile is taken off
    (a search config holds milliseconds only) and returned, to be resolved once the table is known."""
    if getattr(args, "max_ms", None) is None:
        return None
    budget = parse_budget(args.max_ms)
    if isinstance(budget, Percentile):
        delattr(args, "max_ms")  # absent: the recipe's or the default limit (none) until it is resolved
        return budget
    args.max_ms = budget
    return None


def _needs_calibration(budget: Percentile, why: str) -> ValueError:
    return ValueError(f"--max-ms {budget.text}: a relative budget needs a calibrated table (it is a percentile of "
                      f"the random nets the device measured to calibrate it), and {why}; calibrate it "
                      "(search-client calibrate, or drop --calib-samples 0) or give --max-ms in milliseconds")


def resolve_for_table(budget: Percentile, src: TableSource | None, space: SearchSpace, *, profiler: str | None,
                      api_key: str | None) -> ResolvedBudget:
    """For ``search``: the table it searches with, and the device that measured it (None for a table file)."""
    if src is None:
        raise ValueError(f"--max-ms {budget.text} needs a latency table: --profiler URL --table ID, or "
                         "--table-file PATH")
    return resolve_for_calibration(budget, src.calibration, space, profiler=profiler, api_key=api_key)


def resolve_for_calibration(budget: Percentile, calibration: dict | None, space: SearchSpace, *,
                            profiler: str | None, api_key: str | None) -> ResolvedBudget:
    """The percentile of the calibration networks' measured medians, read from the calibration (a yaml export
    carries them) or asked of the device at ``profiler``."""
    if not calibration:
        raise _needs_calibration(budget, "this table has no calibration")
    if scope := fitted_elsewhere(calibration, space):
        raise _needs_calibration(budget, f"its calibration was fitted on {scope.get('space')} @ "
                                         f"{scope.get('resolution')} px, not on {space.name} @ {space.resolution} px")
    if calibration.get("network_ms") or not profiler:
        medians = measured_ms(calibration)
    else:
        from search_client.remote.profiler_client import ProfilerClient

        with ProfilerClient(profiler, api_key=api_key) as client:
            medians = measured_ms(calibration, client)
    if not medians:
        raise ValueError(f"--max-ms {budget.text} needs the measured latencies of the random nets the table's "
                         "calibration was fitted on, and this table carries none (search with --profiler and "
                         "--table, or from the service's yaml export, which carries them)")
    return resolve_percentile(budget, medians)


def resolve_for_checkpoint(budget: Percentile, ckpt_path) -> ResolvedBudget:
    """For ``derive``: the calibration the search used, and the service its table came from."""
    from search_client.engine import checkpoint, search

    ckpt = checkpoint.load(ckpt_path, search.CKPT_KIND)
    config = search.SearchConfig.from_dict(ckpt["config"])
    space = search.make_space(config, ckpt["num_classes"])
    source = (ckpt.get("table") or {}).get("source") or ""
    return resolve_for_calibration(budget, ckpt.get("calibration"), space,
                             profiler=source if source.startswith(("http://", "https://")) else None,
                             api_key=os.environ.get("PROFILER_API_KEY"))


__all__ = ["MAX_MS_HELP", "resolve_for_calibration", "resolve_for_checkpoint", "resolve_for_table",
           "take_percentile"]
