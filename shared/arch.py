"""Architecture JSON, the ProxylessNAS ``net.config`` format, and the standalone net built from either.

An architecture names its space and one op per searchable layer; it also carries the ordered keys of
every op of the network, so a net can be rebuilt (and its latency looked up) without the space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import nn

from shared.net_config import read_net_config, write_net_config
from shared.ops import BN_EPS, BN_MOMENTUM, build_op
from shared.spaces import SearchSpace, get_space
from shared.specs import OpSpec, parse_key


class Arch(BaseModel):
    space: str
    resolution: int = Field(gt=0)
    width_mult: float = Field(default=1.0, gt=0)
    num_classes: int = Field(default=1000, gt=0)
    choices: list[str]
    keys: list[str] = Field(default_factory=list, description="every op of the net in order, zero dropped")
    blocks: list[dict[str, Any]] = Field(default_factory=list, description="expanded per-layer config")

    def space_instance(self) -> SearchSpace:
        return get_space(self.space, self.resolution, self.width_mult, self.num_classes)


def make_arch(space: SearchSpace, choices: list[str]) -> Arch:
    """Validated architecture with its expanded config filled in."""
    layer_specs = space.layer_specs(list(choices))
    blocks = []
    for layer, name, spec in zip(space.layers, choices, layer_specs, strict=True):
        blocks.append({"op": name, "in_channels": layer.cin, "out_channels": layer.cout,
                       "input_size": layer.h, "stride": layer.stride, "shortcut": layer.shortcut,
                       "kernel": spec.kernel if spec else None, "expand": spec.expand if spec else None,
                       "key": spec.key if spec else None})
    return Arch(space=space.name, resolution=space.resolution, width_mult=space.width_mult,
                num_classes=space.num_classes, choices=list(choices),
                keys=[s.key for s in space.arch_specs(list(choices))], blocks=blocks)


def resolve(arch: Arch) -> Arch:
    """Fill keys/blocks from the space, checking the choices against it."""
    return make_arch(arch.space_instance(), arch.choices)


def load_arch(path: str | Path) -> Arch:
    data = json.loads(Path(path).read_text())
    if "first_conv" in data:
        return from_net_config(data)
    return resolve(Arch.model_validate(data))


class Net(nn.Module):
    """Standalone network: prefix ops, one op per searchable layer (identity for zero), suffix ops."""

    def __init__(self, prefix: list[OpSpec], layers: list[OpSpec | None], suffix: list[OpSpec]):
        super().__init__()
        self.prefix = nn.Sequential(*[build_op(s) for s in prefix])
        self.layers = nn.Sequential(*[build_op(s) if s is not None else nn.Identity() for s in layers])
        self.suffix = nn.Sequential(*[build_op(s) for s in suffix])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, R, R) -> (B, classes)
        return self.suffix(self.layers(self.prefix(x)))


def build_net(arch: Arch) -> Net:
    space = arch.space_instance()
    return Net(list(space.prefix), space.layer_specs(arch.choices), list(space.suffix))


def net_from_keys(keys: list[str]) -> nn.Sequential:
    """A net rebuilt from its ordered op keys alone (what a device gets when it does not know the space)."""
    return nn.Sequential(*[build_op(parse_key(k)) for k in keys])


# ---- ProxylessNAS net.config (shared/net_config.py) -------------------------------------------

def to_net_config(arch: Arch) -> dict:
    """The ProxylessNAS / once-for-all ``net.config`` of a proxyless-mobile architecture (zero blocks left out)."""
    return write_net_config(arch.space_instance(), arch.choices, {"momentum": BN_MOMENTUM, "eps": BN_EPS})


def from_net_config(cfg: dict, resolution: int | None = None) -> Arch:
    """Read a proxyless-mobile ``net.config`` back (any zero form; width from every block's channels)."""
    space, choices = read_net_config(cfg, resolution)
    return make_arch(space, choices)


__all__ = ["Arch", "Net", "build_net", "from_net_config", "load_arch", "make_arch", "net_from_keys",
           "resolve", "to_net_config"]
