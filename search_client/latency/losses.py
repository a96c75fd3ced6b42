"""The latency-regularised architecture loss of ProxylessNAS (``add_regularization_loss``).

- ``mul#log``:    alpha * CE * (log E[LAT] / log T) ** beta   (the paper's defaults alpha 0.2, beta 0.3)
- ``add#linear``: CE + lam * (E[LAT] - T) / T                  (lam 0.1)

E[LAT] and T are in ms. ``mul#log`` takes logs of milliseconds, so it is only defined while E[LAT] and T
lie on the same side of 1 ms; below that the ratio turns negative and a fractional power is NaN. On a
fast CPU with a small space that is a real case: use ``add#linear`` there.
"""

from __future__ import annotations

import math

import torch

KINDS = ("mul#log", "add#linear")


def check_target(kind: str, target_ms: float) -> None:
    """Validate a (kind, target) pair once, before the search starts."""
    if kind not in KINDS:
        raise ValueError(f"unknown latency loss {kind!r}; known: {', '.join(KINDS)}")
    if not (isinstance(target_ms, int | float) and math.isfinite(target_ms) and target_ms > 0):
        raise ValueError(f"target latency must be a positive number of ms, got {target_ms!r}")
    if kind == "mul#log" and target_ms == 1:
        raise ValueError("mul#log divides by log(target_ms), which is 0 at a target of 1 ms; "
                         "pick another target or use add#linear")


def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor | float, *, kind: str, target_ms: float,
                 alpha: float = 0.2, beta: float = 0.3, lam: float = 0.1) -> torch.Tensor:
    """Cross-entropy combined with the expected latency; differentiable in both."""
    check_target(kind, target_ms)
    lat = torch.as_tensor(expected_ms, dtype=ce.dtype, device=ce.device)
    if kind == "add#linear":
        return ce + lam * (lat - target_ms) / target_ms
    ratio = torch.log(lat) / math.log(target_ms)
    # one host sync per architecture step buys a clear error instead of NaN architecture logits
    if not bool(torch.all(ratio > 0)):
        raise ValueError(f"mul#log is undefined for E[LAT]={float(lat.detach().min()):.4g} ms with "
                         f"target {target_ms} ms: both must lie on the same side of 1 ms (log ratio "
                         f"{float(ratio.detach().min()):.3g}); use add#linear for sub-millisecond targets")
    return alpha * ce * ratio**beta


__all__ = ["KINDS", "check_target", "latency_loss"]
