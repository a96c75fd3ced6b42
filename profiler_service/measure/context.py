"""An op measured the way it runs inside a network.

Timed alone, an op pays for things a network does not: the session call, the NCHW<->NCHWc layout
reorders onnxruntime puts at graph edges, and a residual Add that inside a network fuses into the
projecting convolution (ORT's NCHWc Conv+Sum) but alone cannot, because its second input arrives in
NCHW from outside the graph. We wrap the op between a cheap producer and consumer (1x1 depthwise
convs) so the reorders and fusions land as they would in a network, then count only the kernel time
of the op's own nodes from onnxruntime's per-node profile.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared import specs as S
from shared.files import WriteFailed, free_space
from shared.specs import OpSpec

OUTPUT = "ctx_out"


class InNetwork(nn.Module):
    """producer -> op -> consumer, with the producer left out for the stem (a network's first op)."""

    def __init__(self, op: nn.Module, spec: OpSpec):
        super().__init__()
        needs_pre = spec.type != S.STEM
        needs_post = spec.type != S.LOGITS
        self.pre = nn.Conv2d(spec.cin, spec.cin, 1, groups=spec.cin, bias=False) if needs_pre else nn.Identity()
        self.op = op
        self.post = nn.Conv2d(spec.cout, spec.cout, 1, groups=spec.cout, bias=False) if needs_post else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.op(self.pre(x)))


def is_op_node(name: str, op_type: str) -> bool:
    """Kernel events that belong to the op itself (names follow the exported module paths)."""
    if op_type.startswith("Reorder"):
        return False
    return not name.startswith(("/pre/", "/post/", OUTPUT))


class ProfileGap(RuntimeError):
    """onnxruntime's profile does not account for every run, or for all of the op's kernels in a run."""


def read_profile(profile_path: str | Path) -> list[dict]:
    """onnxruntime's profile (a JSON list of events). The runtime writes it without telling anyone when the
    write fails: on a full disk it leaves the file cut short, which read back was ``JSONDecodeError:
    Unterminated string``. Named here as the failed write it is."""
    path = Path(profile_path)
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        raise WriteFailed(f"onnxruntime could not write its profile {path} whole (it ends after {len(text)} "
                          f"bytes, mid-document; {free_space(path)}): is the disk full?") from None


def op_kernel_runs(profile_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Per run, in run order: the summed kernel time (ms) of the op's nodes, and how many kernel events of
    the op's nodes the profile holds for it (the same in every complete run of a static graph)."""
    events = read_profile(profile_path)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [r[0] for r in runs]
    totals = np.zeros(len(runs))
    counts = np.zeros(len(runs), dtype=np.int64)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        node = e["name"].removesuffix("_kernel_time")
        if not is_op_node(node, e.get("args", {}).get("op_name", "")):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= runs[i][1]:
            totals[i] += e["dur"] / 1e3
            counts[i] += 1
    return totals, counts


def op_kernel_ms(profile_path: str | Path) -> np.ndarray:
    """Per run, the summed kernel time (ms) of the op's nodes, in run order."""
    return op_kernel_runs(profile_path)[0]


def timed_kernel_ms(per_run: np.ndarray, counts: np.ndarray, calls: list[bool]) -> list[float]:
    """The kernel times of the timed runs (``calls``: one flag per run, True for a timed one).

    A profile that lost runs, or a run some of whose op kernels it did not attribute, would put a
    fraction of the op into the table: once in ~1,000 ops a 0.172 ms MBConv came out at 0.0079 ms, and
    every network holding it was predicted 12% fast. Such a reading is refused, never stored."""
    if len(per_run) != len(calls):
        raise ProfileGap(f"the profile holds {len(per_run)} runs, the op ran {len(calls)} times")
    timed = [(ms, n) for ms, n, t in zip(per_run, counts, calls, strict=True) if t]
    full = max((n for _, n in timed), default=0)
    kept = [ms for ms, n in timed if n == full]
    if len(kept) < len(timed):  # (an op with no kernels of its own, identity, has 0 in every run)
        raise ProfileGap(f"{len(timed) - len(kept)} of {len(timed)} timed runs lack some of the op's "
                         f"{full} kernel events")
    return kept
