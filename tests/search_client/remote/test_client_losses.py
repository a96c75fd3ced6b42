"""The two latency-regularised losses of ProxylessNAS, checked against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from search_client.latency.losses import MS, US, latency_loss, mul_log_unit


def test_mul_log_is_the_original_formula_on_milliseconds():
    ce = torch.tensor(2.0)
    lat = torch.tensor(120.0, requires_grad=True)
    got = latency_loss(ce, lat, kind="mul#log", target_ms=80.0)
    # the original: alpha * CE * (log E[LAT] / log T) ** beta with both in ms
    ratio = math.log(120.0) / math.log(80.0)
    assert got.item() == pytest.approx(0.2 * 2.0 * ratio**0.3)
    got.backward()
    # its latency pressure: d/dE = alpha * CE * beta * ratio ** (beta - 1) / (E * log T), not 0.39x of it
    assert lat.grad.item() == pytest.approx(0.2 * 2.0 * 0.3 * ratio ** -0.7 / (120.0 * math.log(80.0)))


def test_mul_log_unit_is_ms_where_the_original_is_defined():
    assert mul_log_unit(80.0) == MS and mul_log_unit(80.0, 20.0) == MS
    assert mul_log_unit(80.0, 0.6) == US  # the space reaches under 1 ms: log(ms) would go negative
    assert mul_log_unit(0.5) == US and mul_log_unit(1.0) == US


def test_add_linear_formula():
    ce = torch.tensor(2.0)
    got = latency_loss(ce, 60.0, kind="add#linear", target_ms=80.0, lam=0.5)
    assert got.item() == pytest.approx(2.0 + 0.5 * (60 - 80) / 80)


def test_on_target_mul_log_is_alpha_ce():
    ce = torch.tensor(1.3)
    assert latency_loss(ce, 80.0, kind="mul#log", target_ms=80.0).item() == pytest.approx(0.2 * 1.3)


@pytest.mark.parametrize("kind", ["mul#log", "add#linear"])
def test_gradient_pushes_latency_down(kind):
    ce = torch.tensor(1.0, requires_grad=True)
    lat = torch.tensor(100.0, requires_grad=True)
    latency_loss(ce, lat, kind=kind, target_ms=50.0).backward()
    assert lat.grad.item() > 0 and ce.grad.item() > 0


def test_sub_millisecond_target_both_sides_below_one():
    loss = latency_loss(torch.tensor(1.0), 0.4, kind="mul#log", target_ms=0.5)
    assert math.isfinite(loss.item())


@pytest.mark.parametrize(("lat", "target"), [(0.3, 0.5), (0.7, 0.5), (0.5, 20.0), (30.0, 0.5), (120.0, 80.0)])
def test_mul_log_never_rewards_a_slower_net(lat, target):
    # in ms logs, E=0.3 and T=0.5 gave dloss/dE = -0.196: the search was pushed toward slower nets; the
    # search picks the unit from the target and the fastest latency it can reach (here: lat at worst)
    e = torch.tensor(lat, requires_grad=True)
    unit = mul_log_unit(target, min(lat, target))
    latency_loss(torch.tensor(1.0), e, kind="mul#log", target_ms=target, log_unit_ms=unit).backward()
    assert e.grad.item() > 0


@pytest.mark.parametrize("target", [0, -3, float("nan")])
def test_target_must_be_positive(target):
    with pytest.raises(ValueError, match="positive"):
        latency_loss(torch.tensor(1.0), 10.0, kind="add#linear", target_ms=target)


def test_mul_log_target_of_one_microsecond_rejected():
    assert math.isfinite(latency_loss(torch.tensor(1.0), 10.0, kind="mul#log", target_ms=1.0).item())
    with pytest.raises(ValueError, match="microseconds"):
        latency_loss(torch.tensor(1.0), 10.0, kind="mul#log", target_ms=0.001)
    # add#linear has no log, so any positive target is fine there
    assert latency_loss(torch.tensor(1.0), 1.0, kind="add#linear", target_ms=1.0).item() == pytest.approx(1.0)


def test_mul_log_outside_its_unit_is_an_error_not_nan():
    with pytest.raises(ValueError, match="microseconds"):
        latency_loss(torch.tensor(1.0), 0.0005, kind="mul#log", target_ms=20.0, log_unit_ms=US)
    with pytest.raises(ValueError, match="milliseconds"):
        latency_loss(torch.tensor(1.0), 0.5, kind="mul#log", target_ms=20.0)


def test_unknown_kind():
    with pytest.raises(ValueError, match="mul#exp"):
        latency_loss(torch.tensor(1.0), 10.0, kind="mul#exp", target_ms=20.0)
