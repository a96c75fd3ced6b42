"""The REINFORCE variant of the architecture step (the paper's second method, ``--arch-algo reinforce``).

Per step, ``rl_batch`` architectures are sampled from softmax(alpha), one path per layer. Each is
scored on a valid batch (no gradient, BatchNorm on batch statistics) and rewarded

    R = acc * (LAT / T) ** w

with LAT the table's prediction of that architecture (calibrated when the table has a calibration):
with ``target_ms`` T, ``w = -rl_tradeoff`` (the original's 0.1, a soft trade); with ``max_ms`` a
second factor ``(LAT / max_ms) ** -rl_over`` applies only above the limit, and below the fill band
(``fill * max_ms``) a third, ``(LAT / (fill * max_ms)) ** rl_under``, so a net that leaves the budget
unused earns less (as the gradient method's fill hinge; zero push inside the band).
The policy gradient on the same logits is ``mean_j (R_j - b) * grad(-log p(arch_j))``; the baseline
``b`` first moves ``rl_baseline_decay`` (the original's 0.99) of the way to this step's mean reward,
``b += 0.99 * (mean_R - b)``, and the gradient is taken against the moved baseline, as the original
(``nas_manager.py``) does. (Taking it against the previous average, then moving 10% of the way, let
the baseline lag a rising reward, so most samples looked better than average.) Then the same Adam
step as the gradient method. The fill factor applies only without ``target_ms`` (as the gradient
method's pull). Derive and export are shared with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from search_client.engine import ddp
from search_client.engine.loop import bn_batch_stats
from search_client.latency.model import LatencyModel
from search_client.supernet.supernet import SuperNet


@dataclass
class RLState:
    baseline: float | None = None
    last_reward: float = 0.0

    def update(self, mean_reward: float, weight: float) -> float:
        """Move the baseline ``weight`` of the way to ``mean_reward`` (start at it); returns it."""
        if self.baseline is None:
            self.baseline = mean_reward
        else:
            self.baseline += weight * (mean_reward - self.baseline)
        self.last_reward = mean_reward
        return self.baseline


def policy_loss(rewards: list[float], logps: list[torch.Tensor], baseline: float) -> torch.Tensor:
    """-mean_j (R_j - b) * log p(arch_j): its gradient is the REINFORCE estimate."""
    return -sum((r - baseline) * lp for r, lp in zip(rewards, logps, strict=True)) / len(rewards)


def reward(acc: float, lat_ms: float | None, *, target_ms: float | None, max_ms: float | None,
           tradeoff: float, over: float, fill: float = 0.0, under: float = 0.0) -> float:
    r = acc
    if lat_ms is None:
        return r
    if target_ms is not None:
        r *= (lat_ms / target_ms) ** -tradeoff
    if max_ms is not None and lat_ms > max_ms:
        r *= (lat_ms / max_ms) ** -over
    if max_ms is not None and fill > 0 and lat_ms < fill * max_ms:
        r *= (lat_ms / (fill * max_ms)) ** under
    return r


def log_prob(net: SuperNet) -> torch.Tensor:
    """log p of the sampled architecture under softmax(alpha): a sum over layers, differentiable."""
    return sum(torch.log_softmax(m.alpha, 0)[m.active] for m in net.mixed_ops)


def rl_step(net: SuperNet, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
            lat: LatencyModel | None, gen: torch.Generator, dist: ddp.Dist, cfg, state: RLState) -> float:
    """One policy-gradient step; returns the mean reward of its samples."""
    rewards, logps = [], []
    with bn_batch_stats(net):
        for _ in range(cfg.rl_batch):
            net.sample("single", gen)
            with torch.no_grad():
                correct = (net(x).argmax(1) == y).sum()  # (B, classes) -> scalar
                acc = float(correct) / max(int((y >= 0).sum()), 1)  # skipped (unreadable) images excluded
            lat_ms = lat.predict(net.sampled_choices()) if lat is not None else None
            rewards.append(reward(acc, lat_ms, target_ms=cfg.target_ms, max_ms=cfg.max_ms,
                                  tradeoff=cfg.rl_tradeoff, over=cfg.rl_over,
                                  fill=cfg.fill if cfg.target_ms is None else 0.0, under=cfg.rl_under))
            logps.append(log_prob(net))
    # each rank scored its own valid batch: average the rewards so every rank takes the same step
    rewards = [r / dist.world for r in ddp.sum_all(rewards, dist)]
    mean_r = sum(rewards) / len(rewards)
    baseline = state.update(mean_r, cfg.rl_baseline_decay)  # before the gradient, as the original
    loss = policy_loss(rewards, logps, baseline)
    alphas = net.arch_parameters()
    for a, g in zip(alphas, torch.autograd.grad(loss, alphas), strict=True):
        a.grad = g
    opt.step()
    opt.zero_grad(set_to_none=True)
    return mean_r


__all__ = ["RLState", "log_prob", "policy_loss", "reward", "rl_step"]
