"""Latency model on proxyless-mobile at resolution 32 with a synthetic table: hand-computed sums."""

from __future__ import annotations

import importlib.util
from datetime import datetime

import pytest
import torch

from search_client.latency.model import LatencyModel, MissingKeysError, required_keys
from shared.schemas import OpStats, TableOut
from shared.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("proxyless-mobile", resolution=32)


def cost(key: str) -> float:
    """A recognisable cost per key: depends on the op type, kernel and expand, so candidates differ."""
    parts = dict(p.split(":") for p in key.split("-")[1:])
    if key.startswith("expanded_conv"):
        return 0.1 * int(parts["kernel"]) * int(parts["expand"]) + 0.01 * int(parts["input"].split("x")[2])
    return {"Conv": 1.5, "Conv_1": 2.5, "Logits": 0.75}[key.split("-")[0]]


@pytest.fixture(scope="module")
def table(space) -> dict[str, float]:
    return {s.key: cost(s.key) for s in space.all_op_specs()}


def test_costs_and_fixed(space, table):
    m = LatencyModel(table, space)
    fixed = sum(table[s.key] for s in (*space.prefix, *space.suffix))
    assert m.fixed_ms == pytest.approx(fixed)
    assert len(m.layer_costs) == 21
    for layer, costs in zip(space.layers, m.layer_costs, strict=True):
        assert costs.shape == (len(layer.candidates),)
        for j, name in enumerate(layer.candidates):
            want = 0.0 if name == "zero" else table[layer.spec(name).key]
            assert costs[j].item() == pytest.approx(want)


def test_expected_latency_uniform_by_hand(space, table):
    m = LatencyModel(table, space)
    probs = [torch.full((len(layer.candidates),), 1 / len(layer.candidates)) for layer in space.layers]
    # by hand: fixed + per layer the mean over candidates (zero counts as 0 ms in the mean)
    want = sum(table[s.key] for s in space.fixed_specs)
    for layer in space.layers:
        ms = [0.0 if n == "zero" else table[layer.spec(n).key] for n in layer.candidates]
        want += sum(ms) / len(ms)
    assert m.expected_latency(probs).item() == pytest.approx(want, rel=1e-6)


def test_one_hot_expected_equals_predict_equals_path_sum(space, table):
    m = LatencyModel(table, space)
    choices = [layer.candidates[i % len(layer.candidates)] for i, layer in enumerate(space.layers)]
    probs = [torch.eye(len(layer.candidates))[layer.candidates.index(c)]
             for layer, c in zip(space.layers, choices, strict=True)]
    path = sum(table[s.key] for s in space.arch_specs(choices))
    assert m.predict(choices) == pytest.approx(path)
    assert m.expected_latency(probs).item() == pytest.approx(path, rel=1e-6)
    assert any(c == "zero" for c in choices)  # the path sum really skipped a zero layer


def test_two_path_sparse_probs(space, table):
    m = LatencyModel(table, space)
    probs = []
    want = m.fixed_ms
    for layer, costs in zip(space.layers, m.layer_costs, strict=True):
        p = torch.zeros(len(layer.candidates))
        p[1], p[4] = 0.7, 0.3  # the renormalised pair of a `two`-mode step
        probs.append(p)
        want += 0.7 * costs[1].item() + 0.3 * costs[4].item()
    assert m.expected_latency(probs).item() == pytest.approx(want, rel=1e-6)


def test_gradient_reaches_logits_through_softmax(space, table):
    m = LatencyModel(table, space)
    torch.manual_seed(0)
    logits = [torch.randn(len(layer.candidates), requires_grad=True) for layer in space.layers]
    probs = [torch.softmax(a, dim=-1) for a in logits]
    m.expected_latency(probs).backward()
    for a, p, c in zip(logits, probs, m.layer_costs, strict=True):
        p = p.detach()
        # d/da_j sum_i p_i c_i = p_j (c_j - E_layer)
        want = p * (c - (p * c).sum())
        assert torch.allclose(a.grad, want, atol=1e-6)
        assert a.grad.abs().sum() > 0


def test_missing_key_named(space, table):
    victim = space.layers[5].spec("7x7_MBConv6").key
    partial = {k: v for k, v in table.items() if k != victim}
    with pytest.raises(MissingKeysError) as e:
        LatencyModel(partial, space)
    assert e.value.missing == [victim]
    assert victim in str(e.value)


def test_many_missing_keys_listed_in_order(space):
    with pytest.raises(MissingKeysError) as e:
        LatencyModel({}, space)
    assert e.value.missing == required_keys(space)
    assert e.value.missing[0] in str(e.value) and "more" in str(e.value)


def test_bad_inputs(space, table):
    m = LatencyModel(table, space)
    with pytest.raises(ValueError, match="21"):
        m.expected_latency([torch.ones(6)])
    probs = [torch.ones(len(layer.candidates)) for layer in space.layers]
    probs[3] = torch.ones(2)
    with pytest.raises(ValueError, match="layer 3"):
        m.expected_latency(probs)
    with pytest.raises(ValueError, match="not a candidate"):
        m.predict(["zero"] * 21)  # the first layer has no shortcut, so no zero op


def test_from_table_uses_medians(space, table):
    entries = {k: OpStats(median_ms=v, mean_ms=v + 1, std_ms=0.1, p10_ms=v - 0.1, p90_ms=v + 0.1, count=9)
               for k, v in table.items()}
    t = TableOut(id="t1", device="box", backend="torch", threads=1, batch=1, dtype="float32",
                 updated_at=datetime(2024, 1, 1), etag="e", entries=entries)
    m = LatencyModel.from_table(t, space)
    assert m.fixed_ms == pytest.approx(LatencyModel(table, space).fixed_ms)
    t.entries.pop(required_keys(space)[2])
    with pytest.raises(MissingKeysError, match="table t1"):
        LatencyModel.from_table(t, space)


class AffineCalibration:
    """A calibration of the shape the model expects: ms = scale * raw + per-op bias, plus an intercept."""

    def __init__(self, scale: float, op_bias: float, intercept_ms: float):
        self.scale, self.op_bias, self.intercept_ms = scale, op_bias, intercept_ms

    def op_ms(self, key: str, raw_ms: float) -> float:
        return self.scale * raw_ms + self.op_bias


def test_calibrated_costs(space, table):
    cal = AffineCalibration(1.5, 0.25, 3.0)
    m = LatencyModel(table, space, calibration=cal)
    choices = ["5x5_MBConv3"] * 21
    path = space.arch_specs(choices)
    assert m.predict(choices) == pytest.approx(sum(1.5 * table[s.key] + 0.25 for s in path) + 3.0)
    zero_at = space.layers[2].candidates.index("zero")
    assert m.layer_costs[2][zero_at].item() == 0.0  # a zero op stays free under calibration


@pytest.mark.skipif(importlib.util.find_spec("shared.calibration") is None,
                    reason="shared/calibration.py not written yet")
def test_from_table_applies_shared_calibration(space, table):
    from shared.calibration import Calibration

    cal_dict = Calibration(intercept_ms=2.0, scale=1.25, group_scales={"expanded_conv:k3e6": 0.5}).to_dict()
    cal = Calibration.from_dict(cal_dict)
    entries = {k: OpStats(median_ms=v, mean_ms=v, std_ms=0, p10_ms=v, p90_ms=v, count=1)
               for k, v in table.items()}
    t = TableOut(id="t2", device="box", backend="torch", threads=1, batch=1, dtype="float32",
                 updated_at=None, etag="e", entries=entries, calibration=cal_dict)
    choices = ["3x3_MBConv6"] * 21
    want = sum(cal.op_ms(s.key, table[s.key]) for s in space.arch_specs(choices)) + cal.intercept_ms
    assert LatencyModel.from_table(t, space).predict(choices) == pytest.approx(want)
    assert want != pytest.approx(1.25 * sum(table[s.key] for s in space.arch_specs(choices)) + 2.0)  # groups
    assert LatencyModel.from_table(t, space, use_calibration=False).predict(choices) == pytest.approx(
        sum(table[s.key] for s in space.arch_specs(choices)))


def test_a_per_op_calibration_keeps_expected_latency_differentiable_and_exact(space, table):
    from shared.calibration import Calibration

    cal = Calibration(intercept_ms=0.2, scale=1.1, per_op_ms=0.03, model="affine+per-op")
    m = LatencyModel(table, space, calibration=cal)
    choices = [layer.candidates[-1] for layer in space.layers]  # zero where a layer has one
    keys = [s.key for s in space.arch_specs(choices)]
    assert m.predict(choices) == pytest.approx(cal.predict(keys, table))
    logits = [torch.zeros(len(layer.candidates), requires_grad=True) for layer in space.layers]
    one_hot = [torch.eye(len(layer.candidates))[-1] * 1000.0 for layer in space.layers]
    lat = m.expected_latency([torch.softmax(lg + oh, 0) for lg, oh in zip(logits, one_hot, strict=True)])
    assert lat.item() == pytest.approx(m.predict(choices), rel=1e-4)
    torch.softmax(logits[2], 0).mul(m.layer_costs[2]).sum().backward()
    assert logits[2].grad is not None and logits[2].grad.abs().sum() > 0
    zero_at = space.layers[2].candidates.index("zero")
    assert m.layer_costs[2][zero_at].item() == 0.0  # a skipped layer pays no per-op cost


def test_a_calibration_of_another_size_is_not_applied(space, table):
    from shared.calibration import Calibration

    entries = {k: OpStats(median_ms=v, mean_ms=v, std_ms=0, p10_ms=v, p90_ms=v, count=1) for k, v in table.items()}
    cal = Calibration(intercept_ms=2.0, scale=1.25).to_dict()

    def model(scope):
        t = TableOut(id="t3", device="box", backend="onnxruntime", threads=1, batch=1, dtype="float32",
                     updated_at=None, etag="e", entries=entries, calibration={**cal, "scope": scope})
        return LatencyModel.from_table(t, space)

    here = {"space": "proxyless-mobile", "resolution": 32, "width_mult": 1.0, "num_classes": 1000}
    choices = ["3x3_MBConv6"] * 21
    raw = sum(table[s.key] for s in space.arch_specs(choices))
    assert model(here).predict(choices) == pytest.approx(1.25 * raw + 2.0)
    assert model({**here, "resolution": 224}).predict(choices) == pytest.approx(raw)


def test_a_negative_intercept_is_kept_while_every_network_costs_time(space, table):
    """An intercept below minus the fixed ops is a fit's offset, not a latency: accepted while the cheapest
    network stays above 0 ms (a 28 px fit put fixed ops + intercept at -0.08 ms and the search refused it)."""
    from search_client.latency.values import BadLatencyError

    fixed = sum(table[s.key] for s in (*space.prefix, *space.suffix))
    probe = LatencyModel(table, space)
    cheapest = probe.fixed_ms + sum(float(c.min()) for c in probe.layer_costs)
    offset = -(fixed + 0.5 * (cheapest - fixed))  # below the fixed ops, above the cheapest net
    model = LatencyModel(table, space, calibration=AffineCalibration(1.0, 0.0, offset))
    assert model.fixed_ms < 0
    choices = ["3x3_MBConv3"] * 21
    assert model.predict(choices) == pytest.approx(probe.predict(choices) + offset)
    with pytest.raises(BadLatencyError, match="cheapest network"):
        LatencyModel(table, space, calibration=AffineCalibration(1.0, 0.0, -1.01 * cheapest))
