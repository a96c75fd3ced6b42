"""The hard latency limit ``max_ms``: a penalty during the search and a projection after it.

``target_ms`` is a soft goal (the ProxylessNAS regulariser trades accuracy against it). ``max_ms`` is
a hard ceiling on the *predicted* latency of the derived architecture (the table sum, calibrated when
the table carries a calibration). It works in three places:

1. Before the search: if even the cheapest architecture of the space (every layer at its cheapest
   candidate, ``zero`` where allowed) is predicted above ``max_ms``, the search refuses to start and
   says what the floor is (:func:`check_feasible`).
2. During the search, each architecture step adds a hinge penalty on the expected latency,
   ``max_penalty * relu(E[LAT] - max_ms) / max_ms``, to the regularised loss (:func:`over_limit_penalty`).
   It is zero while E[LAT] is under the limit, so it only pushes when the distribution drifts over it.
   Whether it fires is decided on the full-softmax E[LAT] (the distribution's real expectation); its
   gradient flows through the same per-layer probabilities as the latency term (the renormalised pair
   in ``two`` mode), so it never moves the logits of unsampled ops. (Deciding on the two-path value
   fired in 34% of steps where the full expectation was under the limit and stayed silent in 42%
   where it was over: the pair's expectation is a noisy, biased stand-in for the distribution's.)
3. After the search, the argmax architecture is projected under the limit (:func:`project_under`):
   while its predicted latency exceeds ``max_ms``, swap one layer to a cheaper candidate, choosing
   among all (layer, cheaper candidate) pairs the one that gives up the least log-probability per
   millisecond saved, ``(log p[current] - log p[candidate]) / (ms[current] - ms[candidate])``. Each
   swap strictly lowers the prediction, so this ends, and it ends under the limit whenever the space
   allows (step 1). It is a greedy knapsack: not guaranteed optimal, but it keeps the layers the
   search was most sure about and reports every swap it made.
4. After the projection, the leftover budget is spent (:func:`fill_up`): while some upgrade (a layer
   to a dearer candidate) keeps the prediction under the fill ceiling, take the one that gives up the
   least log-probability per millisecond added. A limit is a budget, not a wish for the fastest net:
   in these spaces the dearer candidates are the larger ones (more layers, kernels, expansion), so a
   net left at half its budget gave away accuracy the device could afford (measured: derived nets at
   0.37-0.74x the budget before this step, docs/results/search_outcome.md). The ceiling sits a margin under
   ``max_ms`` (the calibration's own leave-one-out error), so the *measured* latency stays under it.

``fill`` (off by default; ``--fill 0.9`` turns it on) also acts during the search when no ``target_ms``
is given: a hinge from below, ``max_penalty * relu(fill * max_ms - E[LAT]) / max_ms``, pulls the
distribution up into the band ``[fill * max_ms, max_ms]`` when the accuracy gradient alone is too weak
to spend the budget; inside the band only the accuracy gradient moves it. Whether steps 4 and the
pull are worth having is what the search-outcome benchmark's control measures: random nets put
through the same projection and fill, against the searched nets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from search_client.latency.values import BadLatencyError


class InfeasibleLimitError(ValueError):
    pass


@dataclass
class Projection:
    choices: list[str]
    predicted_ms: float
    swaps: list[dict] = field(default_factory=list)  # {"layer", "from", "to", "saved_ms", "logp_lost"}


Predict = Callable[[list[str]], float]


def cheapest(names: list[tuple[str, ...]], costs: list[torch.Tensor]) -> list[str]:
    """The cheapest architecture of the space by table cost per layer."""
    return [n[int(torch.argmin(c))] for n, c in zip(names, costs, strict=True)]


def check_feasible(names: list[tuple[str, ...]], costs: list[torch.Tensor], predict: Predict,
                   max_ms: float | None) -> None:
    if max_ms is None:
        return
    _check_finite(names, None, costs, max_ms)
    low = _finite(predict(cheapest(names, costs)), "the fastest architecture")
    if low > max_ms:
        raise InfeasibleLimitError(f"max_ms={max_ms:g} is below the fastest architecture of this space "
                                   f"({low:.3f} ms predicted by this table); raise it or change the space")


def over_limit_penalty(expected_ms: torch.Tensor, max_ms: float | None, weight: float,
                       full_ms: torch.Tensor | float | None = None) -> torch.Tensor:
    """``weight * relu(E - max_ms) / max_ms``. With ``full_ms`` (the full-softmax E[LAT]) the hinge and
    its value are decided on ``full_ms`` while the gradient flows through ``expected_ms`` (e.g. the
    two-path expectation), a straight-through hinge. Decided by a mask, not a Python branch, so the
    architecture step reads nothing back from the device."""
    if max_ms is None or weight <= 0:
        return expected_ms.new_zeros(())
    if full_ms is None:
        return weight * torch.relu(expected_ms - max_ms) / max_ms
    full = torch.as_tensor(full_ms, dtype=expected_ms.dtype, device=expected_ms.device).detach()
    over = (full > max_ms).to(expected_ms.dtype)
    # value: relu(full - max); gradient: d expected_ms, where over
    return weight * over * (expected_ms - expected_ms.detach() + full - max_ms) / max_ms


def under_fill_penalty(expected_ms: torch.Tensor, max_ms: float | None, fill: float, weight: float,
                       full_ms: torch.Tensor | float) -> torch.Tensor:
    """``weight * relu(fill * max_ms - E) / max_ms``, decided on the full-softmax ``full_ms``, its gradient
    through ``expected_ms`` (as :func:`over_limit_penalty`); zero without a limit or with ``fill <= 0``.
    The search adds it only without a ``target_ms``: with both, its slope 1/max_ms would override
    add#linear's lam/target wherever target > lam * max_ms and pull E[LAT] up past the user's target."""
    if max_ms is None or weight <= 0 or fill <= 0:
        return expected_ms.new_zeros(())
    floor = fill * max_ms
    full = torch.as_tensor(full_ms, dtype=expected_ms.dtype, device=expected_ms.device).detach()
    under = (full < floor).to(expected_ms.dtype)
    return weight * under * (expected_ms.detach() - expected_ms + floor - full) / max_ms


def fill_ceiling(max_ms: float | None, calibration: dict | None, margin: float | None) -> float | None:
    """Where :func:`fill_up` stops: ``max_ms * (1 - margin)``; ``margin`` None takes the calibration's
    leave-one-out RMSPE (the model's own error on networks it did not see), capped at 10%, or 5% without
    one (the issue's measurement noise)."""
    if max_ms is None:
        return None
    if margin is None:
        loo = (calibration or {}).get("loo_rmspe")
        margin = min(0.10, float(loo)) if loo is not None else 0.05
    return max_ms * (1.0 - max(0.0, margin))


def fill_up(names: list[tuple[str, ...]], probs: list[torch.Tensor], costs: list[torch.Tensor],
            predict: Predict, choices: list[str], ceiling: float | None) -> Projection:
    """Upgrade layers greedily while the prediction stays <= ``ceiling``: each step takes the (layer,
    dearer candidate) that loses the least log-probability per ms added. The swaps are reported with a
    negative ``saved_ms``."""
    choices = list(choices)
    now = predict(choices)
    swaps: list[dict] = []
    if ceiling is None:
        return Projection(choices, now, swaps)
    _check_finite(names, probs, costs, ceiling)
    now = _finite(now, "the projected architecture")
    logp = _logp(probs)
    idx = [n.index(c) for n, c in zip(names, choices, strict=True)]
    while (best := _best_swap(names, costs, logp, idx, choices, predict, now, ceiling=ceiling)) is not None:
        _count_swap(swaps, names)
        layer, j, added, lost, after = best
        swaps.append({"layer": layer, "from": choices[layer], "to": names[layer][j],
                      "saved_ms": -added, "logp_lost": lost})
        idx[layer], choices[layer] = j, names[layer][j]
        now = after
    return Projection(choices, now, swaps)


def choose_under(names: list[tuple[str, ...]], probs: list[torch.Tensor], costs: list[torch.Tensor],
                 predict: Predict, max_ms: float | None, ceiling: float | None) -> tuple[Projection, Projection]:
    """The derived choices under a limit: the argmax projected under ``max_ms``, then filled up to
    ``ceiling``; returns both steps (``fill.choices`` is the answer)."""
    proj = project_under(names, probs, costs, predict, max_ms)
    return proj, fill_up(names, probs, costs, predict, proj.choices, ceiling)


def project_under(names: list[tuple[str, ...]], probs: list[torch.Tensor], costs: list[torch.Tensor],
                  predict: Predict, max_ms: float | None) -> Projection:
    """Argmax choices, swapped greedily to cheaper candidates until ``predict(choices) <= max_ms``.

    ``costs`` (table ms per candidate, zero = 0) only say which swaps are cheaper; every saving is
    measured with ``predict``, so a calibrated prediction is what the limit applies to.
    """
    idx = [int(torch.argmax(p)) for p in probs]
    logp = _logp(probs)
    choices = [n[i] for n, i in zip(names, idx, strict=True)]
    now = predict(choices)
    swaps: list[dict] = []
    if max_ms is None:
        return Projection(choices, now, swaps)
    _check_finite(names, probs, costs, max_ms)
    check_feasible(names, costs, predict, max_ms)
    now = _finite(now, "the argmax architecture")
    while now > max_ms:
        best = _best_swap(names, costs, logp, idx, choices, predict, now)
        if best is None:  # unreachable after check_feasible; guards against an endless loop
            raise InfeasibleLimitError(f"no cheaper candidate left; max_ms={max_ms:g} not reachable")
        _count_swap(swaps, names)
        layer, j, saved, lost, _ = best
        swaps.append({"layer": layer, "from": choices[layer], "to": names[layer][j],
                      "saved_ms": saved, "logp_lost": lost})
        idx[layer], choices[layer] = j, names[layer][j]
        now -= saved
    return Projection(choices, predict(choices), swaps)


def _finite(ms: float, what: str) -> float:
    if not math.isfinite(ms):
        raise BadLatencyError(f"the predicted latency of {what} is {ms}: the table or its calibration holds a "
                              "value that is no latency")
    return ms


def _check_finite(names: list[tuple[str, ...]], probs: list[torch.Tensor] | None, costs: list[torch.Tensor],
                  limit: float) -> None:
    """A NaN compares false with everything: in a cost it made a swap look free and the loops below swap
    back and forth for ever. Refused here, with where it sits."""
    if not math.isfinite(limit):
        raise BadLatencyError(f"latency limit {limit} ms: must be a finite number of ms")
    for layer, (n, c) in enumerate(zip(names, costs, strict=True)):
        if not bool(torch.isfinite(c).all()):
            op = n[int((~torch.isfinite(c)).nonzero()[0])]
            raise BadLatencyError(f"layer {layer}: the cost of {op} is {float(c[n.index(op)])}, no latency")
    for layer, p in enumerate(probs or []):
        if not bool(torch.isfinite(p).all()):
            raise BadLatencyError(f"layer {layer}: its architecture probabilities hold NaN or infinity (a "
                                  "diverged search); nothing to derive")


def _count_swap(swaps: list[dict], names: list[tuple[str, ...]]) -> None:
    """Each swap moves one layer strictly along its candidates' costs (down to project, up to fill), so no
    layer moves more often than it has other candidates; past that something compared as no number does."""
    if len(swaps) >= sum(len(n) - 1 for n in names):
        raise BadLatencyError(f"{len(swaps)} swaps and no end: the costs or predictions are not numbers")


def _logp(probs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.log(p.detach().double().clamp_min(1e-30)) for p in probs]


def _best_swap(names: list[tuple[str, ...]], costs: list[torch.Tensor], logp: list[torch.Tensor], idx: list[int],
               choices: list[str], predict: Predict, now: float, *,
               ceiling: float | None = None) -> tuple[int, int, float, float, float] | None:
    """The one-layer swap that gives up the least log-probability per ms it moves: to a cheaper
    candidate (projection), or with ``ceiling`` to a dearer one whose prediction stays <= ``ceiling``
    (fill). -> (layer, candidate, ms moved > 0, log-probability lost, prediction after) or None."""
    up = ceiling is not None
    best = None
    for layer, (c, lp, i) in enumerate(zip(costs, logp, idx, strict=True)):
        for j in range(len(c)):
            if (float(c[j]) <= float(c[i])) if up else (float(c[j]) >= float(c[i])):
                continue
            after = _finite(predict(choices[:layer] + [names[layer][j]] + choices[layer + 1:]),
                            f"layer {layer} as {names[layer][j]}")
            moved = after - now if up else now - after
            if moved <= 0 or (up and after > ceiling):
                continue
            lost = float(lp[i] - lp[j])
            if best is None or lost / moved < best[0]:
                best = (lost / moved, layer, j, moved, lost, after)
    return best[1:] if best is not None else None
