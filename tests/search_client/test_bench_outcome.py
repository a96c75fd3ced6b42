"""The search-outcome benchmark's verdicts (bench/outcome_report.py) and per-stage view (bench/stage_view.py):
pure functions of measured figures, so a wrong PASS cannot hide behind a long run."""

from __future__ import annotations

import pytest
from outcome_report import check_targets, format_noise, format_table, noise_figures, plot, pool_quantile
from stage_view import format_stages, plot_nets, stage_summary

from shared.spaces import get_space


def _rand(ms: float, acc: float) -> dict:
    return {"name": f"r{ms}", "kind": "random", "choices": [str(ms)], "measured_ms": ms, "accs": [acc, acc]}


RANDOMS = [_rand(ms, acc) for ms, acc in [(0.10, 0.80), (0.12, 0.70), (0.15, 0.90), (0.20, 0.85), (0.25, 0.95)]]


def _searched(label: str, budget: float, ms: float, acc: float, choices=None) -> dict:
    return {"name": f"grad {label}", "kind": "grad", "budget_label": label, "budget_ms": budget,
            "measured_ms": ms, "accs": [acc - 0.01, acc + 0.01], "choices": choices or [label],
            "predicted_ms": ms}


def test_all_targets_met():
    res = check_targets([_searched("p25", 0.13, 0.125, 0.81), _searched("p50", 0.16, 0.155, 0.92),
                         _searched("p75", 0.22, 0.21, 0.91)], RANDOMS)
    assert [t["pass"] for t in res] == [True, True, True]
    assert all(t["pass"] for t in check_targets([_searched("p25", 0.13, 0.125, 0.81)], RANDOMS))


def test_latency_over_budget_beyond_noise_fails():
    res = check_targets([_searched("p25", 0.13, 0.137, 0.95)], RANDOMS)  # 1.054x the budget
    assert not res[0]["pass"]
    assert check_targets([_searched("p25", 0.13, 0.136, 0.95)], RANDOMS)[0]["pass"]  # 1.046x: noise


def test_order_follows_budgets_not_list_order():
    rows = [_searched("p75", 0.22, 0.15, 0.99), _searched("p25", 0.13, 0.12, 0.99),
            _searched("p50", 0.16, 0.16, 0.99)]
    assert not check_targets(rows, RANDOMS)[1]["pass"]  # p50 measures 0.16 > p75's 0.15
    same = [_searched("p50", 0.16, 0.16, 0.99, ["a"]), _searched("p75", 0.22, 0.155, 0.99, ["a"])]
    assert check_targets(same, RANDOMS)[1]["pass"]  # one net at two budgets: noise, not disorder


def test_accuracy_compares_only_random_nets_not_slower():
    # at 0.16 ms the pool is the nets at 0.10, 0.12, 0.15 ms (acc 0.80, 0.70, 0.90): p75 = 0.85
    row = _searched("p50", 0.16, 0.16, 0.86)
    assert pool_quantile(row, RANDOMS) == pytest.approx(0.85)
    assert check_targets([row], RANDOMS)[2]["pass"]
    assert not check_targets([_searched("p50", 0.16, 0.16, 0.84)], RANDOMS)[2]["pass"]


def test_no_random_net_as_fast_is_not_a_pass():
    res = check_targets([_searched("p25", 0.13, 0.05, 0.99)], RANDOMS)
    assert not res[2]["pass"] and "cannot compare" in res[2]["detail"]


def test_noise_figures_separate_seed_noise_from_spread_between_nets():
    # seeds 4 points apart in each net (sd 0.02 * sqrt 2), means 6 points apart (sd 0.06 / sqrt 2)
    f = noise_figures({"a": [0.78, 0.82], "b": [0.84, 0.88]})
    assert f["mean"] == pytest.approx(0.83)
    assert f["within_sd"] == pytest.approx(0.02 * 2**0.5)
    assert f["between_sd"] == pytest.approx(0.06 / 2**0.5)
    assert f["ratio"] == pytest.approx(0.06 / 2**0.5 / 0.02)  # a seed mean's noise: within / sqrt(2 seeds)
    assert noise_figures({"a": [0.8, 0.84], "b": [0.8, 0.84]})["ratio"] == pytest.approx(0.0)


def test_noise_line_needs_two_seeds_and_two_nets():
    rows = [{"name": "r0", "accs": [0.8, 0.82]}, {"name": "r1", "accs": [0.9, 0.88]}]
    assert "ratio" in format_noise(rows)
    assert format_noise(rows[:1]) is None
    assert format_noise([{"name": "r0", "accs": [0.8]}, {"name": "r1", "accs": [0.9]}]) is None


def test_table_and_plot(tmp_path):
    rows = [_searched("p25", 0.13, 0.125, 0.81)]
    text = format_table(rows, RANDOMS)
    assert "grad p25" in text and "random nets (5)" in text
    png = plot(tmp_path / "o.png", [{"title": "t", "randoms": RANDOMS, "searched": rows,
                                     "budgets": [("p25", 0.13)]}])
    assert png.stat().st_size > 1000


def test_stage_summary_mobile(tmp_path):
    space = get_space("proxyless-mobile", 32, 1.0, 10)
    choices = [layer.candidates[-1] for layer in space.layers]  # zero where it exists, else 7x7_MBConv6
    rows = stage_summary(space, choices)
    assert [r["width"] for r in rows] == [24, 40, 80, 96, 192, 320]
    assert [r["layers"] for r in rows] == [4, 4, 4, 4, 4, 1]
    assert [r["depth"] for r in rows] == [1, 1, 1, 1, 1, 1]  # every shortcut layer skipped
    assert rows[0]["mean_kernel"] == 7 and rows[0]["mean_expand"] == 6
    assert "w24" in format_stages(space, {"a": rows})
    assert plot_nets(tmp_path / "s.png", space, {"a": choices}, {"a": rows}, "t").stat().st_size > 1000


def test_stage_summary_cifar_counts_identity_as_skip():
    space = get_space("proxyless-cifar", 32, 1.0, 10)
    choices = ["identity" if "identity" in layer.candidates else "5x5_SepConv" for layer in space.layers]
    rows = stage_summary(space, choices)
    assert [r["depth"] for r in rows] == [0, 1, 1]  # the first stage keeps its width, so all may skip
    assert rows[1]["mean_kernel"] == 5 and rows[1]["mean_expand"] is None


# ---- the control: random nets through the same derive ----------------------------------------------

def test_control_puts_a_random_net_through_projection_and_fill():
    import torch
    from fill_control import control_choices, peaked_probs

    names = [("big", "mid", "zero"), ("big", "small")]
    costs = [torch.tensor([10.0, 6.0, 0.0]), torch.tensor([8.0, 2.0])]

    def predict(choices):
        return 1.0 + sum(float(c[n.index(x)]) for n, c, x in zip(names, costs, choices, strict=True))

    probs = peaked_probs(names, ["mid", "small"])
    assert [int(p.argmax()) for p in probs] == [1, 1] and all(abs(float(p.sum()) - 1) < 1e-9 for p in probs)
    # over the budget: projected under it by derive's rule (the least log-probability per ms saved: layer 1
    # first, 0.41 nats for 6 ms, then layer 0 to zero, 1.1 nats for 10 ms); under it with no ceiling: left
    # alone; with a ceiling: filled up
    assert control_choices(names, costs, predict, ["big", "big"], 12.0, None) == (["zero", "small"], 3.0)
    assert control_choices(names, costs, predict, ["zero", "small"], 20.0, None) == (["zero", "small"], 3.0)
    filled, ms = control_choices(names, costs, predict, ["zero", "small"], 20.0, 19.0)
    assert 3.0 < ms <= 19.0 and ms == predict(filled)


def test_attribution_splits_the_lead_into_fill_and_search():
    from fill_control import attribution, format_attribution
    from outcome_page import page

    controls = [dict(_searched("p25", 0.13, 0.12, acc), name=f"c{i}", kind="control")
                for i, acc in enumerate([0.82, 0.84, 0.86, 0.88])]
    row = _searched("p25", 0.13, 0.125, 0.90)
    (a,) = attribution([row], controls, RANDOMS)
    # random nets at <= 0.125 ms: 0.80 and 0.70 -> p75 0.775; controls' p75 0.865
    assert a["random_q"] == pytest.approx(0.775) and a["control_q"] == pytest.approx(0.865)
    assert a["fill_part"] == pytest.approx(0.09) and a["search_part"] == pytest.approx(0.035) and a["beats_control"]
    assert "beats control" in format_attribution([a])
    results = {"args": {"train_epochs": 1, "train_images": 256, "seeds": [0], "random": 5, "search_args": "",
                        "fill": 0.9, "control": 4, "quick": True},
               "spaces": [{"space": "proxyless-mobile", "resolution": 28, "dataset": "mnist", "searched": [row],
                           "nofill": [], "randoms": RANDOMS, "attribution": {"grad": [a]},
                           "targets": {"grad": check_targets([row], RANDOMS)}}]}
    text = page(results, "make bench-search QUICK=1")
    assert "which part of the win is the search" in text and "from `--quick`" in text
    assert "fill (control over random) +9.0 points and the search (searched over control) +3.5 points" in text
