"""Calibrated latency model: from a table's op sum to a network's measured latency.

Form: ``T(net) = intercept + sum_op scale[group(op)] * table[op]``. The intercept is the per-network
cost an op-by-op sum cannot see (one session call instead of one per op); the per-group scales carry
what isolated timing gets wrong per kind of op (cache state, fusion at block edges). It is linear in
the op latencies, so the expected latency over architecture probabilities stays differentiable.

The group scales and the intercept are fitted by ridge regression pulled toward the one-global-factor
model (every scale equal, no intercept), with the strength chosen by leave-one-out error on the
calibration networks: with 10-20 networks a free scale per group would overfit, and a single factor
leaves per-kind bias in place. At the strongest ridge the model is the one-factor baseline, so
leave-one-out only moves away from it where that predicts better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

FORM = "intercept+group-scale/v1"
_LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e6)


def group_of(key: str) -> str:
    """Op group: type, plus kernel and expand for the searchable convolutions."""
    op_type, *parts = key.split("-")
    fields = dict(p.split(":", 1) for p in parts if ":" in p)
    if "kernel" in fields:
        tag = f"{op_type}:k{fields['kernel']}"
        return tag + (f"e{fields['expand']}" if "expand" in fields else "")
    return op_type


@dataclass
class Calibration:
    intercept_ms: float
    scale: float
    group_scales: dict[str, float] = field(default_factory=dict)
    version: int = 1
    n_networks: int = 0
    ridge: float = 0.0
    loo_rmspe: float | None = None
    fitted_at: str = ""
    form: str = FORM

    def op_ms(self, key: str, raw_ms: float) -> float:
        return self.group_scales.get(group_of(key), self.scale) * raw_ms

    def predict(self, keys: Sequence[str], table: Mapping[str, float]) -> float:
        return self.intercept_ms + sum(self.op_ms(k, table[k]) for k in keys)

    def to_dict(self) -> dict:
        return {"form": self.form, "version": self.version, "intercept_ms": self.intercept_ms,
                "scale": self.scale, "group_scales": dict(self.group_scales), "n_networks": self.n_networks,
                "ridge": self.ridge, "loo_rmspe": self.loo_rmspe, "fitted_at": self.fitted_at}

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        if d.get("form", FORM) != FORM:
            raise ValueError(f"unknown calibration form {d.get('form')!r}; this code reads {FORM!r}")
        return cls(intercept_ms=float(d["intercept_ms"]), scale=float(d["scale"]),
                   group_scales={k: float(v) for k, v in d.get("group_scales", {}).items()},
                   version=int(d.get("version", 1)), n_networks=int(d.get("n_networks", 0)),
                   ridge=float(d.get("ridge", 0.0)), loo_rmspe=d.get("loo_rmspe"),
                   fitted_at=d.get("fitted_at", ""))


def _features(nets: Sequence[Sequence[str]], table: Mapping[str, float], groups: list[str]) -> np.ndarray:
    idx = {g: i for i, g in enumerate(groups)}
    x = np.zeros((len(nets), len(groups)))
    for n, keys in enumerate(nets):
        for k in keys:
            x[n, idx[group_of(k)]] += table[k]
    return x


def _solve(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, np.ndarray, float]:
    """Relative-error least squares for (intercept, group scales), ridge-pulled toward the one-factor model.

    The prior is the one global factor with no intercept: with networks whose op sums differ by only
    tens of percent, a free intercept is poorly determined, so it too must earn its way out of zero.
    """
    s0 = _one_factor(x.sum(1), y)
    w = 1.0 / y  # rows scaled so the residual is relative
    design = np.concatenate([np.ones((len(y), 1)), x], 1) * w[:, None]
    # The intercept is penalised as a fraction of a typical network, the scales as deviations from s0.
    reg = np.sqrt(lam) * np.diag(np.concatenate([[1.0 / np.median(y)], np.ones(x.shape[1])]))
    prior = np.sqrt(lam) * np.concatenate([[0.0], np.full(x.shape[1], s0)])
    beta = np.linalg.lstsq(np.concatenate([design, reg]), np.concatenate([y * w, prior]), rcond=None)[0]
    return float(beta[0]), beta[1:], s0


def _one_factor(sums: np.ndarray, y: np.ndarray) -> float:
    r = sums / y
    return float(r.sum() / np.square(r).sum())


def fit(nets: Sequence[Sequence[str]], measured_ms: Sequence[float], table: Mapping[str, float],
        version: int = 1) -> Calibration:
    """Fit from networks (their op keys) and their measured medians; needs at least 3 networks."""
    if len(nets) != len(measured_ms) or len(nets) < 3:
        raise ValueError(f"need at least 3 measured networks to calibrate, got {len(nets)}")
    missing = sorted({k for keys in nets for k in keys if k not in table})
    if missing:
        raise ValueError(f"table lacks {len(missing)} keys the calibration networks use: {missing[:5]}")
    groups = sorted({group_of(k) for keys in nets for k in keys})
    x, y = _features(nets, table, groups), np.asarray(measured_ms, dtype=float)
    best: tuple[float, float] | None = None
    for lam in _LAMBDAS:
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            c, g, _ = _solve(x[keep], y[keep], lam)
            errs.append((c + x[i] @ g) / y[i] - 1)
        rmspe = float(np.sqrt(np.mean(np.square(errs))))
        if best is None or rmspe < best[0]:
            best = (rmspe, lam)
    rmspe, lam = best
    c, g, s0 = _solve(x, y, lam)
    return Calibration(intercept_ms=c, scale=s0, group_scales=dict(zip(groups, map(float, g), strict=True)),
                       version=version, n_networks=len(y), ridge=lam, loo_rmspe=rmspe,
                       fitted_at=datetime.now(UTC).isoformat(timespec="seconds"))


def fit_scale(nets: Sequence[Sequence[str]], measured_ms: Sequence[float], table: Mapping[str, float]) -> float:
    """The one-global-factor baseline: measured ~ factor * sum (relative least squares)."""
    s = np.array([sum(table[k] for k in keys) for keys in nets])
    return _one_factor(s, np.asarray(measured_ms, dtype=float))


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = p / m - 1
    return {"n": len(m), "rmse_ms": float(np.sqrt(np.mean(np.square(p - m)))),
            "rmspe": float(np.sqrt(np.mean(np.square(rel)))), "mean_pe": float(rel.mean()),
            "within_5": float(np.mean(np.abs(rel) <= 0.05)), "within_10": float(np.mean(np.abs(rel) <= 0.10))}
