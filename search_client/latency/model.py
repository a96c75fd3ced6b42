"""The differentiable latency model: E[LAT] = fixed + sum_layers sum_j p_j * F(op_j), in ms.

Built once from a table (key -> median ms) and a search space. Every key the space needs must be in the
table: a missing key raises ``MissingKeysError`` listing them. (The original ProxylessNAS estimator
silently returned 200 ms for an unknown key, which steers a search toward whatever op was missing.)
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

import torch

from search_client.latency.values import BadLatencyError, check_entries, check_latency
from shared.spaces import Layer, SearchSpace

if TYPE_CHECKING:
    from shared.schemas import TableOut

log = logging.getLogger(__name__)
MAX_LISTED = 20  # keys named in the error message; the exception carries all of them


class CalibrationLike(Protocol):
    """What the model needs of ``shared.calibration.Calibration``."""

    intercept_ms: float

    def op_ms(self, key: str, raw_ms: float) -> float: ...


class MissingKeysError(KeyError):
    """The table lacks keys the space needs; ``missing`` lists them all, in network order."""

    def __init__(self, missing: list[str], table: str = "the latency table"):
        self.missing = list(missing)
        shown = "\n  ".join(self.missing[:MAX_LISTED])
        more = len(self.missing) - MAX_LISTED
        tail = f"\n  ... and {more} more (see .missing)" if more > 0 else ""
        self.message = (f"{len(self.missing)} key(s) missing from {table}; profile them first "
                        f"(POST /v1/jobs with these keys):\n  {shown}{tail}")
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and escaped newlines included
        return self.message


def required_keys(space: SearchSpace) -> list[str]:
    """Every key a latency model of this space looks up, in network order, without duplicates."""
    # not space.all_op_specs(): that re-validates against the default limits, which a space built
    # with wider limits may exceed
    candidates = [layer.spec(n) for layer in space.layers for n in layer.candidates]
    specs = [*space.prefix, *candidates, *space.suffix]
    return list(dict.fromkeys(s.key for s in specs if s is not None))


def _here(space: SearchSpace) -> dict:
    return {"space": space.name, "resolution": space.resolution, "width_mult": space.width_mult,
            "num_classes": space.num_classes}


def fitted_elsewhere(calibration: dict, space: SearchSpace) -> dict | None:
    """The scope a calibration was fitted on when it is not this space and size; None when it is (or names
    none, and is trusted)."""
    scope = calibration.get("scope")
    if not scope or all(scope.get(k) == v for k, v in _here(space).items()):
        return None
    return scope


def calibration_fits(calibration: dict, space: SearchSpace) -> bool:
    """A calibration fitted on networks of another space or size says nothing about this one (a 224 px
    calibration applied at 32 px mispredicts by tens of percent); one that names no scope is trusted."""
    scope = fitted_elsewhere(calibration, space)
    if scope is None:
        return True
    log.warning("table calibration was fitted on %s, not %s: using the raw table sum (calibrate this size: "
                "search-client calibrate)", scope, _here(space))
    return False


class LatencyModel:
    """Per-layer cost vectors (ms per candidate, zero = 0) and the fixed cost of prefix + suffix."""

    def __init__(self, entries: dict[str, float], space: SearchSpace,
                 calibration: CalibrationLike | None = None):
        self.space, self.calibration = space, calibration
        needed = required_keys(space)
        missing = [k for k in needed if k not in entries]
        if missing:
            raise MissingKeysError(missing)
        self.entries = check_entries({k: entries[k] for k in needed}, "the latency table")
        self.fixed_ms = sum(self.op_ms(s.key) for s in space.fixed_specs)
        if calibration is not None:
            self.fixed_ms += float(calibration.intercept_ms)  # once per network, so it lives here
        self.layer_costs: list[torch.Tensor] = [  # each (n_candidates,)
            torch.tensor([self._cost(layer, n) for n in layer.candidates], dtype=torch.float32)
            for layer in space.layers
        ]
        if calibration is not None:  # finite entries, but a calibration's own figures may not be
            self._check_calibrated()

    def _check_calibrated(self) -> None:
        """Every op's calibrated cost >= 0 and the cheapest network's above 0. The fixed part alone may be
        negative: a fit's intercept is a per-network offset, below zero where ops timed alone carry a cost a
        network does not pay, and only a whole network's figure is a latency."""
        where = "the calibrated latency model"
        if not math.isfinite(self.fixed_ms):
            check_latency("fixed ops + intercept", self.fixed_ms, where)
        for layer, costs in zip(self.space.layers, self.layer_costs, strict=True):
            for name, ms in zip(layer.candidates, costs.tolist(), strict=True):
                check_latency(name, ms, where, zero_ok=True)
        cheapest = self.fixed_ms + sum(float(c.min()) for c in self.layer_costs)
        if cheapest <= 0:
            raise BadLatencyError(f"{where}: the cheapest network of the space is priced at {cheapest:g} ms "
                                  f"(fixed ops + intercept {self.fixed_ms:g} ms); calibrate again on more networks")

    def op_ms(self, key: str) -> float:
        """Cost of one op: the table's median, calibrated when a calibration is given."""
        raw = self.entries[key]
        return float(self.calibration.op_ms(key, raw)) if self.calibration is not None else raw

    def _cost(self, layer: Layer, name: str) -> float:
        spec = layer.spec(name)
        return 0.0 if spec is None else self.op_ms(spec.key)

    @classmethod
    def from_table(cls, table: TableOut, space: SearchSpace, use_calibration: bool = True) -> LatencyModel:
        """Medians of a table; its calibration (from measured networks) when it carries one."""
        calibration = None
        if use_calibration and table.calibration and calibration_fits(table.calibration, space):
            from shared.calibration import Calibration  # only tables with a calibration need it

            calibration = Calibration.from_dict(table.calibration)
        entries = {k: v.median_ms for k, v in table.entries.items()}
        try:
            return cls(entries, space, calibration)
        except MissingKeysError as e:
            raise MissingKeysError(e.missing, f"table {table.id} ({table.device}, {table.backend})") from None

    def to(self, device: torch.device | str) -> LatencyModel:
        self.layer_costs = [c.to(device) for c in self.layer_costs]
        return self

    def expected_latency(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """Scalar ms, differentiable in probs. probs[i] is (n_candidates_i,): a full softmax, or the
        renormalised two-path vector of a ``two``-mode step with the unsampled entries zero."""
        if len(probs) != len(self.layer_costs):
            raise ValueError(f"{len(probs)} probability vectors for {len(self.layer_costs)} "
                             "searchable layers")
        total = None
        for i, (p, c) in enumerate(zip(probs, self.layer_costs, strict=True)):
            if p.shape != c.shape:
                raise ValueError(f"layer {i}: probabilities of shape {tuple(p.shape)}, "
                                 f"expected {tuple(c.shape)}")
            term = (p * c.to(device=p.device, dtype=p.dtype)).sum()  # scalar
            total = term if total is None else total + term
        if total is None:  # a space with no searchable layer
            return torch.tensor(self.fixed_ms)
        return total + self.fixed_ms

    def predict(self, choices: list[str]) -> float:
        """Predicted ms of one architecture: fixed cost plus the chosen op of every layer."""
        specs = self.space.layer_specs(list(choices))  # validates count and names
        return self.fixed_ms + sum(self.op_ms(s.key) for s in specs if s is not None)

    def layer_breakdown(self, choices: list[str]) -> list[tuple[str, float]]:
        """(op name, ms) per searchable layer, for reports."""
        specs = self.space.layer_specs(list(choices))
        return [(n, 0.0 if s is None else self.op_ms(s.key)) for n, s in zip(choices, specs, strict=True)]


__all__ = ["CalibrationLike", "LatencyModel", "MissingKeysError", "calibration_fits", "fitted_elsewhere",
           "required_keys"]
