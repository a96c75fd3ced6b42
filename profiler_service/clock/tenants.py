"""How much of the machine other processes kept busy while we timed something.

A burst of the reference that runs slower than the nominal means one of two things: another process
shared the cores (the device was not slower, only busy), or the device itself runs slower now (a VM's
host gave it less, a clock came down). Only the second should move the nominal; the kernel's CPU
accounting tells them apart: busy time on the machine that is not ours belongs to someone else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal ...; guest time is
# already inside user. Steal is the host's doing, not a process on this machine, so it is left out.
_BUSY_FIELDS = (0, 1, 2, 5, 6)
# Other processes busy on fewer cores than this on average through a stretch (the service's own threads,
# a client polling it) leave the timed workload its core: what it read is the device alone.
UNSHARED_CORES = 0.25


def _machine_busy_s() -> float | None:
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(fields[i]) for i in _BUSY_FIELDS) / ticks
    except (OSError, ValueError, IndexError):  # not Linux, or an unreadable /proc
        return None


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


class OthersWatch:
    """Started before a stretch of timing; ``cores()`` after it: how many cores other processes kept busy
    on average over the stretch (``None`` where the machine does not say)."""

    def __init__(self) -> None:
        self._busy, self._own, self._t = _machine_busy_s(), _own_s(), time.monotonic()

    def cores(self) -> float | None:
        busy, wall = _machine_busy_s(), time.monotonic() - self._t
        if busy is None or self._busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self._busy) - (_own_s() - self._own)) / wall


def unshared(cores: float | None) -> bool:
    """Whether a stretch that others kept busy on ``cores`` (None: unknown) had the device to itself."""
    return cores is not None and cores <= UNSHARED_CORES
