"""Latency budgets a person can pick without knowing the device beforehand.

A number of milliseconds means something only next to what the device runs: the same ``--max-ms 0.25``
is roomy on one machine and under the fastest net of the space on another. So ``--max-ms`` also takes a
percentile, ``p25`` / ``p50`` / ``p75`` (any ``pNN``, 0 < NN < 100), of the latencies the device measured
for the random networks its table's calibration was fitted on: ``p50`` is a net as fast as the median
random one. The range itself (fastest, median, slowest measured net; the uniform mix; the floor of the
space) is what ``calibrate`` prints for a newcomer to choose from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search_client.latency.constraint import cheapest
from search_client.latency.model import LatencyModel

_PERCENTILE = re.compile(r"p(\d{1,2})", re.IGNORECASE)
BUDGET_FORMS = "milliseconds above 0 (e.g. 0.4) or a percentile of the device's measured random nets (p25, p50, p75)"


@dataclass(frozen=True)
class Percentile:
    """``pNN``: that percentile of the calibration networks' measured latencies."""

    q: int  # 1..99

    @property
    def text(self) -> str:
        return f"p{self.q}"

    def what(self) -> str:
        """'median', '25th percentile', ..."""
        if self.q == 50:
            return "median"
        suffix = "th" if 10 <= self.q % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(self.q % 10, "th")
        return f"{self.q}{suffix} percentile"


def parse_budget(text: str | float, flag: str = "--max-ms") -> float | Percentile:
    """Milliseconds (a float above 0) or a ``Percentile``; a one-line ValueError naming the flag otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        ms = float(text)
    else:
        text = str(text).strip()
        if m := _PERCENTILE.fullmatch(text):
            q = int(m[1])
            if not 0 < q < 100:
                raise ValueError(f"{flag} {text}: a percentile lies strictly between p0 and p100 (e.g. p50)")
            return Percentile(q)
        try:
            ms = float(text)
        except ValueError:
            raise ValueError(f"{flag} {text!r}: expected {BUDGET_FORMS}") from None
    if not (ms > 0 and math.isfinite(ms)):
        raise ValueError(f"{flag} {text}: expected {BUDGET_FORMS}")
    return ms


@dataclass(frozen=True)
class ResolvedBudget:
    """A percentile budget turned into milliseconds, and what it was read from."""

    percentile: Percentile
    ms: float
    n_networks: int

    def describe(self) -> str:
        return (f"budget {self.percentile.text} = {self.ms:.3f} ms ({self.percentile.what()} of the "
                f"{self.n_networks} random nets the device measured)")


def resolve_percentile(budget: Percentile, measured_ms: Sequence[float]) -> ResolvedBudget:
    """The percentile (linear between the nearest ranks) of the measured latencies."""
    if not measured_ms:
        raise ValueError(f"--max-ms {budget.text} needs the measured latencies of the calibration's random nets, "
                         "and none could be read")
    return ResolvedBudget(budget, float(np.percentile(np.asarray(measured_ms, dtype=float), budget.q)),
                          len(measured_ms))


def uniform_mix(lat: LatencyModel) -> list[str]:
    """Every layer at its middle candidate: a net neither small nor large, a sensible first budget."""
    return [layer.candidates[len(layer.candidates) // 2] for layer in lat.space.layers]


def floor_ms(lat: LatencyModel) -> float:
    """The fastest architecture's prediction: what a search refuses a budget under (``check_feasible``)."""
    return lat.predict(cheapest([layer.candidates for layer in lat.space.layers], lat.layer_costs))


@dataclass(frozen=True)
class DeviceRange:
    """What the device measured for the calibration's random nets, and two predictions beside them."""

    n_networks: int
    fastest_ms: float
    median_ms: float
    slowest_ms: float
    uniform_ms: float  # predicted, the uniform mix
    floor_ms: float  # predicted, the fastest architecture of the space
    calibrated: bool  # the predictions are the calibrated model's (else the raw table sum)

    def lines(self) -> list[str]:
        pred = "predicted" + ("" if self.calibrated else " (raw table sum)")
        return [f"the device's range over {self.n_networks} measured random nets:",
                f"  fastest      {self.fastest_ms:8.3f} ms",
                f"  median (p50) {self.median_ms:8.3f} ms",
                f"  slowest      {self.slowest_ms:8.3f} ms",
                f"  uniform mix  {self.uniform_ms:8.3f} ms {pred}, every layer at its middle candidate",
                f"  floor        {self.floor_ms:8.3f} ms {pred}, the fastest net of the space (no budget below)",
                "pick a budget from it: --max-ms p50 (or p25, p75, or milliseconds, e.g. "
                f"--max-ms {self.median_ms:.3g})"]


def device_range(measured_ms: Sequence[float], lat: LatencyModel) -> DeviceRange:
    ms = np.asarray(measured_ms, dtype=float)
    if ms.size == 0:
        raise ValueError("no measured calibration networks to read the device's range from")
    return DeviceRange(int(ms.size), float(ms.min()), float(np.median(ms)), float(ms.max()),
                       lat.predict(uniform_mix(lat)), floor_ms(lat), lat.calibration is not None)


__all__ = ["BUDGET_FORMS", "DeviceRange", "Percentile", "ResolvedBudget", "device_range", "floor_ms",
           "parse_budget", "resolve_percentile", "uniform_mix"]
