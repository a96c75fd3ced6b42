"""Data-parallel plumbing for the search: process group, gradient and buffer averaging.

Under ``torchrun`` every rank holds a full supernet, reads its own shard of the data, and samples the
*same* paths (one generator, one seed on every rank). Weight gradients are averaged by hand instead
of by ``DistributedDataParallel``: DDP's reducer assumes every step touches a fixed parameter set, and
with ``find_unused_parameters=True`` it writes zeros into the gradients of the unsampled candidates,
which would let SGD's weight decay and momentum move ops that did not run. Averaging only the
gradients that exist keeps those at ``None``. Architecture gradients are averaged the same way
before the Adam step, so the logits stay identical on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as td
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not td.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        td.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def cleanup() -> None:
    if td.is_initialized():
        td.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        td.barrier()


def _average_(tensors: list[torch.Tensor], world: int) -> None:
    """In-place mean over ranks of same-shaped tensor lists, one collective."""
    if not tensors:
        return
    flat = _flatten_dense_tensors(tensors)
    td.all_reduce(flat)
    flat /= world
    for t, s in zip(tensors, _unflatten_dense_tensors(flat, tensors), strict=True):
        t.copy_(s)


def average_grads(params: list[nn.Parameter], dist: Dist) -> None:
    """Average existing gradients over ranks; a gradient missing on some rank counts as zero there.

    Ranks sample the same paths, so the sets agree; the flag exchange makes that robust rather than
    assumed (a mismatch would otherwise deadlock or mix up tensors).
    """
    if not dist.enabled:
        return
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dist.device)
    td.all_reduce(flags, op=td.ReduceOp.MAX)
    grads = []
    for p, f in zip(params, flags.tolist(), strict=True):
        if f and p.grad is None:
            p.grad = torch.zeros_like(p)
        if f:
            grads.append(p.grad)
    _average_(grads, dist.world)


@torch.no_grad()
def average_buffers(module: nn.Module, dist: Dist) -> None:
    """Mean of float buffers (BatchNorm running stats) over ranks, before evaluating or saving."""
    if dist.enabled:
        _average_([b for b in module.buffers() if b.is_floating_point()], dist.world)


@torch.no_grad()
def broadcast_module(module: nn.Module, dist: Dist) -> None:
    """Rank 0's parameters and buffers everywhere (same seed already gives the same init; this makes
    it a guarantee)."""
    if dist.enabled:
        for t in [*module.parameters(), *module.buffers()]:
            td.broadcast(t.data, src=0)


def broadcast_object(obj: Any, dist: Dist) -> Any:
    if not dist.enabled:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def sum_all(values: list[float], dist: Dist) -> list[float]:
    if not dist.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    td.all_reduce(t)
    return t.tolist()
