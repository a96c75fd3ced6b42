"""Calibrated latency model: from a table's op sum to a network's measured latency.

Form: ``T(net) = intercept + sum_op (scale[group(op)] * table[op] + per_op)``. The intercept is the
per-network cost an op-by-op sum cannot see (one session call, the layout reorders at the graph's
edges); ``per_op`` is a cost per op boundary the ops' own kernel times leave out (a node dispatch, a
buffer handed on), which weighs most at small inputs where a whole network takes a fraction of a
millisecond; the per-group scales carry what timing an op alone gets wrong per kind of op. It is linear
in the op latencies (``per_op`` rides on every non-zero op), so the expected latency over architecture
probabilities stays differentiable: ``op_ms(key, raw)`` is all a latency model needs per op.

Which parts a device needs is chosen from evidence: every model below is fitted, and the one with the
lowest leave-one-out error on the calibration networks is kept (a simpler one wins a near tie):

* ``one-factor``: every op scaled by one factor, no intercept (the baseline);
* ``affine``: an intercept and one factor;
* ``affine+per-op``: an intercept, one factor and a cost per op;
* ``group`` / ``group+per-op``: an intercept and a scale per op group (+ a cost per op), by ridge
  regression pulled toward the one-factor model, the strength also chosen by leave-one-out: with 10-20
  networks a free scale per group would overfit, and at the strongest ridge it is the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

FORM = "intercept+group-scale+per-op/v2"
READS = (FORM, "intercept+group-scale/v1")  # v1 is v2 with no per-op cost
MODELS = ("one-factor", "affine", "affine+per-op", "group", "group+per-op")
_LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e6)
NEAR_TIE = 0.03  # a model must beat a simpler one's leave-one-out RMSPE by more than 3% (relative)
FREE_OPS = ("zero", "identity")  # no kernel inside a network (dropped, or removed by the optimiser)


def group_of(key: str) -> str:
    """Op group: type, plus kernel and expand for the searchable convolutions."""
    op_type, *parts = key.split("-")
    fields = dict(p.split(":", 1) for p in parts if ":" in p)
    if "kernel" in fields:
        tag = f"{op_type}:k{fields['kernel']}"
        return tag + (f"e{fields['expand']}" if "expand" in fields else "")
    return op_type


def counts_as_op(key: str) -> bool:
    return key.split("-", 1)[0] not in FREE_OPS


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
    per_op_ms: float = 0.0
    model: str = "group"
    # leave-one-out RMSPE of every model tried: the evidence the choice rests on
    candidates: dict[str, float] = field(default_factory=dict)

    def op_ms(self, key: str, raw_ms: float) -> float:
        extra = self.per_op_ms if counts_as_op(key) else 0.0
        return self.group_scales.get(group_of(key), self.scale) * raw_ms + extra

    def predict(self, keys: Sequence[str], table: Mapping[str, float]) -> float:
        return self.intercept_ms + sum(self.op_ms(k, table[k]) for k in keys)

    def rescaled(self, *, inputs: float = 1.0, outputs: float = 1.0) -> Calibration:
        """The same model once the table's figures were scaled by ``inputs`` and the networks' it was fitted on
        by ``outputs`` (a new nominal of the reference they were timed against): it predicts ``outputs`` times
        what it did from the scaled table."""
        k = outputs / inputs
        return replace(self, intercept_ms=self.intercept_ms * outputs, scale=self.scale * k,
                       group_scales={g: v * k for g, v in self.group_scales.items()},
                       per_op_ms=self.per_op_ms * outputs)

    def to_dict(self) -> dict:
        return {"form": self.form, "model": self.model, "version": self.version,
                "intercept_ms": self.intercept_ms, "scale": self.scale, "per_op_ms": self.per_op_ms,
                "group_scales": dict(self.group_scales), "n_networks": self.n_networks, "ridge": self.ridge,
                "loo_rmspe": self.loo_rmspe, "candidates": dict(self.candidates), "fitted_at": self.fitted_at}

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        if d.get("form", FORM) not in READS:
            raise ValueError(f"unknown calibration form {d.get('form')!r}; this code reads {list(READS)}")
        return cls(intercept_ms=float(d["intercept_ms"]), scale=float(d["scale"]),
                   group_scales={k: float(v) for k, v in d.get("group_scales", {}).items()},
                   version=int(d.get("version", 1)), n_networks=int(d.get("n_networks", 0)),
                   ridge=float(d.get("ridge", 0.0)), loo_rmspe=d.get("loo_rmspe"),
                   fitted_at=d.get("fitted_at", ""), per_op_ms=float(d.get("per_op_ms", 0.0)),
                   model=d.get("model", "group"), candidates=dict(d.get("candidates", {})))


@dataclass
class _Data:
    x: np.ndarray  # (N, G) table ms per group
    n_ops: np.ndarray  # (N,) ops that cost a boundary
    y: np.ndarray  # (N,) measured ms

    def take(self, rows: np.ndarray) -> _Data:
        return _Data(self.x[rows], self.n_ops[rows], self.y[rows])


def _data(nets: Sequence[Sequence[str]], measured: Sequence[float], table: Mapping[str, float],
          groups: list[str]) -> _Data:
    idx = {g: i for i, g in enumerate(groups)}
    x = np.zeros((len(nets), len(groups)))
    for n, keys in enumerate(nets):
        for k in keys:
            x[n, idx[group_of(k)]] += table[k]
    n_ops = np.array([sum(counts_as_op(k) for k in keys) for keys in nets], dtype=float)
    return _Data(x, n_ops, np.asarray(measured, dtype=float))


def _one_factor(sums: np.ndarray, y: np.ndarray) -> float:
    r = sums / y
    return float(r.sum() / np.square(r).sum())


def _solve(d: _Data, model: str, lam: float) -> tuple[float, np.ndarray, float, float]:
    """(intercept, group scales, per-op ms, one-factor s0), by relative-error least squares.

    Group models are ridge-pulled toward the one-factor model (equal scales, no intercept, no per-op
    cost); the intercept and per-op cost are penalised as fractions of a typical network.
    """
    sums = d.x.sum(1)
    s0 = _one_factor(sums, d.y)
    g = d.x.shape[1]
    if model == "one-factor":
        return 0.0, np.full(g, s0), 0.0, s0
    grouped = model.startswith("group")
    per_op = model.endswith("per-op")
    cols = [np.ones_like(sums), *(d.x.T if grouped else [sums])] + ([d.n_ops] if per_op else [])
    design = np.stack(cols, 1) / d.y[:, None]  # rows scaled so the residual is relative
    target = np.ones_like(d.y)
    if grouped:
        typical = np.median(d.y)
        pen = [1.0 / typical, *np.ones(g)] + ([np.median(d.n_ops) / typical] if per_op else [])
        prior = [0.0, *np.full(g, s0)] + ([0.0] if per_op else [])
        design = np.concatenate([design, np.sqrt(lam) * np.diag(pen)])
        target = np.concatenate([target, np.sqrt(lam) * np.asarray(pen) * np.asarray(prior)])
    beta = np.linalg.lstsq(design, target, rcond=None)[0]
    scales = beta[1:1 + g] if grouped else np.full(g, beta[1])
    return float(beta[0]), scales, float(beta[-1]) if per_op else 0.0, s0


def _predict(d: _Data, c: float, scales: np.ndarray, per_op: float) -> np.ndarray:
    return c + d.x @ scales + per_op * d.n_ops


def _plausible(d: _Data, c: float, scales: np.ndarray, per_op: float, floor_ms: float | None = None) -> bool:
    """Every op costs time and no network costs less than nothing: a fit on noisy networks can put a
    group's scale below zero, which a search would read as "this op makes the net faster". With
    ``floor_ms`` (the raw table sum of the space's cheapest network), no network of the space either: a
    steep scale with a negative intercept priced a 28 px space's cheapest net below zero."""
    floor_ok = floor_ms is None or c + float(scales.min()) * floor_ms > 0
    return bool(np.all(scales > 0) and per_op >= 0 and np.all(_predict(d, c, scales, per_op) > 0)
                and c > -0.5 * d.y.min() and floor_ok)


def _free_params(model: str) -> int:
    return {"one-factor": 1, "affine": 2, "affine+per-op": 3}.get(model, 0)  # group models are ridged


def _loo(d: _Data, model: str, lam: float) -> float:
    errs = []
    for i in range(len(d.y)):
        keep = np.arange(len(d.y)) != i
        c, g, p, _ = _solve(d.take(keep), model, lam)
        errs.append(_predict(d.take(np.array([i])), c, g, p)[0] / d.y[i] - 1)
    return float(np.sqrt(np.mean(np.square(errs))))


def fit(nets: Sequence[Sequence[str]], measured_ms: Sequence[float], table: Mapping[str, float],
        version: int = 1, models: Sequence[str] = MODELS, floor_ms: float | None = None) -> Calibration:
    """Fit from networks (their op keys) and their measured medians; needs at least 3 networks.

    Every model in ``models`` is scored by leave-one-out; the best is refitted on all networks."""
    if len(nets) != len(measured_ms) or len(nets) < 3:
        raise ValueError(f"need at least 3 measured networks to calibrate, got {len(nets)}")
    missing = sorted({k for keys in nets for k in keys if k not in table})
    if missing:
        raise ValueError(f"table lacks {len(missing)} keys the calibration networks use: {missing[:5]}")
    groups = sorted({group_of(k) for keys in nets for k in keys})
    d = _data(nets, measured_ms, table, groups)
    scored: dict[str, tuple[float, float]] = {}  # model -> (LOO RMSPE, ridge)
    for model in models:
        if _free_params(model) > len(d.y) - 2:  # too few networks to leave one out and still fit it
            continue
        lams = _LAMBDAS if model.startswith("group") else (0.0,)
        tried = [(_loo(d, model, lam), lam) for lam in lams
                 if _plausible(d, *_solve(d, model, lam)[:3], floor_ms=floor_ms)]
        if tried:
            scored[model] = min(tried)
    if not scored:  # every model asked for fitted implausibly: the one factor always holds
        scored["one-factor"] = (_loo(d, "one-factor", 0.0), 0.0)
        models = ("one-factor",)
    best = min(scored, key=lambda m: scored[m][0])
    for model in models:  # the simplest model within a near tie of the best
        if model in scored and scored[model][0] <= scored[best][0] * (1 + NEAR_TIE):
            best = model
            break
    rmspe, lam = scored[best]
    c, g, p, s0 = _solve(d, best, lam)
    grouped = best.startswith("group")
    return Calibration(intercept_ms=c, scale=s0 if grouped or best == "one-factor" else float(g[0]),
                       group_scales=dict(zip(groups, map(float, g), strict=True)) if grouped else {},
                       per_op_ms=p, model=best, version=version, n_networks=len(d.y), ridge=lam,
                       loo_rmspe=rmspe, candidates={m: v[0] for m, v in scored.items()},
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
