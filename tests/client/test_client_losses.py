"""The two latency-regularised losses of ProxylessNAS, checked against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from search_client.latency.losses import latency_loss


def test_mul_log_formula():
    ce = torch.tensor(2.0)
    lat = torch.tensor(120.0)
    got = latency_loss(ce, lat, kind="mul#log", target_ms=80.0)
    # logs in microseconds (see the module doc): the ratio is log(120,000 us) / log(80,000 us)
    assert got.item() == pytest.approx(0.2 * 2.0 * (math.log(120_000) / math.log(80_000)) ** 0.3)


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
    # in ms logs, E=0.3 and T=0.5 gave dloss/dE = -0.196: the search was pushed toward slower nets
    e = torch.tensor(lat, requires_grad=True)
    latency_loss(torch.tensor(1.0), e, kind="mul#log", target_ms=target).backward()
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


def test_mul_log_under_one_microsecond_is_an_error_not_nan():
    with pytest.raises(ValueError, match="microseconds"):
        latency_loss(torch.tensor(1.0), 0.0005, kind="mul#log", target_ms=20.0)


def test_unknown_kind():
    with pytest.raises(ValueError, match="mul#exp"):
        latency_loss(torch.tensor(1.0), 10.0, kind="mul#exp", target_ms=20.0)
