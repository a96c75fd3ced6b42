"""Every registered op type: forward runs, output shape agrees with its key, ONNX export matches torch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from shared import specs
from shared.ops import build_op, registered_types
from shared.specs import OpSpec

EXAMPLES = {
    specs.MBCONV: [OpSpec(specs.MBCONV, 12, 12, 16, 16, kernel=5, stride=1, expand=6, idskip=True),
               OpSpec(specs.MBCONV, 13, 13, 16, 24, kernel=7, stride=2, expand=3),
               OpSpec(specs.MBCONV, 12, 12, 32, 16, kernel=3, stride=1, expand=1)],
    specs.STEM: [OpSpec(specs.STEM, 17, 17, 3, 32, kernel=3, stride=2)],
    specs.FEATURE_MIX: [OpSpec(specs.FEATURE_MIX, 4, 4, 32, 64, kernel=1)],
    specs.LOGITS: [OpSpec(specs.LOGITS, 4, 4, 64, 10)],
    specs.SEP_CONV: [OpSpec(specs.SEP_CONV, 12, 12, 16, 32, kernel=7, stride=2)],
    specs.DIL_CONV: [OpSpec(specs.DIL_CONV, 12, 12, 16, 16, kernel=3, dilation=2)],
    specs.AVG_POOL: [OpSpec(specs.AVG_POOL, 12, 12, 16, 16, kernel=3)],
    specs.MAX_POOL: [OpSpec(specs.MAX_POOL, 12, 12, 16, 16, kernel=3, stride=2)],
    specs.IDENTITY: [OpSpec(specs.IDENTITY, 12, 12, 16, 16)],
    specs.ZERO: [OpSpec(specs.ZERO, 12, 12, 16, 16, stride=2)],
}
CASES = [spec for t in registered_types() for spec in EXAMPLES[t]]


def test_every_type_has_examples():
    assert set(registered_types()) == set(specs.OP_TYPES) == set(EXAMPLES)


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.key)
def test_forward_shape_matches_key(spec):
    y = build_op(spec).eval()(torch.randn(*spec.input_shape(2)))
    assert tuple(y.shape) == spec.output_shape(2)


@pytest.mark.parametrize("spec", [s for s in CASES if s.type != specs.ZERO], ids=lambda s: s.key)
def test_onnx_export_matches_torch(spec, tmp_path):
    module = build_op(spec).eval()
    x = torch.randn(*spec.input_shape(1))
    path = tmp_path / "op.onnx"
    torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
