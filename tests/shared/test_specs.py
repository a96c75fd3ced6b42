import pytest

from shared import specs
from shared.spaces import get_space
from shared.specs import Limits, OpSpec, SpecError, parse_key

PUBLISHED = [
    "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0",
    "expanded_conv-input:7x7x192-output:7x7x320-expand:6-kernel:5-stride:1-idskip:0",
    "expanded_conv-input:28x28x40-output:28x28x40-expand:6-kernel:7-stride:1-idskip:1",
    "Conv-input:224x224x3-output:112x112x32",
    "Conv_1-input:7x7x320-output:7x7x1280",
    "Logits-input:7x7x1280-output:1000",
]


@pytest.mark.parametrize("key", PUBLISHED)
def test_published_keys_round_trip(key):
    assert parse_key(key).key == key


def test_parsed_fields():
    spec = parse_key(PUBLISHED[0])
    assert (spec.type, spec.h, spec.cin, spec.cout, spec.expand, spec.kernel, spec.stride, spec.idskip) == (
        specs.MBCONV, 112, 16, 24, 3, 5, 2, False)
    assert (spec.out_h, spec.out_w) == (56, 56)
    assert parse_key("Conv-input:224x224x3-output:112x112x32").stride == 2


@pytest.mark.parametrize("space", ["proxyless-mobile", "proxyless-cifar"])
@pytest.mark.parametrize("res", [32, 160, 224])
def test_space_keys_round_trip(space, res):
    for spec in get_space(space, res).all_op_specs():
        assert parse_key(spec.key) == spec


def test_output_size_rule_odd_input():
    spec = OpSpec(specs.MBCONV, 15, 15, 16, 24, kernel=3, stride=2, expand=3)
    assert spec.out_h == 8 and "output:8x8x24" in spec.key


@pytest.mark.parametrize("key,field", [
    ("conv3d-input:8x8x3-output:8x8x3", "type"),
    ("expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:4-stride:1-idskip:1", "kernel"),
    ("expanded_conv-input:8x8x16-output:3x3x16-expand:3-kernel:3-stride:3-idskip:0", "stride"),
    ("expanded_conv-input:8x8x16-output:8x8x1000000-expand:3-kernel:3-stride:1-idskip:0", "output channels"),
    ("expanded_conv-input:0x0x16-output:0x0x16-expand:3-kernel:3-stride:1-idskip:0", "input height"),
    ("expanded_conv-input:8x8x16-output:8x8x24-expand:3-kernel:3-stride:1", "key"),
    ("expanded_conv-input:8x8-output:8x8x24-expand:3-kernel:3-stride:1-idskip:0", "input"),
    ("expanded_conv-input:8x8x16-output:4x4x24-expand:3-kernel:3-stride:1-idskip:0", "output"),
    ("expanded_conv-input:8x8x16-output:8x8x24-expand:3-kernel:3-stride:1-idskip:1", "idskip"),
    ("expanded_conv-input:8x8x16-output:8x8x24-expand:x-kernel:3-stride:1-idskip:0", "expand"),
    ("", "key"),
])
def test_bad_keys_name_the_field(key, field):
    with pytest.raises(SpecError) as e:
        parse_key(key)
    assert e.value.field == field, str(e.value)


def test_memory_cap():
    key = "expanded_conv-input:1024x1024x512-output:1024x1024x512-expand:6-kernel:7-stride:1-idskip:1"
    with pytest.raises(SpecError) as e:
        parse_key(key)
    assert e.value.field in ("memory", "expand")
    with pytest.raises(SpecError) as e:
        specs.validate(parse_key("Conv-input:224x224x3-output:112x112x32"), Limits(max_activation_mb=1.0))
    assert e.value.field == "memory"


def test_non_canonical_key_rejected():
    with pytest.raises(SpecError):
        parse_key("Conv_1-input:7x7x320-output:7x7x1280-kernel:1")
