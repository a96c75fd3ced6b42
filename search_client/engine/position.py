"""Where a search is: the resumable position a checkpoint records, and an epoch's running tallies.

A checkpoint may be written mid-epoch (``--ckpt-every``, SIGTERM, a step budget). It then records
the batches of the epoch already trained on, the valid stream's position, the tallies of the epoch so
far and every random state (``engine.checkpoint``); data augmentation is a function of (seed, epoch,
index) (``data.loading``). A run resumed from it skips those batches without reading them and ends
with the same architecture and weights as one that never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from search_client.data.loading import StreamPosition
from search_client.engine.steps import StepStats


@dataclass
class Tally:
    """Sums of one epoch's weight steps, kept on the device between log intervals."""

    loss: torch.Tensor | float = 0.0
    correct: torch.Tensor | float = 0.0
    counted: torch.Tensor | float = 0.0  # readable images
    seen: int = 0  # images the steps were given (readable or not)
    steps: int = 0

    def add(self, stats: StepStats, batch: int) -> None:
        self.loss = self.loss + stats.loss
        self.correct = self.correct + stats.correct
        self.counted = self.counted + stats.counted
        self.seen += batch
        self.steps += 1

    def values(self) -> list[float]:
        """[loss sum, correct, counted, seen, steps] as numbers (one read of the device)."""
        return [float(self.loss), float(self.correct), float(self.counted), float(self.seen), float(self.steps)]

    @classmethod
    def from_values(cls, values: list[float] | None) -> Tally:
        if not values:
            return cls()
        loss, correct, counted, seen, steps = values
        return cls(loss, correct, counted, int(seen), int(steps))


@dataclass
class Position:
    epoch: int = 0  # the epoch the run is in
    batch: int = 0  # batches of that epoch done (steps_per_epoch once it is complete)
    step: int = 0  # weight steps since the start
    arch_steps: int = 0
    valid: StreamPosition = field(default_factory=StreamPosition)
    tally: list[float] | None = None  # the epoch's Tally.values() so far

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, steps_per_epoch: int) -> Position:
        """Where to continue: inside the checkpoint's epoch, or at the start of the next one."""
        batch = ckpt.get("batch", steps_per_epoch)  # older checkpoints were written at epoch ends only
        if batch >= steps_per_epoch:
            return cls(ckpt["epoch"] + 1, 0, ckpt["step"], ckpt["arch_steps"], StreamPosition(ckpt["epoch"] + 1))
        valid = StreamPosition(**ckpt["valid_position"])
        return cls(ckpt["epoch"], batch, ckpt["step"], ckpt["arch_steps"], valid, ckpt.get("tally"))


__all__ = ["Position", "Tally"]
