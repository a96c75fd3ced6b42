"""The search-outcome benchmark's control: random nets put through the same derive as the searched ones.

Derive does two things after the search: it projects the argmax under the budget and, with ``--fill``,
spends what the budget leaves on dearer candidates (``latency.constraint``). A searched net that
beats raw random nets may owe the win to either. The control answers which: each random net becomes the
argmax of a distribution that favours it (``CONTROL_PROB`` on its choice, the rest shared equally, so
every swap away from it costs the same log-probability and derive's order is by milliseconds), and
goes through the same projection and fill under each budget. Then, at each budget:

- the fill's part: the control nets' accuracy over the raw random nets' (same pool quantile);
- the search's part: the searched net's accuracy over the control nets' (derived under that budget).

Pure functions of measured figures; rows are dicts as in ``outcome_report``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from outcome_report import POOL_QUANTILE, mean_acc, pool_quantile

from search_client.latency.constraint import choose_under

CONTROL_PROB = 0.6  # above any other candidate's share even with two candidates


def peaked_probs(names: Sequence[tuple[str, ...]], choices: Sequence[str]) -> list[torch.Tensor]:
    """Per layer: ``CONTROL_PROB`` on the chosen candidate, the rest shared equally."""
    out = []
    for n, c in zip(names, choices, strict=True):
        p = torch.full((len(n),), (1 - CONTROL_PROB) / max(len(n) - 1, 1), dtype=torch.float64)
        p[n.index(c)] = CONTROL_PROB if len(n) > 1 else 1.0
        out.append(p)
    return out


def control_choices(names: Sequence[tuple[str, ...]], costs: Sequence[torch.Tensor],
                    predict: Callable[[list[str]], float], choices: Sequence[str], budget_ms: float,
                    ceiling: float | None) -> tuple[list[str], float]:
    """A random net through derive: projected under ``budget_ms``, filled up to ``ceiling`` (None: no fill)."""
    _, filled = choose_under(list(names), peaked_probs(names, choices), list(costs), predict, budget_ms, ceiling)
    return filled.choices, filled.predicted_ms


def _q(rows: Sequence[dict]) -> float | None:
    return float(np.percentile([mean_acc(r) for r in rows], POOL_QUANTILE)) if rows else None


def attribution(searched: Sequence[dict], controls: Sequence[dict], randoms: Sequence[dict]) -> list[dict]:
    """Per searched net (one algorithm, one budget): its accuracy, the control nets' (same budget) and the raw
    random nets' at <= its measured latency, and what the fill and the search add."""
    out = []
    for r in sorted(searched, key=lambda row: row["budget_ms"]):
        ctrl = [c for c in controls if c["budget_label"] == r["budget_label"]]
        raw = pool_quantile(r, randoms)
        ctl = _q(ctrl)
        out.append({"name": r["name"], "budget_label": r["budget_label"], "searched": mean_acc(r),
                    "control_q": ctl, "random_q": raw, "controls": len(ctrl),
                    "fill_part": None if ctl is None or raw is None else ctl - raw,
                    "search_part": None if ctl is None else mean_acc(r) - ctl,
                    "beats_control": ctl is not None and mean_acc(r) >= ctl})
    return out


def format_attribution(rows: Sequence[dict]) -> str:
    def pts(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:+.2f}"

    head = (f"{'net':<16} {'acc':>7} {'control p' + str(POOL_QUANTILE):>11} {'random p' + str(POOL_QUANTILE):>10} "
            f"{'fill part':>9} {'search part':>11}  beats control")
    lines = [head, "-" * len(head)]
    for a in rows:
        lines.append(f"{a['name']:<16} {a['searched']:7.4f} "
                     f"{a['control_q'] if a['control_q'] is not None else float('nan'):11.4f} "
                     f"{a['random_q'] if a['random_q'] is not None else float('nan'):10.4f} "
                     f"{pts(a['fill_part']):>9} {pts(a['search_part']):>11}  {'yes' if a['beats_control'] else 'no'}")
    return "\n".join(lines)


__all__ = ["CONTROL_PROB", "attribution", "control_choices", "format_attribution", "peaked_probs"]
