"""max_ms: the greedy projection of the argmax under the limit, the feasibility check, the penalty."""

from __future__ import annotations

import pytest
import torch

from search_client.latency.constraint import (
    InfeasibleLimitError,
    choose_under,
    fill_ceiling,
    fill_up,
    over_limit_penalty,
    project_under,
    under_fill_penalty,
)
from search_client.latency.values import BadLatencyError

NAMES = [("big", "mid", "zero"), ("big", "small"), ("big", "small")]
COSTS = [torch.tensor([10.0, 6.0, 0.0]), torch.tensor([8.0, 2.0]), torch.tensor([8.0, 7.0])]
FIXED = 1.0


def predict(choices: list[str]) -> float:
    return FIXED + sum(float(c[n.index(x)]) for n, c, x in zip(NAMES, COSTS, choices, strict=True))


def probs(*rows: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(r) for r in rows]


def test_no_limit_or_met_limit_is_plain_argmax():
    p = probs([0.6, 0.3, 0.1], [0.9, 0.1], [0.5, 0.5])
    assert project_under(NAMES, p, COSTS, predict, None).choices == ["big", "big", "big"]
    proj = project_under(NAMES, p, COSTS, predict, 100.0)
    assert proj.choices == ["big", "big", "big"] and proj.swaps == [] and proj.predicted_ms == 27.0


def test_greedy_swaps_the_cheapest_log_probability_per_ms_until_under():
    # layer 2 is a coin toss (a swap costs 0 log-prob for 1 ms); layer 1 is sure (0.95 vs 0.05, 6 ms)
    p = probs([0.5, 0.45, 0.05], [0.95, 0.05], [0.5, 0.5])
    proj = project_under(NAMES, p, COSTS, predict, 26.0)
    assert proj.predicted_ms <= 26.0
    assert [s["layer"] for s in proj.swaps] == [2] and proj.choices == ["big", "big", "small"]
    # more needed: big -> mid on layer 0 (0.11 nats for 4 ms), then mid -> zero (2.2 nats for 6 ms)
    # beats giving up the sure layer 1 (2.9 nats for 6 ms)
    proj = project_under(NAMES, p, COSTS, predict, 20.0)
    assert [(s["layer"], s["to"]) for s in proj.swaps] == [(2, "small"), (0, "mid"), (0, "zero")]
    assert proj.choices == ["zero", "big", "small"] and proj.predicted_ms == predict(proj.choices) == 16.0


def test_infeasible_limit_is_refused_with_the_floor():
    with pytest.raises(InfeasibleLimitError, match="fastest architecture"):
        project_under(NAMES, probs([1, 0, 0], [1, 0], [1, 0]), COSTS, predict, 5.0)


def test_penalty_is_zero_under_the_limit_and_grows_over_it():
    e = torch.tensor(30.0, requires_grad=True)
    assert float(over_limit_penalty(e, 40.0, 1.0)) == 0.0
    assert float(over_limit_penalty(e, None, 1.0)) == 0.0
    pen = over_limit_penalty(e, 20.0, 2.0)
    pen.backward()
    assert float(pen) == pytest.approx(1.0) and float(e.grad) == pytest.approx(0.1)


def test_hinge_is_decided_on_the_full_expectation_with_the_two_path_gradient():
    # two-path E over the limit, full E under: no penalty, no gradient
    two = torch.tensor(30.0, requires_grad=True)
    pen = over_limit_penalty(two, 25.0, 1.0, full_ms=torch.tensor(20.0))
    pen.backward()
    assert float(pen) == 0.0 and float(two.grad) == 0.0
    # two-path E under the limit, full E over: the penalty is the full one, its gradient goes to the pair
    two = torch.tensor(10.0, requires_grad=True)
    pen = over_limit_penalty(two, 20.0, 2.0, full_ms=torch.tensor(30.0))
    pen.backward()
    assert float(pen) == pytest.approx(1.0) and float(two.grad) == pytest.approx(0.1)


def test_fill_spends_the_budget_the_projection_leaves():
    # the argmax is the cheapest net (9 ms) while the limit is 26: the budget is spent on the upgrades
    # the search found most plausible per ms (layer 2 is a coin toss; layer 1 is sure of "small")
    p = probs([0.05, 0.15, 0.8], [0.05, 0.95], [0.45, 0.55])
    proj, filled = choose_under(NAMES, p, COSTS, predict, 26.0, 26.0)
    assert proj.choices == ["zero", "small", "small"] and proj.predicted_ms == 10.0
    assert filled.predicted_ms <= 26.0 and filled.predicted_ms == predict(filled.choices)
    assert [(s["layer"], s["to"]) for s in filled.swaps][0] == (2, "big")  # 0.2 nats for 1 ms first
    # layer 0: zero -> big loses 2.77 nats for 10 ms, a hair less per ms than zero -> mid (1.67 for 6);
    # layer 1's sure "small" -> "big" (2.94 nats) would cross the ceiling
    assert filled.choices == ["big", "small", "big"] and filled.predicted_ms == 21.0
    assert all(s["saved_ms"] < 0 for s in filled.swaps)
    # a lower ceiling: "big" no longer fits on layer 0, "mid" does
    assert choose_under(NAMES, p, COSTS, predict, 26.0, 20.0)[1].choices == ["mid", "small", "big"]


def test_fill_never_crosses_its_ceiling_and_is_off_without_one():
    p = probs([0.05, 0.15, 0.8], [0.05, 0.95], [0.45, 0.55])
    assert choose_under(NAMES, p, COSTS, predict, 26.0, None)[1].choices == ["zero", "small", "small"]
    for ceiling in (10.0, 10.5, 12.0, 16.9, 26.0):
        assert fill_up(NAMES, p, COSTS, predict, ["zero", "small", "small"], ceiling).predicted_ms <= ceiling


def test_fill_ceiling_leaves_the_calibrations_own_error_as_margin():
    assert fill_ceiling(None, None, None) is None
    assert fill_ceiling(1.0, None, None) == pytest.approx(0.95)
    assert fill_ceiling(1.0, {"loo_rmspe": 0.03}, None) == pytest.approx(0.97)
    assert fill_ceiling(1.0, {"loo_rmspe": 0.4}, None) == pytest.approx(0.90)  # capped
    assert fill_ceiling(2.0, {"loo_rmspe": 0.4}, 0.0) == pytest.approx(2.0)


def test_under_fill_hinge_pulls_up_only_below_the_band():
    two = torch.tensor(5.0, requires_grad=True)
    assert float(under_fill_penalty(two, 20.0, 0.9, 1.0, full_ms=torch.tensor(19.0))) == 0.0  # in the band
    assert float(under_fill_penalty(two, 20.0, 0.0, 1.0, full_ms=torch.tensor(1.0))) == 0.0  # fill off
    assert float(under_fill_penalty(two, None, 0.9, 1.0, full_ms=torch.tensor(1.0))) == 0.0  # no limit
    pen = under_fill_penalty(two, 20.0, 0.9, 2.0, full_ms=torch.tensor(8.0))
    pen.backward()
    # value 2 * (18 - 8) / 20 = 1; its gradient lowers the loss as E[LAT] rises
    assert float(pen) == pytest.approx(1.0) and float(two.grad) == pytest.approx(-0.1)


def _nan_at(layer: int, j: int) -> list[torch.Tensor]:
    costs = [c.clone() for c in COSTS]
    costs[layer][j] = float("nan")
    return costs


@pytest.mark.parametrize("limit", [12.0, 26.0])
def test_a_nan_cost_ends_projection_and_fill_with_an_error(limit):
    """A NaN compared false with every bound: fill_up swapped between NaN candidates for ever."""
    p = probs([0.6, 0.3, 0.1], [0.9, 0.1], [0.5, 0.5])
    costs = _nan_at(1, 1)

    def nan_predict(choices: list[str]) -> float:
        return FIXED + sum(float(c[n.index(x)]) for n, c, x in zip(NAMES, costs, choices, strict=True))

    with pytest.raises(BadLatencyError, match="layer 1: the cost of small is nan"):
        choose_under(NAMES, p, costs, nan_predict, limit, limit)
    with pytest.raises(BadLatencyError, match="layer 1: the cost of small is nan"):
        fill_up(NAMES, p, costs, nan_predict, ["zero", "big", "small"], 40.0)


def test_a_nan_prediction_or_probability_or_limit_ends_it_with_an_error():
    p = probs([0.6, 0.3, 0.1], [0.9, 0.1], [0.5, 0.5])

    def calibrated(choices: list[str]) -> float:  # a calibration whose figures are no numbers on one op
        return float("nan") if "mid" in choices else predict(choices)

    with pytest.raises(BadLatencyError, match="predicted latency of layer 0 as mid is nan"):
        fill_up(NAMES, p, COSTS, calibrated, ["zero", "small", "small"], 40.0)
    with pytest.raises(BadLatencyError, match="probabilities hold NaN"):
        project_under(NAMES, probs([float("nan"), 0.3, 0.1], [0.9, 0.1], [0.5, 0.5]), COSTS, predict, 20.0)
    with pytest.raises(BadLatencyError, match="must be a finite number"):
        fill_up(NAMES, p, COSTS, predict, ["zero", "small", "small"], float("nan"))


def test_with_a_target_the_fill_pull_never_overrides_add_linear():
    """target 30 ms, limit 100 ms, E[LAT] 40 ms (under the fill band of 90 ms): add#linear's slope
    lam / T pushes E[LAT] down toward the target; the fill hinge's 1 / max_ms would pull it up."""
    from search_client.engine.config import SearchConfig
    from search_client.engine.steps import arch_loss

    with_target = SearchConfig(target_ms=30.0, max_ms=100.0, fill=0.9, loss="add#linear", reg_lambda=0.1)
    e = torch.tensor(40.0, requires_grad=True)
    arch_loss(torch.tensor(1.0), e, with_target, full_ms=torch.tensor(40.0)).backward()
    assert float(e.grad) == pytest.approx(0.1 / 30.0)
    # without a target the pull is there (when asked for): it spends the budget
    limit_only = SearchConfig(max_ms=100.0, fill=0.9)
    e = torch.tensor(40.0, requires_grad=True)
    arch_loss(torch.tensor(1.0), e, limit_only, full_ms=torch.tensor(40.0)).backward()
    assert float(e.grad) == pytest.approx(-1.0 / 100.0)
