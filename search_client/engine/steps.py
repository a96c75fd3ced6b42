"""One weight step and one architecture step of the search, and the precision they run at.

Neither reads a value back from the device: losses and accuracy counts come back as device tensors
that the loop sums and reads only at its log interval, the latency hinges are masks rather than
branches, and paths are drawn from a host copy of the logits (``SuperNet.host_logits``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from search_client.data.images import SKIPPED_LABEL
from search_client.engine import ddp
from search_client.latency.budgets import Limit, extra_penalty
from search_client.latency.constraint import over_limit_penalty, under_fill_penalty
from search_client.latency.losses import latency_loss
from search_client.latency.model import LatencyModel
from search_client.supernet.supernet import SuperNet

AMP_MODES = ("off", "bf16", "fp16")


def check_amp(amp: str, device: torch.device) -> None:
    if amp not in AMP_MODES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, not {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--amp fp16 needs a CUDA device (its loss scaling is CUDA's), not {device.type}; "
                         f"use --amp bf16 on a CPU")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--amp bf16 is not supported by this GPU; use --amp fp16")


@dataclass
class Precision:
    """Autocast for forward passes; for fp16 a gradient scaler per optimizer (weights, logits)."""

    amp: str = "off"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        check_amp(self.amp, self.device)
        fp16 = self.amp == "fp16"
        self.weights = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.arch = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def autocast(self):
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


@dataclass
class StepStats:
    """Device tensors of one step (summed by the loop, read at its log interval)."""

    loss: torch.Tensor  # scalar, mean over the readable images
    correct: torch.Tensor  # scalar count
    counted: torch.Tensor  # images that were readable


def masked_ce(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the images that were read (``SKIPPED_LABEL`` marks an unreadable one);
    zero rather than NaN for a batch that has none."""
    total = F.cross_entropy(logits.float(), y, label_smoothing=smoothing, ignore_index=SKIPPED_LABEL,
                            reduction="sum")
    return total / (y != SKIPPED_LABEL).sum().clamp_min(1)


def weight_step(net: SuperNet, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                gen: torch.Generator, dist: ddp.Dist, cfg, precision: Precision) -> StepStats:
    net.sample("single", gen)
    opt.zero_grad(set_to_none=True)  # None, not 0: unsampled candidates must stay out of SGD
    with precision.autocast():
        logits = net(x)  # (B, classes)
    loss = masked_ce(logits, y, cfg.label_smoothing)
    precision.weights.scale(loss).backward()
    ddp.average_grads(net.weight_parameters(), dist)
    precision.weights.step(opt)
    precision.weights.update()
    correct = (logits.detach().argmax(1) == y).sum()
    return StepStats(loss.detach(), correct, (y != SKIPPED_LABEL).sum())


def arch_loss(ce: torch.Tensor, expected_ms: torch.Tensor | None, cfg,
              full_ms: torch.Tensor | float | None = None, log_unit_ms: float | None = None) -> torch.Tensor:
    """``expected_ms``: E[LAT] over the probabilities of this step (the pair in two mode), which the
    gradient flows through; ``full_ms``: E[LAT] of the full softmax, which decides the max_ms hinges.
    The fill pull is added only without a target: a target says where the user wants E[LAT]."""
    if expected_ms is None:
        return ce
    loss = ce
    if cfg.target_ms is not None:
        loss = latency_loss(ce, expected_ms, kind=cfg.loss, target_ms=cfg.target_ms, alpha=cfg.reg_alpha,
                            beta=cfg.reg_beta, lam=cfg.reg_lambda, log_unit_ms=log_unit_ms)
    loss = loss + over_limit_penalty(expected_ms, cfg.max_ms, cfg.max_penalty, full_ms).to(ce.device)
    if full_ms is not None and cfg.target_ms is None:
        loss = loss + under_fill_penalty(expected_ms, cfg.max_ms, cfg.fill, cfg.max_penalty, full_ms).to(ce.device)
    return loss


def arch_step(net: SuperNet, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
              lat: LatencyModel | None, gen: torch.Generator, dist: ddp.Dist, cfg,
              precision: Precision | None = None, log_unit_ms: float | None = None,
              extra: Sequence[Limit] = ()) -> torch.Tensor:
    """``extra``: the other tables' limits, each a hinge on its own E[LAT] (latency/budgets.py)."""
    precision = precision or Precision("off", x.device)
    net.sample(cfg.grad_mode, gen)
    with precision.autocast():
        logits = net(x)  # (B, classes)
    ce = masked_ce(logits, y)  # plain CE on the valid batch
    expected = full = None
    if lat is not None:
        expected = lat.expected_latency(net.arch_probs())
        with torch.no_grad():
            full = lat.expected_latency(net.full_probs())
    loss = arch_loss(ce, expected, cfg, full, log_unit_ms)
    if extra:
        loss = loss + extra_penalty(extra, net.arch_probs(), net.full_probs(), cfg.max_penalty, ce)
    alphas = net.arch_parameters()
    # grads of the logits only: the weight-gradient kernels are skipped, and no weight .grad is touched
    grads = torch.autograd.grad(precision.arch.scale(loss), alphas, allow_unused=True)
    for a, g in zip(alphas, grads, strict=True):
        a.grad = torch.zeros_like(a) if g is None else g
    ddp.average_grads(alphas, dist)
    precision.arch.step(opt)
    precision.arch.update()
    opt.zero_grad(set_to_none=True)
    net.rescale_arch_()  # no-op outside two mode
    return loss.detach()


__all__ = ["AMP_MODES", "Precision", "StepStats", "arch_loss", "arch_step", "check_amp", "masked_ce",
           "weight_step"]
