"""max_ms: the greedy projection of the argmax under the limit, the feasibility check, the penalty."""

from __future__ import annotations

import pytest
import torch

from search_client.latency.constraint import InfeasibleLimitError, over_limit_penalty, project_under

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
    assert float(pen) == 0.0 and not pen.requires_grad
    # two-path E under the limit, full E over: the penalty is the full one, its gradient goes to the pair
    two = torch.tensor(10.0, requires_grad=True)
    pen = over_limit_penalty(two, 20.0, 2.0, full_ms=torch.tensor(30.0))
    pen.backward()
    assert float(pen) == pytest.approx(1.0) and float(two.grad) == pytest.approx(0.1)
