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
    assert got.item() == pytest.approx(0.2 * 2.0 * (math.log(120) / math.log(80)) ** 0.3)


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


@pytest.mark.parametrize("target", [0, -3, float("nan")])
def test_target_must_be_positive(target):
    with pytest.raises(ValueError, match="positive"):
        latency_loss(torch.tensor(1.0), 10.0, kind="add#linear", target_ms=target)


def test_mul_log_target_one_rejected():
    with pytest.raises(ValueError, match="log"):
        latency_loss(torch.tensor(1.0), 10.0, kind="mul#log", target_ms=1.0)
    # add#linear has no log, so 1 ms is a fine target there
    assert latency_loss(torch.tensor(1.0), 1.0, kind="add#linear", target_ms=1.0).item() == pytest.approx(1.0)


def test_mul_log_across_one_ms_is_an_error_not_nan():
    with pytest.raises(ValueError, match="same side of 1 ms"):
        latency_loss(torch.tensor(1.0), 0.5, kind="mul#log", target_ms=20.0)


def test_unknown_kind():
    with pytest.raises(ValueError, match="mul#exp"):
        latency_loss(torch.tensor(1.0), 10.0, kind="mul#exp", target_ms=20.0)
