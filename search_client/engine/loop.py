"""Small helpers of the training loops: lr schedule, BN on batch stats, the log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from shared.files import read_json_lines, write_text_atomic


def trim_log(path: Path, last_epoch: int) -> None:
    """A fresh run starts an empty log; a resumed one drops lines newer than its checkpoint (written
    by a run that died before saving the next one)."""
    if not path.exists():
        return
    # a last line cut short (a write that failed) is no record
    keep = [record for record in read_json_lines(path) if record["epoch"] <= last_epoch]
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in keep))


def cosine_lr(step: int, total: int, base: float) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


class bn_batch_stats:  # noqa: N801 - a context manager used like a function
    """BatchNorm on batch statistics without touching the running ones: the running stats of a
    candidate mix inputs from many sampled paths, so the argmax net is judged on batch stats, as in
    the original's validation."""

    def __init__(self, net: torch.nn.Module):
        self.bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = [(m.training, m.momentum) for m in self.bns]
        for m in self.bns:
            m.train()
            m.momentum = 0.0  # running = (1 - 0) * running

    def __exit__(self, *exc):
        for m, (training, momentum) in zip(self.bns, self.saved, strict=True):
            m.train(training)
            m.momentum = momentum
