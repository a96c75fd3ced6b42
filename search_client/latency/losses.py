"""The latency-regularised architecture loss of ProxylessNAS (``add_regularization_loss``).

- ``mul#log``:    alpha * CE * (log E[LAT] / log T) ** beta   (the paper's defaults alpha 0.2, beta 0.3)
- ``add#linear``: CE + lam * (E[LAT] - T) / T                  (lam 0.1)

E[LAT] and T are given in ms. ``mul#log`` takes its logs in **milliseconds**, as the original does,
wherever that is defined: the target and every latency the search can reach (the space's fastest
net) above 1 ms. Its pressure is then the original's: at an 80 ms target, taking the logs in
microseconds instead gave about 0.39x of it. Below 1 ms (a small net on a CPU) log(ms) is negative or
zero: with E=0.3 ms and T=0.5 ms the ratio of two negative logs *falls* as E[LAT] grows, so the loss
would reward a slower net. There the logs are taken in microseconds (``log_unit_ms`` 1e-3), where
both are positive for any latency above 1 us and the ratio grows with E[LAT]; a latency or target
under 1 us is refused. ``mul_log_unit`` picks the unit once, before the search.
"""

from __future__ import annotations

import math

import torch

KINDS = ("mul#log", "add#linear")
US_PER_MS = 1000.0
MS = 1.0  # log unit of the original formula
US = 1.0 / US_PER_MS  # log unit below 1 ms


def mul_log_unit(target_ms: float, floor_ms: float | None = None) -> float:
    """The unit (in ms) mul#log takes its logs in: ms where the original formula is defined for the
    target and for the fastest latency the search can reach (``floor_ms``), else us."""
    lowest = target_ms if floor_ms is None else min(target_ms, floor_ms)
    return MS if lowest > 1.0 else US


def check_target(kind: str, target_ms: float) -> None:
    """Validate a (kind, target) pair once, before the search starts."""
    if kind not in KINDS:
        raise ValueError(f"unknown latency loss {kind!r}; known: {', '.join(KINDS)}")
    if not (isinstance(target_ms, int | float) and math.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"target latency must be a positive number of ms, got {target_ms!r}")
    if kind == "mul#log" and target_ms * US_PER_MS <= 1.0:
        raise ValueError(f"mul#log takes log(target) in microseconds below 1 ms, which is not positive for a "
                         f"target of {target_ms:g} ms (<= 1 us); pick a larger target or use add#linear")


def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor | float, *, kind: str, target_ms: float,
                 alpha: float = 0.2, beta: float = 0.3, lam: float = 0.1,
                 log_unit_ms: float | None = None) -> torch.Tensor:
    """Cross-entropy combined with the expected latency; differentiable in both. ``log_unit_ms``: the
    unit of mul#log's logs (default: ``mul_log_unit(target_ms)``)."""
    check_target(kind, target_ms)
    lat = torch.as_tensor(expected_ms, dtype=ce.dtype, device=ce.device)
    if kind == "add#linear":
        return ce + lam * (lat - target_ms) / target_ms
    unit = mul_log_unit(target_ms) if log_unit_ms is None else log_unit_ms
    ratio = torch.log(lat / unit) / math.log(target_ms / unit)
    # Checked where it costs no device synchronisation; on a GPU the search's floor check before the
    # first step (search_client.engine.search) is what guarantees E[LAT] above the unit.
    if not ratio.is_cuda and not bool(torch.all(ratio > 0)):
        unit_name = "milliseconds" if unit == MS else "microseconds"
        raise ValueError(f"mul#log is undefined for E[LAT]={float(lat.detach().min()):.4g} ms: it takes "
                         f"log(E[LAT]) in {unit_name}, which must be above 1; use add#linear")
    return alpha * ce * ratio**beta


__all__ = ["KINDS", "MS", "US", "US_PER_MS", "check_target", "latency_loss", "mul_log_unit"]
