"""net.config as the published tools read it (published_readers.py), and our import of every form they write."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from published_readers import copy_weights_in_order, ofa_keys, rebuild_like_proxylessnas
from torch import nn

from shared.arch import build_net, from_net_config, load_arch, make_arch, to_net_config
from shared.net_config import canonical_width
from shared.spaces import get_space, make_divisible, mobile_channels
from shared.specs import SpecError

SIX_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def random_arch(res: int, width: float, rng: random.Random, zeros: bool):
    space = get_space("proxyless-mobile", res, width)
    while True:
        choices = [rng.choice([c for c in layer.candidates if zeros or c != "zero"]) for layer in space.layers]
        if not zeros or "zero" in choices:
            return make_arch(space, choices)


@pytest.mark.parametrize("width", SIX_WIDTHS)
def test_round_trip_is_exact(width: float):
    rng = random.Random(int(width * 100))
    for res in (224, 192, 160, 128, 96):
        for i in range(6):
            arch = random_arch(res, width, rng, zeros=i % 2 == 1)
            back = from_net_config(json.loads(json.dumps(to_net_config(arch))))
            assert back == arch, (res, back.width_mult, back.choices, arch.choices)


@pytest.mark.parametrize("width", SIX_WIDTHS)
def test_width_comes_from_every_block_not_the_stem(width: float):
    space = get_space("proxyless-mobile", 224, width)
    cfg = to_net_config(make_arch(space, ["3x3_MBConv6"] * 21))
    del cfg["resolution"], cfg["zero_layers"]  # a published file has neither
    arch = from_net_config(cfg)
    assert arch.width_mult == width and arch.keys == make_arch(space, ["3x3_MBConv6"] * 21).keys
    # The stem alone says another width for 1.4 (48 / 32 = 1.5), 1.3 (40 / 32 = 1.25) and 0.35 (16 / 32).
    assert mobile_channels(cfg["first_conv"]["out_channels"] / 32) != mobile_channels(width) or width in (0.5,
                                                                                                     0.75, 1.0)


def test_canonical_width_builds_the_same_channels():
    for k in range(10, 401):
        w = k / 100
        assert mobile_channels(canonical_width(mobile_channels(w))) == mobile_channels(w), w
    assert mobile_channels(1.4)[0] == make_divisible(32 * 1.4) == 48


@pytest.mark.parametrize(("res", "width"), [(224, 1.0), (160, 0.75), (192, 1.4), (128, 0.35)])
def test_once_for_all_reads_our_keys_with_and_without_zero_layers(res: int, width: float):
    rng = random.Random(res)
    for i in range(10):
        arch = random_arch(res, width, rng, zeros=i % 2 == 1)
        cfg = to_net_config(arch)
        assert ofa_keys(cfg, res) == arch.keys  # zero layers are not in the file, so not looked up


@pytest.mark.parametrize(("res", "width"), [(224, 1.4), (96, 0.35), (128, 1.0)])
def test_proxylessnas_rebuilds_the_same_network(res: int, width: float):
    rng = random.Random(7)
    torch.manual_seed(0)
    for zeros in (False, True):
        arch = random_arch(res, width, rng, zeros)
        ours = build_net(arch).eval()
        for m in ours.modules():  # non-trivial BN statistics, so a misplaced tensor shows
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        theirs = rebuild_like_proxylessnas(copy.deepcopy(to_net_config(arch))).eval()
        copy_weights_in_order(ours, theirs)
        x = torch.randn(2, 3, res, res)
        with torch.no_grad():
            torch.testing.assert_close(theirs(x), ours(x), rtol=1e-4, atol=1e-4)


def _forms(arch) -> dict[str, dict]:
    """The three ways a zero layer appears in the wild; none carries our zero_layers hint."""
    cfg = to_net_config(arch)
    kept = iter(cfg.pop("blocks")[1:])
    first = to_net_config(arch)["blocks"][0]
    cfg.pop("zero_layers")
    in_place = [first]
    for name in arch.choices:
        in_place.append({"name": "MobileInvertedResidualBlock", "shortcut": {"name": "IdentityLayer"},
                         "mobile_inverted_conv": {"name": "ZeroLayer", "stride": 1}} if name == "zero"
                        else next(kept))
    null = copy.deepcopy(in_place)
    for block in null:
        if block["mobile_inverted_conv"]["name"] == "ZeroLayer":
            block["mobile_inverted_conv"] = None
    return {"ZeroLayer": {**cfg, "blocks": in_place}, "null conv": {**cfg, "blocks": null},
            "left out": {**cfg, "blocks": [b for b in in_place if b["mobile_inverted_conv"]["name"] != "ZeroLayer"]}}


def test_import_accepts_all_three_zero_forms():
    space = get_space("proxyless-mobile", 160, 0.75)
    choices = ["5x5_MBConv3", "zero", "7x7_MBConv6", "zero"] * 5 + ["3x3_MBConv6"]
    choices = [c if c in layer.candidates else "3x3_MBConv3" for c, layer in zip(choices, space.layers, strict=True)]
    arch = make_arch(space, choices)
    forms = _forms(arch)
    assert from_net_config(forms["ZeroLayer"]) == arch
    assert from_net_config(forms["null conv"]) == arch
    left_out = from_net_config(forms["left out"])  # without our hint: the same network, zeros last per stage
    assert left_out.keys == arch.keys and left_out.width_mult == 0.75
    assert ofa_keys(forms["null conv"], 160) == arch.keys  # once-for-all skips a null conv
    with pytest.raises(KeyError):  # ...and not a ZeroLayer (why our export leaves the block out)
        ofa_keys(forms["ZeroLayer"], 160)


def test_load_arch_reads_a_net_config_file(tmp_path):
    arch = random_arch(224, 1.3, random.Random(1), zeros=True)
    (tmp_path / "net.config").write_text(json.dumps(to_net_config(arch)))
    assert load_arch(tmp_path / "net.config") == arch


def _bad(mutate) -> SpecError:
    space = get_space("proxyless-mobile", 224, 1.4)
    cfg = to_net_config(make_arch(space, ["5x5_MBConv6"] * 21))
    mutate(cfg)
    with pytest.raises(SpecError) as info:
        from_net_config(cfg)
    return info.value


@pytest.mark.parametrize(("mutate", "field", "words"), [
    (lambda c: c["blocks"][6]["mobile_inverted_conv"].update(out_channels=64), "blocks[6]", ["56->64", "fits neither"]),
    (lambda c: c["blocks"][10]["mobile_inverted_conv"].update(stride=2), "blocks[10]", ["stride 2"]),
    (lambda c: c["blocks"][2]["mobile_inverted_conv"].update(kernel_size=4), "blocks[2]", ["4x4_MBConv6",
                                                                                          "not a candidate"]),
    (lambda c: c["blocks"][1].update(mobile_inverted_conv={"name": "ZeroLayer", "stride": 2}), "blocks[1]",
     ["no shortcut"]),
    (lambda c: c["blocks"].append(copy.deepcopy(c["blocks"][-1])), "blocks[22]", ["one block more"]),
    (lambda c: c["blocks"].pop(1), "blocks[1]", ["does not fit"]),
    (lambda c: c["feature_mix_layer"].update(out_channels=1280), "feature_mix_layer", ["1.4", "1792"]),
    (lambda c: c["first_conv"].update(out_channels=41), "first_conv", ["41", "no width"]),
    (lambda c: c["blocks"][0]["mobile_inverted_conv"].update(out_channels=16), "blocks[0]", ["out_channels 16"]),
    (lambda c: c.pop("classifier"), "net.config", ["classifier"]),
    (lambda c: c["blocks"][3]["mobile_inverted_conv"].update(in_channels="x"), "blocks[3]", ["in_channels"]),
])
def test_a_block_that_does_not_fit_is_named(mutate, field: str, words: list[str]):
    e = _bad(mutate)
    assert e.field == field, str(e)
    for w in words:
        assert w in str(e)


def test_cli_names_the_block(tmp_path, capsys):
    from search_client.cli.main import main
    from search_client.latency.model import required_keys

    space = get_space("proxyless-mobile", 224, 1.0)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({k: 1.0 for k in required_keys(space)}))
    cfg = to_net_config(make_arch(space, ["5x5_MBConv3"] * 21))
    cfg.pop("resolution")
    (tmp_path / "good.config").write_text(json.dumps(cfg))
    assert main(["predict", str(tmp_path / "good.config"), "--table-file", str(table)]) == 0
    assert "predicted 25.000 ms" in capsys.readouterr().out  # 25 ops of 1 ms
    cfg["blocks"][7]["mobile_inverted_conv"]["out_channels"] = 48
    (tmp_path / "bad.config").write_text(json.dumps(cfg))
    assert main(["predict", str(tmp_path / "bad.config"), "--table-file", str(table)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: blocks[7]: 40->48 channels") and "width 1 fits the blocks before it" in err
