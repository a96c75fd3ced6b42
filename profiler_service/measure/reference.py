"""The drift reference: a fixed workload timed between the samples of every measurement.

On a shared or virtual machine the clock speed a process gets moves by 20-40% over tens of seconds
(one network's per-second median has ranged 5.3..9.4 ms over 90 s, CV 9-16%), so an op
timed at one moment and a network timed a minute later disagree by more than the table's model error.
The ratio of two workloads timed interleaved is far steadier (two networks: CV 1.1%). So every
measurement also times a reference and reports its median as ``ref_ms``; the worker scales each
result to that reference's nominal speed (``nominal_ms / ref_ms``, see ``clock/drift.py``).

A reference is a whole network of the measured space, so it slows down the way that space's networks do: the
same kernels and layout reorders, and a working set of the same size. In the mobile space it holds the
candidates in turn (``mix``: layer i the i-th of its non-zero candidates, every kernel size and expansion in
every stage); in the CIFAR one a mid-size op in every layer (3x3 SepConv). A mobile reference of 3x3 MBConv3
in every layer did not move with random networks of the space: five random networks and four candidate
references, timed in turns in 0.25-1 s medians (three runs at 96 px, one at 160), correlated with the
uniform reference at -0.35..0.68 and their ratio to it wandered more than their own time (96 px: 6.7-7.9%
std against 6.1-6.5% raw; 160 px: 2.65% against 2.16%), while with the mixed one they correlated at
0.14-0.84 and their ratio wandered least of the four (96 px: 5.6-5.8%; 160 px: 1.74%). Different kernels
lean on different parts of the core (a 7x7 depthwise on arithmetic, a 1x1 expansion on memory), and a host's
slow stretches weigh on them unequally, so the reference must hold them in the proportions a network does.
The slow-down is not uniform across sizes: in one slow stretch a 96 px reference slowed by 33% while a 160
px network slowed by 45%; with neighbours loading the memory system a 160 px reference slowed by 6% while
0.3 ms CIFAR nets did not (against a reference of their own space and
resolution, 24/24 nets within 3% of their speed alone, against the 160 px one 17/24). So a job that names
its space is timed against the *matched* reference of that space, resolution and width.

Matched in size too: a whole network for a network (a network measured, a calibration's networks), one op of
it for an op (a profile). Timed at 224 px (50 rounds of 0.25 s medians, the reference and eight ops of the
space taking turns), the whole reference wandered 5.7% (std) and three random networks of the space 5.4-5.6%
with it (correlation ~0.8), while each op alone wandered 1.2-1.4%: the slow-down weighed on whole networks'
working sets, not on one op's. Divided by the whole reference, the ops came out noisier than raw (5.9%
against 1.45%), and two profile passes agreed to a median 3.8% where their raw times agreed to 0.8%; divided
by the reference op (3x3 MBConv3 of the middle layer alone), 1.4%, and two passes to 0.56% (p90 1.41%).
Where everything slows together (a host taking the core away), the op-sized reference slows with the ops all
the same. A profile of bare keys is timed against the default space's reference op (``op_name_for(None)``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

# A name says how the reference is built and timed ("warm3": three untimed runs before each timed one,
# measure/protocol.py), since a nominal read one way does not scale a reference read another (a pair
# read it 4-12% slower after a 160 px network). Stored with every nominal and every scaled figure.
NAME = "proxyless-mobile@160/mix/warm3"
_WARM = "warm3"
# The op each space's op reference is, and its uniform whole reference repeats in every layer: mid-size
# among its candidates.
_OPS = {"proxyless-mobile": "3x3_MBConv3", "proxyless-cifar": "3x3_SepConv"}
# "mix": a whole reference holding the space's candidates in turn, layer i the i-th of its non-zero ones.
MIX = "mix"
# What each space's whole reference is now (names with the uniform op still build: stored nominals and
# queued jobs name them).
_WHOLE = {"proxyless-mobile": MIX, "proxyless-cifar": "3x3_SepConv"}
_PATTERN = re.compile(r"^(?P<space>[a-z0-9-]+)@(?P<res>\d+)(?:x(?P<width>\d+(?:\.\d+)?))?/(?P<op>[A-Za-z0-9_]+)"
                      r"(?:\.layer(?P<layer>\d+))?/" + _WARM + "$")

FILLER_RESOLUTION = 64  # the nominal burst's stand-in for a measured op (clock/burst.py): ~0.5 ms


def name_for(space: str | None, resolution: int | None = None, width_mult: float | None = None) -> str:
    """The reference matched to a space at a resolution and width (the default one without a space): a
    whole network, for timing whole networks."""
    if space is None or space not in _OPS:
        return NAME
    from shared.spaces import SPACES

    defaults = SPACES[space].defaults
    res = int(resolution if resolution is not None else defaults["resolution"])
    width = float(width_mult if width_mult is not None else defaults["width_mult"])
    tail = "" if width == 1.0 else f"x{width:g}"
    return f"{space}@{res}{tail}/{_WHOLE[space]}/{_WARM}"


def op_name_for(space: str | None, resolution: int | None = None, width_mult: float | None = None) -> str:
    """The op-sized reference matched to a space, for timing its ops one by one: the reference op alone, as
    the space's middle searchable layer holds it (the default network's, without a space)."""
    from shared.spaces import get_space

    whole = name_for(space, resolution, width_mult)
    space, res, width, op, _ = parse(whole)
    layer = len(get_space(space, res, width).layers) // 2
    return whole.replace(f"/{op}/", f"/{_OPS[space]}.layer{layer}/")


def parse(name: str) -> tuple[str, int, float, str, int | None]:
    """(space, resolution, width_mult, op, layer: None for a whole network) of a reference name; ValueError
    for a name we never build."""
    m = _PATTERN.match(name)
    if m is None or m["op"] not in _ops_named(m["space"], whole=m["layer"] is None):
        raise ValueError(f"unknown drift reference {name!r}; references look like {NAME!r}")
    return m["space"], int(m["res"]), float(m["width"] or 1.0), m["op"], None if m["layer"] is None else int(m["layer"])


def reference_module(name: str = NAME) -> tuple[nn.Module, tuple[int, ...]]:
    """The named reference (a network, or one op of it) and its input shape."""
    space, resolution, width, op, layer = parse(name)
    if layer is None:
        return _net(space, resolution, width, op)
    from shared.arch import net_from_keys
    from shared.spaces import get_space

    layers = get_space(space, resolution, width).layers
    spec = layers[layer].spec(op) if layer < len(layers) else None
    if spec is None:
        raise ValueError(f"unknown drift reference {name!r}: {space} at {resolution} px has no {op} at layer {layer}")
    return net_from_keys([spec.key]), spec.input_shape(1)


def filler_module() -> tuple[nn.Module, tuple[int, ...]]:
    """The nominal burst's stand-in for a measured op: the default reference's blocks at a small input."""
    return _net("proxyless-mobile", FILLER_RESOLUTION, 1.0, _OPS["proxyless-mobile"])


def _net(space_name: str, resolution: int, width: float, op: str) -> tuple[nn.Module, tuple[int, ...]]:
    # imported here: the worker reads names without pulling in torch
    from shared.arch import build_net, make_arch
    from shared.spaces import get_space

    space = get_space(space_name, resolution, width)
    choices = _choices(space.layers, op)
    return build_net(make_arch(space, choices)), (1, 3, resolution, resolution)


def _ops_named(space: str, *, whole: bool) -> set[str]:
    if space not in _OPS:
        return set()
    return {_OPS[space], _WHOLE[space]} if whole else {_OPS[space]}


def whole_choices(name: str) -> list[str]:
    """The choice per searchable layer of a whole reference; ValueError for an op reference."""
    from shared.spaces import get_space

    space, resolution, width, op, layer = parse(name)
    if layer is not None:
        raise ValueError(f"{name!r} is an op reference, not a whole network")
    return _choices(get_space(space, resolution, width).layers, op)


def _choices(layers, op: str) -> list[str]:
    if op != MIX:
        return [op if op in layer.candidates else layer.candidates[0] for layer in layers]
    out = []
    for i, layer in enumerate(layers):
        ops = [c for c in layer.candidates if c != "zero"]
        out.append(ops[i % len(ops)])
    return out
