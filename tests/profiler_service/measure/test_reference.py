"""Drift references: one per space, resolution and width, named so a nominal says which it belongs to."""

import pytest
import torch

from profiler_service.measure.reference import (
    NAME,
    filler_module,
    name_for,
    op_name_for,
    parse,
    reference_module,
    whole_choices,
)


@pytest.mark.parametrize(("space", "resolution", "width"), [
    ("proxyless-mobile", 160, 1.0), ("proxyless-mobile", 96, 1.0), ("proxyless-mobile", 160, 0.75),
    ("proxyless-mobile", 224, 1.4), ("proxyless-cifar", 32, 1.0), ("proxyless-cifar", 8, 0.25)])
def test_each_matched_reference_is_named_parsed_and_built_at_its_size(space, resolution, width):
    name = name_for(space, resolution, width)
    assert parse(name)[:3] == (space, resolution, width)
    module, shape = reference_module(name)
    assert shape == (1, 3, resolution, resolution)
    with torch.inference_mode():
        assert module.eval()(torch.randn(*shape)).shape[0] == 1


def test_the_default_reference_is_the_mobile_space_at_its_defaults():
    assert name_for(None) == name_for("proxyless-mobile", 160, 1.0) == NAME == "proxyless-mobile@160/mix/warm3"
    assert name_for("proxyless-cifar") == "proxyless-cifar@32/3x3_SepConv/warm3"  # the space's defaults
    assert filler_module()[1] == (1, 3, 64, 64)


def test_the_mobile_reference_holds_every_candidate_in_turn_and_the_uniform_one_still_builds():
    from shared.spaces import get_space

    layers = get_space("proxyless-mobile", 96).layers
    choices = whole_choices("proxyless-mobile@96/mix/warm3")
    nonzero = [[c for c in layer.candidates if c != "zero"] for layer in layers]
    assert choices == [cands[i % len(cands)] for i, cands in enumerate(nonzero)]
    assert set(choices) == set(nonzero[0]) and len(nonzero[0]) == 6  # every kernel size and expansion
    assert whole_choices("proxyless-cifar@32/3x3_SepConv/warm3") == ["3x3_SepConv"] * 12
    with pytest.raises(ValueError, match="op reference"):
        whole_choices("proxyless-mobile@96/3x3_MBConv3.layer10/warm3")
    # stored nominals and jobs queued before the mix name the uniform reference: it still parses and builds
    old = "proxyless-mobile@96/3x3_MBConv3/warm3"
    assert parse(old) == ("proxyless-mobile", 96, 1.0, "3x3_MBConv3", None)
    assert reference_module(old)[1] == (1, 3, 96, 96)


@pytest.mark.parametrize("bad", ["", "proxyless-mobile@160/3x3_MBConv3", "proxyless-mobile@160/3x3_SepConv/warm3",
                                 "nope@32/3x3_SepConv/warm3", "proxyless-cifar@abc/3x3_SepConv/warm3",
                                 "proxyless-cifar@32/mix/warm3", "proxyless-mobile@160/mix.layer10/warm3"])
def test_a_name_we_never_build_is_refused(bad):
    with pytest.raises(ValueError, match="unknown drift reference"):
        parse(bad)


@pytest.mark.parametrize(("space", "resolution", "width"), [
    ("proxyless-mobile", 224, 1.0), ("proxyless-mobile", 96, 1.0), ("proxyless-mobile", 160, 1.4),
    ("proxyless-cifar", 32, 1.0), ("proxyless-cifar", 8, 0.25)])
def test_a_space_has_an_op_sized_reference_the_op_of_its_middle_layer(space, resolution, width):
    from shared.spaces import get_space

    name = op_name_for(space, resolution, width)
    assert name != name_for(space, resolution, width) and parse(name)[:3] == (space, resolution, width)
    layers = get_space(space, resolution, width).layers
    op, layer = parse(name)[3:]
    assert layer == len(layers) // 2
    module, shape = reference_module(name)
    assert shape == layers[layer].spec(op).input_shape(1)
    with torch.inference_mode():
        assert module.eval()(torch.randn(*shape)).shape[0] == 1


def test_bare_keys_get_the_default_spaces_op_reference_and_a_layer_it_lacks_is_refused():
    assert op_name_for(None) == "proxyless-mobile@160/3x3_MBConv3.layer10/warm3"
    with pytest.raises(ValueError, match="no 3x3_MBConv3 at layer 99"):
        reference_module("proxyless-mobile@160/3x3_MBConv3.layer99/warm3")
