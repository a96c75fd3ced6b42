"""docs/results/search_outcome.md from the search-outcome benchmark's results.json (regenerated whole)."""

from __future__ import annotations

from collections.abc import Sequence

from fill_control import format_attribution
from outcome_report import POOL_QUANTILE, format_table


def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f} points"


def verdict(rows: Sequence[dict]) -> str:
    """One sentence per searched net: its lead over raw random nets, split into the fill's part and the
    search's part."""
    parts = []
    for a in rows:
        if a["random_q"] is None or a["control_q"] is None:
            parts.append(f"{a['name']}: no comparison (no random or control net as fast)")
            continue
        lead = a["searched"] - a["random_q"]
        parts.append(f"{a['name']}: {_pts(lead)} over random nets, of which the fill (control over random) "
                     f"{_pts(a['fill_part'])} and the search (searched over control) {_pts(a['search_part'])}; "
                     f"{'beats' if a['beats_control'] else 'does not beat'} the control")
    return "\n".join(f"- {p}" for p in parts)


def page(results: dict, command: str) -> str:
    args = results["args"]
    lines = ["# Search outcome: searched nets against random nets, and against random nets through derive", "",
             f"Regenerated whole by `{command}`. Retrain: {args['train_epochs']} epoch(s) x "
             f"{args['train_images'] or 'all'} images, seeds {args['seeds']}; {args['random']} random nets; search "
             f"flags `{args['search_args']}` with `--fill {args['fill']}`; control: {args['control']} random "
             f"nets put through the same derive (projection under each budget, fill up to its ceiling).", ""]
    if args.get("quick"):
        lines += ["**This page is from `--quick`** (few nets, one seed, one short retrain): it shows the "
                  "harness runs end to end; its accuracies are too noisy to rank nets. `make bench-search` "
                  "writes the full page.", ""]
    lines += [f"Accuracies are test accuracy, the mean over seeds; 'p{POOL_QUANTILE}' is the "
              f"{POOL_QUANTILE}th percentile of the random nets measured at or under the searched net's "
              "latency (raw), or of the control nets derived under the same budget (control). The fill's part "
              "is control minus raw; the search's part is searched minus control.", ""]
    for res in results["spaces"]:
        lines += [f"## {res['space']} @{res['resolution']} on {res['dataset']}", "", "```",
                  format_table(res["searched"] + res.get("nofill", []), res["randoms"]), "```", ""]
        for algo, rows in (res.get("attribution") or {}).items():
            lines += [f"### {algo}: which part of the win is the search and which the fill", "", "```",
                      format_attribution(rows), "```", "", verdict(rows), ""]
        for algo, targets in res["targets"].items():
            lines += [f"- [{'PASS' if t['pass'] else 'FAIL'}] {algo}: {t['target']}: {t['detail']}"
                      for t in targets]
        lines.append("")
    return "\n".join(lines)


__all__ = ["page", "verdict"]
