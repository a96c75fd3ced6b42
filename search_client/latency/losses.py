"""The latency-regularised architecture loss of ProxylessNAS (``add_regularization_loss``).

- ``mul#log``:    alpha * CE * (log E[LAT] / log T) ** beta   (the paper's defaults alpha 0.2, beta 0.3)
- ``add#linear``: CE + lam * (E[LAT] - T) / T                  (lam 0.1)

E[LAT] and T are given in ms. ``mul#log`` takes its logs in **microseconds**: the original took them in
ms, where every latency of its ~80 ms phone target is above 1. On a CPU at small resolution E[LAT] and
T are often below 1 ms, where log(ms) is negative: with E=0.3 ms and T=0.5 ms the ratio of two
negative logs *falls* as E[LAT] grows, so the loss rewarded a slower net. In microseconds both logs
are positive for any latency above 1 us and the ratio grows with E[LAT] in every case. The only
undefined case left (a latency or target under 1 us) is refused with an error. At the same ratio the
gradient is log(ms)/log(us) times the original's (0.39 at 80 ms): the regulariser is a little gentler.
"""

from __future__ import annotations

import math

import torch

KINDS = ("mul#log", "add#linear")
US_PER_MS = 1000.0


def check_target(kind: str, target_ms: float) -> None:
    """Validate a (kind, target) pair once, before the search starts."""
    if kind not in KINDS:
        raise ValueError(f"unknown latency loss {kind!r}; known: {', '.join(KINDS)}")
    if not (isinstance(target_ms, int | float) and math.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"target latency must be a positive number of ms, got {target_ms!r}")
    if kind == "mul#log" and target_ms * US_PER_MS <= 1.0:
        raise ValueError(f"mul#log takes log(target) in microseconds, which is not positive for a target of "
                         f"{target_ms:g} ms (<= 1 us); pick a larger target or use add#linear")


def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor | float, *, kind: str, target_ms: float,
                 alpha: float = 0.2, beta: float = 0.3, lam: float = 0.1) -> torch.Tensor:
    """Cross-entropy combined with the expected latency; differentiable in both."""
    check_target(kind, target_ms)
    lat = torch.as_tensor(expected_ms, dtype=ce.dtype, device=ce.device)
    if kind == "add#linear":
        return ce + lam * (lat - target_ms) / target_ms
    ratio = torch.log(lat * US_PER_MS) / math.log(target_ms * US_PER_MS)
    # one host sync per architecture step buys a clear error instead of NaN architecture logits
    if not bool(torch.all(ratio > 0)):
        raise ValueError(f"mul#log is undefined for E[LAT]={float(lat.detach().min()):.4g} ms: it takes "
                         f"log(E[LAT]) in microseconds, which must be above 1 us; use add#linear")
    return alpha * ce * ratio**beta


__all__ = ["KINDS", "US_PER_MS", "check_target", "latency_loss"]
