"""Every runtime plug-in with its real converter and interpreter: convert, run, agree with PyTorch, cache,
and measure ops and whole networks in the real benchmark child."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from profiler_service.measure.backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    LiteRTBackend,
    OnnxRuntimeInt8Backend,
    OpenVinoBackend,
    available_backends,
    deployed,
    get_backend,
    precision_of,
    unavailable_reason,
)
from profiler_service.measure.protocol import Protocol
from profiler_service.measure.reference import name_for, op_name_for
from profiler_service.measure.runner import EngineConfig, MeasureError, measure_network, measure_ops
from shared.arch import make_arch
from shared.ops import build_op
from shared.spaces import get_space
from shared.specs import parse_key

FAST = Protocol(budget_s=0.2, warmup_runs=2, warmup_s=0.0, min_runs=10, retry_wait_s=0.05, max_slowdown=1.0)
MB = "expanded_conv-input:16x16x16-output:16x16x16-expand:6-kernel:5-stride:1-idskip:1"
STEM = "Conv-input:32x32x3-output:16x16x16"
EDGE = ["litert", "litert-int8", "onnxruntime-int8", "openvino"]
# The bench space: small enough to convert in seconds, every kind of op a mobile network has.
SPACE = get_space("proxyless-mobile", 32, 0.35, 10)


def test_every_edge_runtime_is_installed_and_names_its_precision():
    assert set(EDGE) <= set(available_backends())
    assert [precision_of(b) for b in EDGE] == ["float32", "int8", "int8", "float32"]


def test_a_runtime_that_is_not_installed_names_the_extra_to_install():
    class Missing(Backend):
        name = "missing-runtime"
        requires = ("a_module_that_is_not_installed_anywhere",)
        extra = "missing"

        def runner(self, module, input_shape, cache_key):
            raise AssertionError("never built")

    BACKENDS[Missing.name] = Missing
    try:
        reason = unavailable_reason(Missing.name)
        assert "pip install 'proxyless-latency[missing]'" in reason and "not available" in reason
        assert Missing.name not in available_backends()
        with pytest.raises(BackendUnavailable, match=r"\[missing\]"):
            get_backend(Missing.name, threads=1, cache_dir=".")
    finally:
        del BACKENDS[Missing.name]
    assert "no such runtime" in unavailable_reason("no-such-runtime")


def _torch_output(module: torch.nn.Module, shape: tuple[int, ...]) -> np.ndarray:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    with torch.no_grad():
        return module(x).numpy()


def test_fp32_runtimes_compute_what_pytorch_computes(tmp_path):
    """Same input, same deployed weights: OpenVINO on NCHW, LiteRT on NHWC (its converted interface)."""
    spec = parse_key(MB)
    shape = spec.input_shape(1)
    module = deployed(build_op(spec))
    want = _torch_output(module, shape)

    ov = OpenVinoBackend(threads=1, cache_dir=tmp_path)
    result, _ = ov.runner(module, shape, MB)()
    assert np.allclose(np.asarray(next(iter(result.values()))), want, atol=1e-4)

    lite = LiteRTBackend(threads=1, cache_dir=tmp_path)
    interp = lite.interpreter(lite.model_path(module, shape, MB))
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    interp.set_tensor(interp.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
    assert np.allclose(got, want, atol=1e-4)


def test_int8_onnxruntime_is_quantised_and_close(tmp_path):
    import onnx
    import onnxruntime

    spec = parse_key(MB)
    shape = spec.input_shape(1)
    module = deployed(build_op(spec))
    backend = OnnxRuntimeInt8Backend(threads=1, cache_dir=tmp_path)
    path = backend.model_path(module, shape, MB)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = _torch_output(module, shape)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.98  # int8: close, not equal


def test_litert_int8_is_a_full_integer_model(tmp_path):
    """A residual MBConv: its convolutions and its residual add in int8, int8 at the edges; not one float
    tensor (a float add would mean a DEQUANTIZE and a QUANTIZE around it in every residual block)."""
    backend = get_backend("litert-int8", threads=1, cache_dir=tmp_path)
    spec = parse_key(MB)
    assert spec.idskip
    interp = backend.interpreter(backend.model_path(build_op(spec), spec.input_shape(1), MB))
    dtypes = {np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    assert np.dtype(np.int8) in dtypes and dtypes <= {np.dtype(np.int8), np.dtype(np.int32)}, dtypes
    assert interp.get_input_details()[0]["dtype"] == np.int8
    interp.invoke()


@pytest.mark.parametrize("name", EDGE)
def test_conversions_are_cached(tmp_path, name):
    backend = get_backend(name, threads=1, cache_dir=tmp_path)
    spec = parse_key(STEM)
    first = backend.model_path(build_op(spec), spec.input_shape(1), STEM)
    stamp = first.stat().st_mtime_ns
    again = get_backend(name, threads=1, cache_dir=tmp_path).model_path(build_op(spec), spec.input_shape(1), STEM)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.tmp*"))  # no half-written conversion left behind


@pytest.mark.parametrize("name", ["onnxruntime", *EDGE])
def test_a_prepared_op_is_measured_without_converting_again(tmp_path, name):
    """``prepare_op`` converts what ``measure_op`` times (bench/profile_table.py splits a table's time so)."""
    spec = parse_key(MB)
    get_backend(name, threads=1, cache_dir=tmp_path).prepare_op(spec, 1, FAST)
    converted = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert converted and not [p for p in converted if ".tmp" in p.name]
    fresh = get_backend(name, threads=1, cache_dir=tmp_path)  # a new child: only the cache is shared
    stats = fresh.measure_op(spec, 1, dataclasses.replace(FAST, drift_reference=False))
    assert stats.median_ms > 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == converted


@pytest.mark.parametrize("name", EDGE)
def test_ops_and_a_whole_network_measured_in_the_child(tmp_path, name):
    arch = make_arch(SPACE, [layer.candidates[i % 3] for i, layer in enumerate(SPACE.layers)])
    keys = [k for k in arch.keys if not k.startswith("zero")]
    got = {}
    ops = EngineConfig(backend=name, threads=1, batch=1, protocol=FAST, cache_dir=tmp_path,
                       reference=op_name_for(SPACE.name, 32, 0.35))
    assert measure_ops(keys[:3], ops, on_result=got.__setitem__)
    assert set(got) == set(keys[:3])
    for stats in got.values():
        assert stats.count >= 5 and 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms and stats.ref_ms > 0
    before = set(tmp_path.iterdir())
    whole = EngineConfig(backend=name, threads=1, batch=1, protocol=FAST, cache_dir=tmp_path,
                         reference=name_for(SPACE.name, 32, 0.35))
    net = measure_network(keys, whole)
    assert net.median_ms > 0 and net.ref_ms > 0 and net.count >= 5
    # the network and its whole reference, each converted as one model (and ONNX files under them)
    assert 2 <= len(set(tmp_path.iterdir()) - before) <= 4


def test_an_op_the_runtime_cannot_measure_fails_alone(tmp_path):
    """The other ops are measured and handed over; the error names the op that failed."""
    got = {}
    bad = "expanded_conv-input:16x16x16-output:16x16x16-expand:6-kernel:5-stride:1-idskip:maybe"
    with pytest.raises(MeasureError, match=r"1 op\(s\) could not be measured on litert .*idskip:maybe") as err:
        measure_ops([STEM, bad, MB], EngineConfig(backend="litert", threads=1, batch=1, protocol=FAST,
                                                  cache_dir=tmp_path), on_result=got.__setitem__)
    assert set(got) == {STEM, MB} and err.value.label == bad
