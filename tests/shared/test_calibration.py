import numpy as np
import pytest

from shared.calibration import Calibration, error_stats, fit, fit_scale, group_of

KEYS = {
    "a": "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1",
    "b": "expanded_conv-input:8x8x16-output:8x8x16-expand:6-kernel:7-stride:1-idskip:1",
    "c": "Conv-input:16x16x3-output:8x8x16",
}


def _nets(rng, n):
    table = {KEYS["a"]: 1.0, KEYS["b"]: 3.0, KEYS["c"]: 0.5}
    nets = [[KEYS["c"]] + [KEYS[rng.choice(["a", "b"])] for _ in range(rng.integers(2, 9))] for _ in range(n)]
    return table, nets


def test_group_of():
    assert group_of(KEYS["a"]) == "expanded_conv:k3e3"
    assert group_of(KEYS["c"]) == "Conv"


def test_fit_recovers_a_known_model():
    rng = np.random.default_rng(0)
    table, nets = _nets(rng, 20)
    # Truth: 0.4 ms per-network overhead, 3x3 ops run 10% slower in a network, 7x7 ops 25% slower.
    truth = [0.4 + sum({KEYS["a"]: 1.1, KEYS["b"]: 3.75, KEYS["c"]: 0.5}[k] for k in keys) for keys in nets]
    cal = fit(nets, truth, table)
    pred = [cal.predict(keys, table) for keys in nets]
    assert error_stats(pred, truth)["rmspe"] < 0.01
    raw = error_stats([sum(table[k] for k in keys) for keys in nets], truth)
    assert raw["rmspe"] > 0.1
    again = Calibration.from_dict(cal.to_dict())
    assert again.predict(nets[0], table) == pytest.approx(pred[0])


def test_fit_scale_baseline():
    rng = np.random.default_rng(1)
    table, nets = _nets(rng, 10)
    truth = [1.2 * sum(table[k] for k in keys) for keys in nets]
    assert fit_scale(nets, truth, table) == pytest.approx(1.2)


def test_fit_needs_networks_and_keys():
    with pytest.raises(ValueError, match="at least 3"):
        fit([[KEYS["a"]]], [1.0], {KEYS["a"]: 1.0})
    with pytest.raises(ValueError, match="lacks"):
        fit([[KEYS["a"]]] * 3, [1.0] * 3, {})
