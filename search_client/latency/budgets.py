"""Several devices (or runtimes) at once: one search whose derived net must meet a budget on each.

ProxylessNAS searches against one latency table. A user who ships one net to two devices needs it to
meet both budgets, so beside the search's first table (its ``max_ms``) it can hold more tables, each
with its own hard limit. During the search each adds its own over-limit hinge on its own E[LAT]
(``constraint.over_limit_penalty``); after it, the argmax is projected under all of them at once and
filled (when asked) while it stays under every ceiling.

The joint projection reuses ``constraint``'s greedy swaps on the *normalised* latency: a net's
prediction on table t divided by that table's limit, and the worst of them is what must stay <= 1. A
candidate's cost in a layer is likewise its worst normalised cost over the tables, which only says
which swaps are cheaper; every step is checked with the exact joint prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from search_client.latency.constraint import Predict, over_limit_penalty
from search_client.latency.model import LatencyModel


@dataclass
class TableBudget:
    """One more table (by where it came from) and the hard limit on its prediction of the derived net."""

    label: str  # e.g. "litert-int8 table 3f2a... at http://board:8000"
    entries: dict[str, float]
    calibration: dict | None
    max_ms: float
    profiler: str | None = None  # where the table lives, to --measure the derived net there
    table_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TableBudget:
        return cls(**d)


@dataclass
class Limit:
    """A latency model and its hard limit (the search's own table, or a ``TableBudget``'s)."""

    label: str
    lat: LatencyModel
    max_ms: float


def joint_costs(limits: Sequence[Limit]) -> list[torch.Tensor]:
    """Per layer (n_candidates,): each candidate's worst cost over the tables, each over its own limit."""
    layers = len(limits[0].lat.layer_costs)
    return [torch.stack([lim.lat.layer_costs[i].detach().cpu() / lim.max_ms for lim in limits]).max(0).values
            for i in range(layers)]


def joint_predict(limits: Sequence[Limit]) -> Predict:
    """choices -> the worst prediction over the tables, each over its own limit (<= 1 meets every budget)."""
    return lambda choices: max(lim.lat.predict(choices) / lim.max_ms for lim in limits)


def predictions(limits: Sequence[Limit], choices: list[str]) -> dict[str, float]:
    return {lim.label: lim.lat.predict(choices) for lim in limits}


def extra_penalty(limits: Sequence[Limit], probs: list[torch.Tensor], full: list[torch.Tensor], weight: float,
                  like: torch.Tensor) -> torch.Tensor:
    """The over-limit hinge of every extra table, each on its own E[LAT]: the gradient through ``probs``
    (this step's), the hinge decided on ``full`` (the full softmax's), as for the first table."""
    total = like.new_zeros(())
    for lim in limits:
        expected = lim.lat.expected_latency(probs)
        with torch.no_grad():
            full_ms = lim.lat.expected_latency(full)
        total = total + over_limit_penalty(expected, lim.max_ms, weight, full_ms).to(like.device)
    return total
