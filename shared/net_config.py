"""The ProxylessNAS / once-for-all ``net.config`` of a proxyless-mobile network: write it, read it back.

Two published readers, two rules for a zero (skipped) block, read from their code:

- once-for-all's ``ProxylessNASLatencyTable.predict_network_latency_given_config`` skips a block only when
  its conv is null; from any other it reads ``in_channels`` etc., so a ``{"name": "ZeroLayer"}`` conv raises
  ``KeyError``.
- ProxylessNAS's ``MobileInvertedResidualBlock.forward`` calls ``mobile_inverted_conv.is_zero_layer()``, so a
  null conv raises ``AttributeError``; its released ``MBInvertedConvLayer(**config)`` takes no
  ``mid_channels`` (both rebuild ``round(in_channels * expand_ratio)`` without it, as we do).

A zero block behind its identity shortcut is the identity, so the export leaves it out: both tools read
that and build the same network. ``zero_layers`` (a top-level field both ignore) says which searchable
layers were left out, so our import puts them back where they were.

Import accepts all three forms (ZeroLayer conv, null conv, block left out) and infers the width
multiplier from every block's channels with the published rounding (``make_divisible(c * w, 8)``), not
from the stem alone; a block whose channels or stride no width fits is named in the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from shared.spaces import (
    MOBILE_FIRST,
    MOBILE_MIX,
    MOBILE_STAGES,
    MOBILE_STEM,
    ZERO,
    Layer,
    SearchSpace,
    mobile_channels,
    proxyless_mobile,
)
from shared.specs import SpecError

WIDTH_RANGE = (0.1, 4.0)  # what proxyless_mobile accepts
# Multipliers the published nets use; preferred when several widths build the same network.
PUBLISHED_WIDTHS = (1.0, 0.35, 0.5, 0.75, 1.3, 1.4, 0.25, 0.6, 0.65, 0.8, 0.9, 1.1, 1.2, 1.5, 1.75, 2.0)
BN = {"momentum": 0.1, "eps": 1e-5}


# ---- export -----------------------------------------------------------------------------------------

def _conv_layer(cin: int, cout: int, kernel: int, stride: int) -> dict:
    return {"name": "ConvLayer", "kernel_size": kernel, "stride": stride, "dilation": 1, "groups": 1,
            "bias": False, "has_shuffle": False, "in_channels": cin, "out_channels": cout, "use_bn": True,
            "act_func": "relu6", "dropout_rate": 0, "ops_order": "weight_bn_act"}


def _block(cin: int, cout: int, kernel: int, stride: int, expand: int, shortcut: bool) -> dict:
    conv = {"name": "MBInvertedConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": kernel,
            "stride": stride, "expand_ratio": expand}
    sc = {"name": "IdentityLayer", "in_channels": cin, "out_channels": cout, "use_bn": False, "act_func": None,
          "dropout_rate": 0, "ops_order": "weight_bn_act"} if shortcut else None
    return {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv, "shortcut": sc}


def write_net_config(space: SearchSpace, choices: list[str], bn: dict | None = None) -> dict:
    """``net.config`` of one proxyless-mobile architecture; zero layers left out (see the module note)."""
    if space.name != "proxyless-mobile":
        raise SpecError("space", "net.config exists for proxyless-mobile only")
    stem, first = space.prefix
    mix, logits = space.suffix
    blocks = [_block(first.cin, first.cout, first.kernel, first.stride, first.expand, False)]
    zero_layers = []
    for j, (layer, spec) in enumerate(zip(space.layers, space.layer_specs(list(choices)), strict=True)):
        if spec is None:
            zero_layers.append(j)
        else:
            blocks.append(_block(spec.cin, spec.cout, spec.kernel, spec.stride, spec.expand, layer.shortcut))
    return {"name": "ProxylessNASNets", "bn": bn or BN,
            "first_conv": _conv_layer(stem.cin, stem.cout, stem.kernel, stem.stride), "blocks": blocks,
            "feature_mix_layer": _conv_layer(mix.cin, mix.cout, 1, 1),
            "classifier": {"name": "LinearLayer", "in_features": logits.cin, "out_features": logits.cout,
                           "bias": True, "use_bn": False, "act_func": None, "dropout_rate": 0,
                           "ops_order": "weight_bn_act"},
            "resolution": space.resolution, "zero_layers": zero_layers}


# ---- width multiplier ---------------------------------------------------------------------------------

def _md_jumps(base: int, lo: float, hi: float) -> list[float]:
    """Widths where make_divisible(base * w, 8) can change: rounding steps and the 90% floor."""
    out, k = [], 1
    while (8 * k - 4) / base <= hi:
        out += [w for w in ((8 * k - 4) / base, 8 * k / 0.9 / base) if lo < w < hi]
        k += 1
    return out


@cache
def width_pieces() -> dict[tuple[int, ...], tuple[float, float, float]]:
    """Every distinct channel signature over the width range -> (lowest, highest, one width that gives it).

    Channels are monotone in the width, so the widths giving one signature form an interval whose ends
    lie on the jump points of some make_divisible; a width between two neighbouring jumps is exact.
    """
    lo, hi = WIDTH_RANGE
    points = {lo, hi, 1.0}
    for base in (MOBILE_STEM, MOBILE_FIRST, *(w for w, _, _ in MOBILE_STAGES), MOBILE_MIX):
        points.update(_md_jumps(base, lo, hi))
    pts = sorted(points)
    pieces: dict[tuple[int, ...], tuple[float, float, float]] = {}
    for a, b in zip(pts, pts[1:], strict=False):
        for w in (a, (a + b) / 2, b):
            sig = mobile_channels(w)
            if sig in pieces:
                p_lo, p_hi, rep = pieces[sig]
                pieces[sig] = (min(p_lo, a), max(p_hi, b), rep)
            else:
                pieces[sig] = (a, b, w)
    return pieces


def canonical_width(sig: tuple[int, ...]) -> float:
    """The width to name a network by: a published multiplier if one builds it, else the shortest decimal."""
    lo, hi, rep = width_pieces()[sig]
    for w in PUBLISHED_WIDTHS:
        if lo <= w <= hi and mobile_channels(w) == sig:
            return w
    for digits in range(1, 7):
        step = 10.0 ** -digits
        ws = [round(k * step, digits) for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
        ws = [w for w in ws if WIDTH_RANGE[0] <= w <= WIDTH_RANGE[1] and mobile_channels(w) == sig]
        if ws:
            return min(ws, key=lambda w: abs(w - (lo + hi) / 2))
    return rep


# ---- import -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Block:
    where: str
    zero: bool
    cin: int = 0
    cout: int = 0
    kernel: int = 0
    stride: int = 1
    expand: int = 0
    shortcut: bool = False

    def describe(self) -> str:
        sc = "with" if self.shortcut else "without"
        return f"{self.cin}->{self.cout} channels, stride {self.stride}, {sc} shortcut"


def _int(d: dict, field: str, where: str) -> int:
    v = d.get(field)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(where, f"{field} must be an integer, got {v!r}")
    return v


def _read_block(i: int, block: Any) -> _Block:
    where = f"blocks[{i}]"
    if not isinstance(block, dict):
        raise SpecError(where, f"expected a mapping, got {type(block).__name__}")
    conv = block["mobile_inverted_conv"] if "mobile_inverted_conv" in block else block.get("conv")
    if conv is None or (isinstance(conv, dict) and conv.get("name") == "ZeroLayer"):
        return _Block(where, zero=True)
    if not isinstance(conv, dict):
        raise SpecError(where, f"mobile_inverted_conv must be a mapping or null, got {conv!r}")
    return _Block(where, False, _int(conv, "in_channels", where), _int(conv, "out_channels", where),
                  _int(conv, "kernel_size", where), _int(conv, "stride", where), _int(conv, "expand_ratio", where),
                  block.get("shortcut") is not None)


class _Misfit(Exception):
    def __init__(self, index: int, field: str, reason: str):
        super().__init__(reason)
        self.index, self.field, self.reason = index, field, reason


def _want(layer: Layer) -> str:
    return f"{layer.cin}->{layer.cout} channels, stride {layer.stride}, " \
           f"{'with' if layer.shortcut else 'without'} shortcut"


def _align(space: SearchSpace, body: list[_Block], hint: set[int] | None) -> list[str]:
    """Searchable-layer choices for the body blocks; layers left out become zero. Raises _Misfit."""
    layers, choices, j = space.layers, [], 0
    for i, b in enumerate(body, start=1):
        skipped = j
        while j < len(layers) and not b.zero and layers[j].shortcut and (
                j in hint if hint is not None else
                (b.cin, b.cout, b.stride) != (layers[j].cin, layers[j].cout, layers[j].stride)):
            choices.append(ZERO)  # a block left out
            j += 1
        if j == len(layers):
            raise _Misfit(i, b.where, f"one block more than the {len(layers)} searchable layers")
        layer = layers[j]
        if b.zero:
            if not layer.shortcut:
                raise _Misfit(i, b.where, f"zero block at searchable layer {j}, which has no shortcut to skip by")
            choices.append(ZERO)
            j += 1
            continue
        if (b.cin, b.cout, b.stride, b.shortcut) != (layer.cin, layer.cout, layer.stride, layer.shortcut):
            if skipped == j:
                raise _Misfit(i, b.where, f"{b.describe()} does not fit searchable layer {j}: "
                                          f"expected {_want(layer)}")
            raise _Misfit(i, b.where, f"{b.describe()} fits neither searchable layer {skipped} "
                                      f"({_want(layers[skipped])}) nor, with layers {skipped}..{j - 1} left out "
                                      f"as zero, layer {j} ({_want(layer)})")
        name = f"{b.kernel}x{b.kernel}_MBConv{b.expand}"
        if name not in layer.candidates:
            raise _Misfit(i, b.where, f"{name} is not a candidate of searchable layer {j} "
                                      f"(allowed: {', '.join(layer.candidates)})")
        choices.append(name)
        j += 1
    rest = layers[j:]
    if any(not layer.shortcut for layer in rest):
        k = j + next(n for n, layer in enumerate(rest) if not layer.shortcut)
        raise _Misfit(len(body) + 1, "blocks", f"{len(body) + 1} blocks end before searchable layer {k}, "
                                               "which cannot be left out (no shortcut)")
    return choices + [ZERO] * len(rest)


def _hint(cfg: dict) -> set[int] | None:
    z = cfg.get("zero_layers")
    if isinstance(z, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in z):
        return set(z)
    return None


def read_net_config(cfg: Any, resolution: int | None = None) -> tuple[SearchSpace, list[str]]:
    """A proxyless-mobile ``net.config`` -> (its space, one choice per searchable layer).

    Resolution: the argument, else the file's ``resolution`` field, else 224 (the published files have none).
    """
    if not isinstance(cfg, dict):
        raise SpecError("net.config", f"expected a mapping, got {type(cfg).__name__}")
    try:
        stem_out = _int(cfg["first_conv"], "out_channels", "first_conv")
        mix_in = _int(cfg["feature_mix_layer"], "in_channels", "feature_mix_layer")
        mix_out = _int(cfg["feature_mix_layer"], "out_channels", "feature_mix_layer")
        cls_in = _int(cfg["classifier"], "in_features", "classifier")
        num_classes = _int(cfg["classifier"], "out_features", "classifier")
        res = int(resolution or cfg.get("resolution") or 224)
        raw_blocks = cfg["blocks"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SpecError("net.config", f"missing or malformed field: {e}") from None
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise SpecError("blocks", "expected a non-empty list")
    blocks = [_read_block(i, b) for i, b in enumerate(raw_blocks)]
    first, body = blocks[0], blocks[1:]
    if first.zero or (first.kernel, first.stride, first.expand, first.shortcut) != (3, 1, 1, False):
        raise SpecError("blocks[0]", "must be the fixed 3x3 MBConv1, stride 1, no shortcut")
    sigs = [s for s in width_pieces() if s[0] == stem_out]
    if not sigs:
        raise SpecError("first_conv", f"out_channels {stem_out} fits no width multiplier in "
                                      f"{WIDTH_RANGE[0]}..{WIDTH_RANGE[1]} (make_divisible(32 * w, 8))")
    if first.cin != stem_out:
        raise SpecError("blocks[0]", f"in_channels {first.cin} != first_conv out_channels {stem_out}")
    stem_sigs, sigs = sigs, [s for s in sigs if s[1] == first.cout]
    if not sigs:
        ws = sorted({canonical_width(s) for s in stem_sigs})
        raise SpecError("blocks[0]", f"out_channels {first.cout} fits no width that gives first_conv {stem_out} "
                                     f"channels (widths {ws[0]:g}..{ws[-1]:g} give "
                                     f"{sorted({s[1] for s in stem_sigs})})")
    hint, fits, misfits = _hint(cfg), [], []
    for sig in sigs:
        space = proxyless_mobile(res, width_pieces()[sig][2], num_classes)
        try:
            choices = _align(space, body, hint) if hint is not None else None
        except _Misfit:
            choices = None
        try:
            fits.append((sig, choices or _align(space, body, None)))
        except _Misfit as m:
            misfits.append((m.index, sig, m))
    seen = {stem_out, mix_out, *(b.cout for b in blocks if not b.zero)}

    def likely(sig: tuple[int, ...]) -> tuple[int, bool]:  # the width an error is measured against
        return sum(c in seen for c in sig), canonical_width(sig) in PUBLISHED_WIDTHS

    if not fits:
        _, sig, m = max(misfits, key=lambda t: (t[0], *likely(t[1])))
        raise SpecError(m.field, f"{m.reason} (no width multiplier fits every block; width "
                                 f"{canonical_width(sig):g} fits the blocks before it)")
    mixed = [(sig, ch) for sig, ch in fits if sig[-1] == mix_out and sig[-2] == mix_in]
    if not mixed:
        sig = max((f[0] for f in fits), key=likely)
        raise SpecError("feature_mix_layer", f"{mix_in}->{mix_out} channels; the blocks fit width "
                                             f"{canonical_width(sig):g}, which gives {sig[-2]}->{sig[-1]}")
    if cls_in != mix_out:
        raise SpecError("classifier", f"in_features {cls_in} != feature_mix_layer out_channels {mix_out}")
    sig, choices = mixed[0]
    return proxyless_mobile(res, canonical_width(sig), num_classes), choices


__all__ = ["PUBLISHED_WIDTHS", "canonical_width", "read_net_config", "width_pieces", "write_net_config"]
