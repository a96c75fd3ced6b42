"""Search spaces: a fixed prefix, searchable layers of candidate op names, a fixed suffix.

Both spaces are parameterised by input resolution, width multiplier and number of classes; nothing
assumes 224x224.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from shared import specs
from shared.specs import DEFAULT_LIMITS, Limits, OpSpec, SpecError

ZERO = "zero"
MOBILE_CANDIDATES = ("3x3_MBConv3", "3x3_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "7x7_MBConv3", "7x7_MBConv6")
CIFAR_CANDIDATES = ("3x3_DilConv", "identity", "3x3_SepConv", "5x5_SepConv", "7x7_SepConv",
                    "3x3_AvgPool", "3x3_MaxPool")
CIFAR_REDUCE = ("3x3_DilConv", "3x3_SepConv", "5x5_SepConv", "7x7_SepConv")

_MBCONV_RE = re.compile(r"^([357])x\1_MBConv([1-6])$")
_CIFAR_RE = re.compile(r"^([357])x\1_(SepConv|DilConv|AvgPool|MaxPool)$")
_CIFAR_TYPES = {"SepConv": specs.SEP_CONV, "DilConv": specs.DIL_CONV, "AvgPool": specs.AVG_POOL,
                "MaxPool": specs.MAX_POOL}


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def op_spec(name: str, *, h: int, w: int, cin: int, cout: int, stride: int, shortcut: bool) -> OpSpec | None:
    """Candidate name at a layer -> spec (None for zero, which costs nothing)."""
    if name == ZERO:
        return None
    if name == "identity":
        return OpSpec(specs.IDENTITY, h, w, cin, cout, stride=stride)
    if m := _MBCONV_RE.match(name):
        return OpSpec(specs.MBCONV, h, w, cin, cout, kernel=int(m[1]), stride=stride, expand=int(m[2]),
                      idskip=shortcut)
    if m := _CIFAR_RE.match(name):
        op_type = _CIFAR_TYPES[m[2]]
        return OpSpec(op_type, h, w, cin, cout, kernel=int(m[1]), stride=stride,
                      dilation=2 if op_type == specs.DIL_CONV else 1)
    raise SpecError("op", f"unknown op name {name!r}")


@dataclass(frozen=True)
class Layer:
    """One searchable layer: its input shape and the candidate op names it may choose from."""

    h: int
    w: int
    cin: int
    cout: int
    stride: int
    shortcut: bool
    candidates: tuple[str, ...]

    def spec(self, name: str) -> OpSpec | None:
        if name not in self.candidates:
            raise SpecError("choices", f"{name!r} is not a candidate here; allowed: {list(self.candidates)}")
        return op_spec(name, h=self.h, w=self.w, cin=self.cin, cout=self.cout, stride=self.stride,
                       shortcut=self.shortcut)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    resolution: int
    width_mult: float
    num_classes: int
    prefix: tuple[OpSpec, ...]
    layers: tuple[Layer, ...]
    suffix: tuple[OpSpec, ...]
    description: str = ""

    @property
    def fixed_specs(self) -> tuple[OpSpec, ...]:
        return self.prefix + self.suffix

    def layer_specs(self, choices: list[str]) -> list[OpSpec | None]:
        if len(choices) != len(self.layers):
            raise SpecError("choices", f"{len(choices)} given, {self.name} has {len(self.layers)} "
                                       "searchable layers")
        return [layer.spec(c) for layer, c in zip(self.layers, choices, strict=True)]

    def arch_specs(self, choices: list[str]) -> list[OpSpec]:
        """Every op of one architecture in network order, zero layers dropped."""
        body = [s for s in self.layer_specs(choices) if s is not None]
        return [*self.prefix, *body, *self.suffix]

    def all_op_specs(self, batch: int = 1, limits: Limits = DEFAULT_LIMITS) -> list[OpSpec]:
        """The unique specs a table of this space needs, in network order, each validated."""
        seen: dict[str, OpSpec] = {}
        candidates = [layer.spec(n) for layer in self.layers for n in layer.candidates]
        for spec in [*self.prefix, *candidates, *self.suffix]:
            if spec is not None and spec.key not in seen:
                seen[spec.key] = specs.validate(spec, limits, batch)
        return list(seen.values())


def _check_params(resolution: int, width_mult: float, num_classes: int, limits: Limits) -> None:
    if not 8 <= resolution <= limits.max_resolution:
        raise SpecError("resolution", f"{resolution} outside 8..{limits.max_resolution}")
    if not 0.1 <= width_mult <= 4.0:
        raise SpecError("width_mult", f"{width_mult} outside 0.1..4.0")
    if not 1 <= num_classes <= 100_000:
        raise SpecError("num_classes", f"{num_classes} outside 1..100000")


# proxyless-mobile: stem 32, first MBConv1 16, six stages, feature mix 1280 (scaled only above width 1).
MOBILE_STEM, MOBILE_FIRST, MOBILE_MIX = 32, 16, 1280
MOBILE_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))  # width, repeats, stride


def mobile_channels(width_mult: float) -> tuple[int, ...]:
    """(stem, first block, the six stages, feature mix) channels at a width, with the published rounding."""
    mix = make_divisible(MOBILE_MIX * width_mult) if width_mult > 1.0 else MOBILE_MIX
    return (make_divisible(MOBILE_STEM * width_mult), make_divisible(MOBILE_FIRST * width_mult),
            *(make_divisible(w * width_mult) for w, _, _ in MOBILE_STAGES), mix)


def proxyless_mobile(resolution: int = 224, width_mult: float = 1.0, num_classes: int = 1000,
                     limits: Limits = DEFAULT_LIMITS) -> SearchSpace:
    _check_params(resolution, width_mult, num_classes, limits)
    c0, c1, *stages, last = mobile_channels(width_mult)
    h = specs.out_size(resolution, 2)
    stem = OpSpec(specs.STEM, resolution, resolution, 3, c0, kernel=3, stride=2)
    first = OpSpec(specs.MBCONV, h, h, c0, c1, kernel=3, stride=1, expand=1)
    layers, cin = [], c1
    for cout, (_, repeats, stride) in zip(stages, MOBILE_STAGES, strict=True):
        for i in range(repeats):
            s = stride if i == 0 else 1
            shortcut = s == 1 and cin == cout
            cands = MOBILE_CANDIDATES + ((ZERO,) if shortcut else ())
            layers.append(Layer(h, h, cin, cout, s, shortcut, cands))
            h, cin = specs.out_size(h, s), cout
    mix = OpSpec(specs.FEATURE_MIX, h, h, cin, last, kernel=1)
    logits = OpSpec(specs.LOGITS, h, h, last, num_classes)
    return SearchSpace("proxyless-mobile", resolution, width_mult, num_classes, (stem, first),
                       tuple(layers), (mix, logits),
                       "ProxylessNAS ImageNet backbone: 21 MBConv layers, 6 candidates (+zero on shortcuts)")


def proxyless_cifar(resolution: int = 32, width_mult: float = 1.0, num_classes: int = 10,
                    limits: Limits = DEFAULT_LIMITS) -> SearchSpace:
    _check_params(resolution, width_mult, num_classes, limits)
    c0 = make_divisible(32 * width_mult)
    stem = OpSpec(specs.STEM, resolution, resolution, 3, c0, kernel=3, stride=1)
    layers, h, cin = [], resolution, c0
    for width, repeats, stride in zip((32, 64, 128), (4, 4, 4), (1, 2, 2), strict=True):
        cout = make_divisible(width * width_mult)
        for i in range(repeats):
            s = stride if i == 0 else 1
            same = s == 1 and cin == cout
            # Identity is the layer skip here (no shortcut, so no zero op): pools and identity need the
            # shape kept, so a reducing layer chooses among convolutions only.
            layers.append(Layer(h, h, cin, cout, s, False, CIFAR_CANDIDATES if same else CIFAR_REDUCE))
            h, cin = specs.out_size(h, s), cout
    logits = OpSpec(specs.LOGITS, h, h, cin, num_classes)
    return SearchSpace("proxyless-cifar", resolution, width_mult, num_classes, (stem,), tuple(layers),
                       (logits,), "The seed's CIFAR-10 op set on a 12-layer, 3-stage backbone")


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    build: Callable[..., SearchSpace]
    defaults: dict = field(default_factory=dict)


SPACES: dict[str, SpaceInfo] = {
    "proxyless-mobile": SpaceInfo("proxyless-mobile", proxyless_mobile,
                                  {"resolution": 224, "width_mult": 1.0, "num_classes": 1000}),
    "proxyless-cifar": SpaceInfo("proxyless-cifar", proxyless_cifar,
                                 {"resolution": 32, "width_mult": 1.0, "num_classes": 10}),
}


def get_space(name: str, resolution: int | None = None, width_mult: float | None = None,
              num_classes: int | None = None, limits: Limits = DEFAULT_LIMITS) -> SearchSpace:
    if name not in SPACES:
        raise SpecError("space", f"unknown space {name!r}; known: {', '.join(SPACES)}")
    info = SPACES[name]
    d = info.defaults
    def pick(value, name):
        return d[name] if value is None else value
    return info.build(pick(resolution, "resolution"), pick(width_mult, "width_mult"),
                      pick(num_classes, "num_classes"), limits)
