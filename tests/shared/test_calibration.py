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


IDENT = "identity-input:8x8x16-output:8x8x16"


def _varied(rng, n):
    """Networks whose op count varies (identity layers are skips), as in a small-input space."""
    table = {KEYS["a"]: 0.05, KEYS["b"]: 0.12, KEYS["c"]: 0.02, IDENT: 0.0}
    nets = [[KEYS["c"]] + [KEYS[rng.choice(["a", "b"])] if rng.random() < 0.6 else IDENT for _ in range(12)]
            for _ in range(n)]
    return table, nets


def test_a_cost_per_op_is_found_where_the_evidence_holds_it():
    """Small inputs: a fixed cost per op boundary that no kernel time sees; a factor cannot carry it."""
    rng = np.random.default_rng(3)
    table, nets = _varied(rng, 50)

    def truth(keys):  # 0.1 ms per network, 0.015 ms per op with a kernel (identity has none)
        return 0.1 + sum(1.1 * table[k] + (0.015 if k != IDENT else 0.0) for k in keys)

    calib, unseen = nets[:20], nets[20:]
    noise = 1 + rng.normal(0, 0.005, len(calib))
    cal = fit(calib, [truth(k) * e for k, e in zip(calib, noise, strict=True)], table)
    assert cal.model.endswith("per-op") and cal.per_op_ms == pytest.approx(0.015, rel=0.15)
    assert set(cal.candidates) == {"one-factor", "affine", "affine+per-op", "group", "group+per-op"}
    assert cal.candidates[cal.model] == cal.loo_rmspe < cal.candidates["affine"]
    pred = [cal.predict(k, table) for k in unseen]
    assert error_stats(pred, [truth(k) for k in unseen])["rmspe"] < 0.01
    factor = fit(calib, [truth(k) for k in calib], table, models=("one-factor",))
    assert error_stats([factor.predict(k, table) for k in unseen], [truth(k) for k in unseen])["rmspe"] > 0.03
    assert Calibration.from_dict(cal.to_dict()).predict(unseen[0], table) == pytest.approx(pred[0])
    # the identity op pays no boundary: it has no kernel in the network
    assert cal.op_ms(IDENT, 0.0) == 0.0 and cal.op_ms(KEYS["a"], 0.0) == pytest.approx(cal.per_op_ms)


def test_a_plain_factor_is_kept_when_nothing_more_is_evidenced():
    rng = np.random.default_rng(4)
    table, nets = _nets(rng, 20)
    cal = fit(nets, [1.3 * sum(table[k] for k in keys) for keys in nets], table)
    assert cal.model == "one-factor" and cal.intercept_ms == 0.0 and cal.per_op_ms == 0.0
    assert cal.scale == pytest.approx(1.3)


def test_a_v1_calibration_still_reads():
    v1 = {"form": "intercept+group-scale/v1", "version": 2, "intercept_ms": 0.5, "scale": 1.1,
          "group_scales": {"Conv": 2.0}, "n_networks": 20, "ridge": 1.0, "loo_rmspe": 0.02, "fitted_at": ""}
    cal = Calibration.from_dict(v1)
    assert cal.per_op_ms == 0.0 and cal.predict([KEYS["c"], KEYS["a"]], {KEYS["c"]: 1.0, KEYS["a"]: 1.0}) == \
        pytest.approx(0.5 + 2.0 + 1.1)
    with pytest.raises(ValueError, match="unknown calibration form"):
        Calibration.from_dict({**v1, "form": "v9"})


def test_noisy_networks_never_give_an_op_a_negative_cost():
    """Measured on a machine that swung by +-50%, a free group fit put 5x5 MBConv6 at -1.6x its table
    time; a search reading that would pick the op to make its network faster."""
    keys = {**KEYS, "d": "expanded_conv-input:8x8x16-output:8x8x16-expand:6-kernel:5-stride:1-idskip:1",
            "e": "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:5-stride:1-idskip:1", "i": IDENT}
    table = {keys["a"]: 1.0, keys["b"]: 3.0, keys["c"]: 0.5, keys["d"]: 2.0, keys["e"]: 1.4, IDENT: 0.0}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        nets = [[keys["c"]] + [keys[rng.choice(list("abdei"))] for _ in range(12)] for _ in range(20)]
        cal = fit(nets, [sum(table[k] for k in ks) * rng.uniform(0.6, 1.6) for ks in nets], table)
        assert all(v > 0 for v in cal.group_scales.values()) and cal.scale > 0 and cal.per_op_ms >= 0, seed
        assert all(cal.op_ms(k, table[k]) >= 0 for k in table)


def test_only_implausible_models_fall_back_to_the_factor():
    rng = np.random.default_rng(8)
    table, nets = _nets(rng, 12)
    # bigger networks measured faster: any slope-free model would need a negative cost somewhere
    y = [5.0 - 0.2 * len(keys) for keys in nets]
    cal = fit(nets, y, table, models=("affine",))
    assert cal.model == "one-factor" and cal.scale > 0


def test_a_floor_keeps_the_space_cheapest_network_above_zero():
    """Measured = -0.6 ms + 1.4 x the sum fits exactly, and prices a network of 0.3 ms raw below zero; told the
    space's cheapest network sums to 0.3 ms raw, the fit picks a model that prices it above zero."""
    rng = np.random.default_rng(3)
    table, nets = _nets(rng, 20)
    truth = [-0.6 + 1.4 * sum(table[k] for k in keys) for keys in nets]
    free = fit(nets, truth, table)
    assert free.intercept_ms == pytest.approx(-0.6, abs=0.05)
    assert free.intercept_ms + free.scale * 0.3 < 0
    bounded = fit(nets, truth, table, floor_ms=0.3)
    scales = [bounded.scale, *bounded.group_scales.values()]
    assert bounded.intercept_ms + min(scales) * 0.3 > 0
