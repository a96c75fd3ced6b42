"""The torch module for every op type: the profiler times exactly what the supernet trains.

Builders are registered by op type with ``@register``; ``build_op(spec)`` is the only entry point,
and the registry parametrises the tests (every op: forward runs, shape agrees with its key,
ONNX export matches torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from shared import specs
from shared.specs import OpSpec

BN_EPS = 1e-3
BN_MOMENTUM = 0.1

_REGISTRY: dict[str, Callable[[OpSpec], nn.Module]] = {}


def register(op_type: str) -> Callable:
    def deco(cls):
        _REGISTRY[op_type] = cls.from_spec
        return cls
    return deco


def registered_types() -> list[str]:
    return sorted(_REGISTRY)


def build_op(spec: OpSpec) -> nn.Module:
    if spec.type not in _REGISTRY:
        raise specs.SpecError("type", f"no module registered for {spec.type!r}")
    module = _REGISTRY[spec.type](spec)
    init_weights(module)
    return module


def init_weights(module: nn.Module) -> None:
    """He init on fan-out, unit BN, small linear; a residual block's last BN starts at zero.

    Fan-out counts one group's outputs (``k*k*out/groups``, as EfficientNet and timm do). The original's
    ``he_fout`` counts ``k*k*out`` for a depthwise conv too, which starts its kernels ~sqrt(channels)
    times smaller; behind BN their gradient is that much larger, and the first SGD steps then swamp
    the weights. A residual MBConv's final BN scale starts at zero so every block begins as the
    identity (Goyal et al. 2017): a deep net, or a supernet mixing paths, starts as a shallow one.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, MBConv) and m.idskip:
            zero_last_bn_(m)


def zero_last_bn_(module: nn.Module) -> None:
    """Zero the scale of the module's last BatchNorm: a residual branch that starts by adding nothing."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    if bns:
        nn.init.zeros_(bns[-1].weight)


def conv_bn(cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1, dilation: int = 1,
            act: bool = True) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


@register(specs.MBCONV)
class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand (absent at expand 1), kxk depthwise, 1x1 linear project."""

    def __init__(self, *, cin: int, cout: int, kernel: int, stride: int, expand: int, idskip: bool):
        super().__init__()
        mid = round(cin * expand)
        self.inverted_bottleneck = conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depth_conv = conv_bn(mid, mid, kernel, stride=stride, groups=mid)
        self.point_linear = conv_bn(mid, cout, 1, act=False)
        self.idskip = idskip

    @classmethod
    def from_spec(cls, spec: OpSpec) -> MBConv:
        return cls(cin=spec.cin, cout=spec.cout, kernel=spec.kernel, stride=spec.stride,
                   expand=spec.expand, idskip=spec.idskip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        y = self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))
        return x + y if self.idskip else y


@register(specs.STEM)
@register(specs.FEATURE_MIX)
class ConvLayer(nn.Sequential):
    """Stem 3x3 (stride from the key) and feature-mix 1x1: conv + BN + ReLU6."""

    @classmethod
    def from_spec(cls, spec: OpSpec) -> ConvLayer:
        return cls(*conv_bn(spec.cin, spec.cout, spec.kernel, stride=spec.stride))


@register(specs.LOGITS)
class Logits(nn.Module):
    """Everything after the feature mix: global average pool, dropout, linear."""

    def __init__(self, *, cin: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(cin, num_classes)

    @classmethod
    def from_spec(cls, spec: OpSpec) -> Logits:
        return cls(cin=spec.cin, num_classes=spec.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))


@register(specs.SEP_CONV)
@register(specs.DIL_CONV)
class SepConv(nn.Sequential):
    """ReLU, kxk depthwise (dilated for dil_conv), 1x1 pointwise, BN: the DARTS/ProxylessNAS CIFAR op."""

    @classmethod
    def from_spec(cls, spec: OpSpec) -> SepConv:
        pad = spec.dilation * (spec.kernel - 1) // 2
        return cls(
            nn.ReLU(inplace=False),
            nn.Conv2d(spec.cin, spec.cin, spec.kernel, spec.stride, pad, dilation=spec.dilation,
                      groups=spec.cin, bias=False),
            nn.Conv2d(spec.cin, spec.cout, 1, bias=False),
            nn.BatchNorm2d(spec.cout, eps=BN_EPS, momentum=BN_MOMENTUM),
        )


@register(specs.AVG_POOL)
class AvgPool(nn.AvgPool2d):
    @classmethod
    def from_spec(cls, spec: OpSpec) -> AvgPool:
        return cls(spec.kernel, spec.stride, spec.kernel // 2, count_include_pad=False)


@register(specs.MAX_POOL)
class MaxPool(nn.MaxPool2d):
    @classmethod
    def from_spec(cls, spec: OpSpec) -> MaxPool:
        return cls(spec.kernel, spec.stride, spec.kernel // 2)


@register(specs.IDENTITY)
class Identity(nn.Identity):
    @classmethod
    def from_spec(cls, spec: OpSpec) -> Identity:
        return cls()


@register(specs.ZERO)
class Zero(nn.Module):
    """Outputs zeros of the op's output shape; costs nothing and is never profiled."""

    def __init__(self, *, stride: int):
        super().__init__()
        self.stride = stride

    @classmethod
    def from_spec(cls, spec: OpSpec) -> Zero:
        return cls(stride=spec.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)
