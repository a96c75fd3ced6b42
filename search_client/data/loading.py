"""DataLoaders of the search: sharded per rank, seeded, resumable mid-epoch, decoding in workers.

- ``EpochSampler`` is DistributedSampler (one permutation per epoch, a shard per rank) that can start
  part-way into its epoch (a resumed run skips the batches it already trained on without reading
  them) and, for datasets with random transforms, hands each index over with a seed derived from
  (seed, epoch, index): the crop an image gets is then the same in a resumed run as in an
  uninterrupted one, whichever worker decodes it.
- ``ValidStream`` yields the valid batches of the architecture steps, reshuffled every pass, with a
  position that a checkpoint records.
- Workers ignore SIGTERM: a scheduler that preempts a job signals its whole process group, and the
  main process must outlive its workers long enough to write its checkpoint (``engine.stopping``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

if TYPE_CHECKING:
    from search_client.engine.ddp import Dist

MAX_DEFAULT_WORKERS = 8


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, as a container or taskset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Every CPU but the one the training loop runs on, at most 8."""
    return max(0, min(cpu_count() - 1, MAX_DEFAULT_WORKERS))


def check_workers(workers: int) -> None:
    if workers < 0:
        raise ValueError(f"--workers must be 0 (decode in the main process) or more, got {workers}")
    cpus = cpu_count()
    if workers > cpus:
        print(f"warning: --workers {workers} is more than the {cpus} CPU(s) this process may use; the "
              f"workers will share them with the training loop", file=sys.stderr)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item's augmentation in one epoch."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class EpochSampler(DistributedSampler):
    """DistributedSampler that starts at position ``start`` of its shard and, with ``with_seeds``,
    yields ``(index, item_seed)``."""

    def __init__(self, dataset: Dataset, *, world: int, rank: int, seed: int, with_seeds: bool):
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.with_seeds = with_seeds
        self.start = 0

    def __iter__(self) -> Iterator:
        indices = list(super().__iter__())[self.start:]
        if not self.with_seeds:
            return iter(indices)
        return iter([(i, item_seed(self.seed, self.epoch, i)) for i in indices])

    def __len__(self) -> int:
        return super().__len__() - self.start


def _worker_init(_: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(ds: Dataset, *, batch_size: int, dist: Dist, seed: int, workers: int = 0,
                pin_memory: bool = False) -> tuple[DataLoader, EpochSampler]:
    """A loader over ``ds`` for this rank: ``batch_size`` per process, the last partial batch dropped."""
    sampler = EpochSampler(ds, world=dist.world, rank=dist.rank, seed=seed,
                           with_seeds=bool(getattr(ds, "random_transform", False)))
    # persistent: a worker pool outlives the epoch (ImageNet epochs would restart 8 processes each time);
    # the default prefetch of 2 batches a worker: at 224 px, batch 256 and 8 workers that is already ~2.4 GB
    extra = dict(persistent_workers=True, worker_init_fn=_worker_init) if workers else {}
    dl = DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                    pin_memory=pin_memory, **extra)
    if len(dl) == 0:
        raise ValueError(f"split of {len(ds)} examples gives no batch of {batch_size} per process "
                         f"on {dist.world} process(es); lower --batch-size")
    return dl, sampler


def full_pass(dl: DataLoader, sampler: EpochSampler, epoch: int) -> DataLoader:
    """``dl`` set up for one whole pass of ``epoch`` (evaluation)."""
    sampler.set_epoch(epoch)
    sampler.start = 0
    return dl


@dataclass
class StreamPosition:
    epoch: int = 0
    passes: int = 0  # whole passes over the valid split finished in this epoch
    consumed: int = 0  # batches taken from the current pass


class ValidStream:
    """Valid batches for the architecture steps: a pure function of (epoch, pass, position)."""

    PASS_STRIDE = 1009  # sampler epochs of successive passes: distinct from every search epoch's

    def __init__(self, dl: DataLoader, sampler: EpochSampler, position: StreamPosition):
        self.dl, self.sampler, self.position = dl, sampler, position
        self._it: Iterator | None = None

    def _open(self) -> None:
        self.sampler.set_epoch(self.position.epoch * self.PASS_STRIDE + self.position.passes)
        self.sampler.start = self.position.consumed * self.dl.batch_size
        self._it = iter(self.dl)

    def __next__(self):
        if self._it is None:
            self._open()
        try:
            batch = next(self._it)
        except StopIteration:
            self.position.passes, self.position.consumed = self.position.passes + 1, 0
            self._open()
            batch = next(self._it)
        self.position.consumed += 1
        return batch

    def __iter__(self) -> ValidStream:
        return self


def to_device(batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, *,
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, R, R), (B,) onto the device; asynchronous from pinned memory."""
    x, y = batch
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


__all__ = ["EpochSampler", "StreamPosition", "ValidStream", "check_workers", "cpu_count", "default_workers",
           "full_pass", "item_seed", "make_loader", "to_device"]
