"""Stopping a search part-way and resumably: SIGTERM (what a preempting scheduler sends before it
kills a job) and a step budget.

The signal handler only raises a flag; the loop looks at it between steps, writes a checkpoint of
the exact position and returns, and the command exits 0. Under torchrun the ranks must stop at the
same step, so there the flag is agreed on (one small all-reduce) every ``log_every`` steps only.
"""

from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as td

from search_client.engine.ddp import Dist


class StopRequest:
    """A context that turns SIGTERM into a request to stop at the next agreed step."""

    def __init__(self) -> None:
        self.signalled = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.signalled = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def agreed(self, dist: Dist, step: int, every: int) -> bool:
        """Whether to stop now: at once in one process; on the ranks' common check steps under torchrun
        (any rank signalled stops all of them)."""
        if not dist.enabled:
            return self.signalled
        if step % max(every, 1):
            return False
        flag = torch.tensor([1.0 if self.signalled else 0.0], device=dist.device)
        td.all_reduce(flag, op=td.ReduceOp.MAX)
        return bool(flag.item())


__all__ = ["StopRequest"]
