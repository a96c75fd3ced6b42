"""The drift reference: a fixed workload timed between the samples of every measurement.

On a shared or virtual machine the clock speed a process gets moves by 20-40% over tens of seconds
(measured here: one network's per-second median ranged 5.3..9.4 ms over 90 s, CV 9-16%), so an op
timed at one moment and a network timed a minute later disagree by more than the table's model error.
The ratio of two workloads timed interleaved is far steadier (two networks: CV 1.1%). So every
measurement also times this reference and reports its median as ``ref_ms``; the worker scales each
result to the device's nominal speed (``nominal_ms / ref_ms``, see ``profiler_service.drift``).

The reference is a whole network of the ops we time (a mobile-space net of 3x3 MBConv3 blocks at
160 px, ~4 ms on a CPU core), so it slows down the way our ops do: the same kernels and layout
reorders, and a working set as large as a mid-resolution network's. The slow-down is not uniform:
in one slow stretch a 96 px reference slowed by 33% while a 160 px network slowed by 45%, so a
reference much smaller than the measured networks under-corrects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# Part of the device fingerprint: change it, change the device. It names how the reference is timed too
# ("warm3": three untimed runs before each timed one, measure/protocol.py), since a nominal read one way
# does not scale a reference read another (a pair read it 4-12% slower after a 160 px network).
NAME = "proxyless-mobile@160/3x3_MBConv3/warm3"
RESOLUTION = 160


FILLER_RESOLUTION = 64  # the nominal burst's stand-in for a measured op (measure/nominal.py): ~0.5 ms


def reference_module(resolution: int = RESOLUTION) -> tuple[nn.Module, tuple[int, ...]]:
    """The reference network (or, at another resolution, the burst's filler) and its input shape."""
    # imported here: the worker reads NAME without pulling in torch
    from shared.arch import build_net, make_arch
    from shared.spaces import get_space

    space = get_space("proxyless-mobile", resolution, 1.0, 1000)
    choices = ["3x3_MBConv3"] * len(space.layers)
    return build_net(make_arch(space, choices)), (1, 3, resolution, resolution)
