"""What the published tools do with our files, written from their documented behaviour (not their code).

- once-for-all's ``ProxylessNASLatencyTable.predict_network_latency_given_config`` walks ``blocks``, skips a
  block whose conv is null, builds each key from ``in_channels``, ``out_channels``, ``expand_ratio``,
  ``kernel_size``, ``stride`` and whether ``shortcut`` is null (feature size ``(f - 1) // stride + 1``), and
  sums ``lut[key]["mean"]``.
- ProxylessNAS's ``ProxylessNASNets.build_from_config`` makes each block from ``MBInvertedConvLayer(**conv)``
  (the released package takes in/out channels, kernel_size, stride, expand_ratio only), calls
  ``conv.is_zero_layer()`` in forward (so every listed block needs a conv mapping) and applies ``bn``.
"""

from __future__ import annotations

import torch
from torch import nn

RELEASED_MBCONV_ARGS = {"name", "in_channels", "out_channels", "kernel_size", "stride", "expand_ratio"}


def ofa_keys(cfg: dict, image_size: int) -> list[str]:
    """The keys once-for-all looks up for a net.config, in its order."""
    f = (image_size + 1) // 2
    keys = [f"Conv-input:{image_size}x{image_size}x3-output:{f}x{f}x{cfg['first_conv']['out_channels']}"]
    for block in cfg["blocks"]:
        conv = block["mobile_inverted_conv"] if "mobile_inverted_conv" in block else block["conv"]
        if conv is None:
            continue
        out = int((f - 1) / conv["stride"] + 1)
        keys.append(f"expanded_conv-input:{f}x{f}x{conv['in_channels']}-output:{out}x{out}x{conv['out_channels']}"
                    f"-expand:{conv['expand_ratio']}-kernel:{conv['kernel_size']}-stride:{conv['stride']}"
                    f"-idskip:{int(block['shortcut'] is not None)}")
        f = out
    mix = cfg["feature_mix_layer"]
    keys.append(f"Conv_1-input:{f}x{f}x{mix['in_channels']}-output:{f}x{f}x{mix['out_channels']}")
    keys.append(f"Logits-input:{f}x{f}x{cfg['classifier']['in_features']}-output:"
                f"{cfg['classifier']['out_features']}")
    return keys


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            *([nn.ReLU6()] if act else [])]


class _Block(nn.Module):
    def __init__(self, conv: dict, shortcut: dict | None):
        super().__init__()
        cin, cout, k, s, e = (conv[n] for n in ("in_channels", "out_channels", "kernel_size", "stride",
                                               "expand_ratio"))
        mid = round(cin * e)
        self.body = nn.Sequential(*(_conv_bn(cin, mid, 1) if e > 1 else []), *_conv_bn(mid, mid, k, s, mid),
                                  *_conv_bn(mid, cout, 1, act=False))
        self.skip = shortcut is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x if self.skip else self.body(x)


def rebuild_like_proxylessnas(cfg: dict) -> nn.Module:
    """Block by block from the config, as build_from_config does; fails where it would fail."""
    first, mix, cls = cfg["first_conv"], cfg["feature_mix_layer"], cfg["classifier"]
    blocks = []
    for i, block in enumerate(cfg["blocks"]):
        conv = block["mobile_inverted_conv"]
        assert isinstance(conv, dict), f"blocks[{i}]: forward would call is_zero_layer() on {conv!r}"
        assert conv["name"] == "MBInvertedConvLayer", f"blocks[{i}]: {conv['name']}"
        assert set(conv) <= RELEASED_MBCONV_ARGS, f"blocks[{i}]: MBInvertedConvLayer(**{sorted(conv)}) fails"
        assert block["shortcut"] is None or block["shortcut"]["name"] == "IdentityLayer"
        blocks.append(_Block(conv, block["shortcut"]))
    net = nn.Sequential(*_conv_bn(3, first["out_channels"], first["kernel_size"], first["stride"]), *blocks,
                        *_conv_bn(mix["in_channels"], mix["out_channels"], 1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(cls["in_features"], cls["out_features"]))
    for m in net.modules():  # proxyless_base applies the file's "bn" after building
        if isinstance(m, nn.BatchNorm2d):
            m.momentum, m.eps = cfg["bn"]["momentum"], cfg["bn"]["eps"]
    return net


def copy_weights_in_order(src: nn.Module, dst: nn.Module) -> None:
    a = [v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")]
    names = [k for k in dst.state_dict() if not k.endswith("num_batches_tracked")]
    assert [tuple(v.shape) for v in a] == [tuple(dst.state_dict()[k].shape) for k in names]
    dst.load_state_dict(dict(zip(names, a, strict=True)), strict=False)




def ofa_predict(lut: dict, cfg: dict, image_size: int) -> float:
    """once-for-all's prediction: the table's ``mean`` summed over the keys it builds."""
    return sum(lut[key]["mean"] for key in ofa_keys(cfg, image_size))
