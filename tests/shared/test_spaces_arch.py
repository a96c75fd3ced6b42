import json

import pytest
import torch

from shared.arch import Arch, build_net, from_net_config, load_arch, make_arch, net_from_keys, to_net_config
from shared.spaces import get_space
from shared.specs import SpecError


def test_mobile_space_structure():
    sp = get_space("proxyless-mobile", 224)
    assert len(sp.layers) == 21
    assert sum(layer.shortcut for layer in sp.layers) == 15
    assert all(("zero" in layer.candidates) == layer.shortcut for layer in sp.layers)
    keys = {s.key for s in sp.all_op_specs()}
    assert "Conv-input:224x224x3-output:112x112x32" in keys
    assert "Conv_1-input:7x7x320-output:7x7x1280" in keys
    assert "Logits-input:7x7x1280-output:1000" in keys
    assert "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0" in keys


@pytest.mark.parametrize("res", [32, 96, 160, 224])
def test_resolution_not_hard_coded(res):
    sp = get_space("proxyless-mobile", res, width_mult=0.75, num_classes=10)
    net = build_net(make_arch(sp, [c[0] for c in (layer.candidates for layer in sp.layers)])).eval()
    assert net(torch.randn(1, 3, res, res)).shape == (1, 10)


def test_cifar_space():
    sp = get_space("proxyless-cifar", 32)
    assert len(sp.layers) == 12
    assert any("identity" in layer.candidates for layer in sp.layers)
    arch = make_arch(sp, [layer.candidates[-1] for layer in sp.layers])
    assert build_net(arch).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_arch_json_rebuilds_without_space(tmp_path):
    sp = get_space("proxyless-mobile", 64, num_classes=10)
    arch = make_arch(sp, ["zero" if "zero" in layer.candidates else "5x5_MBConv3" for layer in sp.layers])
    assert len(arch.keys) == 2 + 6 + 2  # zero layers dropped
    path = tmp_path / "arch.json"
    path.write_text(arch.model_dump_json())
    again = load_arch(path)
    assert again == arch
    net = net_from_keys(arch.keys).eval()
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_net_config_round_trip(tmp_path):
    sp = get_space("proxyless-mobile", 224)
    arch = make_arch(sp, [layer.candidates[i % len(layer.candidates)] for i, layer in enumerate(sp.layers)])
    cfg = to_net_config(arch)
    n_zero = arch.choices.count("zero")
    assert cfg["first_conv"]["out_channels"] == 32 and len(cfg["blocks"]) == 22 - n_zero > 1  # zeros left out
    assert cfg["blocks"][0]["mobile_inverted_conv"]["expand_ratio"] == 1
    (tmp_path / "net.config").write_text(json.dumps(cfg))
    assert load_arch(tmp_path / "net.config").choices == arch.choices
    assert from_net_config(cfg).keys == arch.keys


def test_bad_arch_is_clear():
    sp = get_space("proxyless-mobile", 224)
    with pytest.raises(SpecError, match="21 searchable layers"):
        make_arch(sp, ["3x3_MBConv3"] * 3)
    with pytest.raises(SpecError, match="not a candidate"):
        make_arch(sp, ["zero"] * 21)
    with pytest.raises(SpecError, match="unknown space"):
        Arch(space="nope", resolution=32, choices=[]).space_instance()
    with pytest.raises(SpecError, match="resolution"):
        get_space("proxyless-mobile", 0)
