"""Quantization ops (kaffa.ops.quant) on cpu: values against onnx.reference on random data, the
saturation the conformance cases stay clear of, and shape / dtype errors."""

from __future__ import annotations

import numpy as np
import pytest

from kaffa import Workspace
from kaffa.core import create_operator
from kaffa.errors import ShapeError
from kaffa.proto import NetDef

onnx = pytest.importorskip("onnx")
ml_dtypes = pytest.importorskip("ml_dtypes")

from onnx import TensorProto as OT  # noqa: E402
from onnx import helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _run(op: str, inputs: list[np.ndarray], n_out: int = 1, **args) -> list[np.ndarray]:
    ws = Workspace()
    names = [f"i{k}" for k in range(len(inputs))]
    for n, v in zip(names, inputs):
        ws.feed_blob(n, v)
    net = NetDef(name=op)
    outs = [f"o{k}" for k in range(n_out)]
    net.op.append(create_operator(op, names, outs, **args))
    ws.run_net_once(net)
    return [ws.fetch_blob(o) for o in outs]


def _onnx(op: str, inputs: list[np.ndarray], n_out: int = 1, opset: int = 23, **attrs) -> list[np.ndarray]:
    names = [f"i{k}" for k in range(len(inputs))]
    outs = [f"o{k}" for k in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, 0, None) for n in names],
        [helper.make_tensor_value_info(o, 0, None) for o in outs],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    "zp_dtype", [np.uint8, np.int8, np.uint16, np.int16, ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2]
)
def test_quantize_matches_onnx_per_axis(zp_dtype):
    x = RNG.uniform(-40, 40, (2, 3, 4)).astype(np.float32)  # saturates the narrow types
    scale = np.array([0.5, 1.0, 2.0], np.float32)
    zp = np.array([0, 1, -1 if np.dtype(zp_dtype).name[0] == "i" else 2], np.float64).astype(zp_dtype)
    (got,) = _run("QuantizeLinear", [x, scale, zp], axis=1, to=np.dtype(zp_dtype).name)
    _same(got, _onnx("QuantizeLinear", [x, scale, zp], axis=1)[0])


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"])
@pytest.mark.parametrize("saturate", [1, 0])
def test_quantize_float8_matches_onnx(name, saturate):
    x = RNG.uniform(-2e5, 2e5, (4, 5)).astype(np.float32)
    scale = np.float32(2.0)
    zp = np.zeros((1,), getattr(ml_dtypes, name))
    (got,) = _run("QuantizeLinear", [x, np.asarray(scale), zp], saturate=bool(saturate))
    want = _onnx("QuantizeLinear", [x, np.asarray(scale), zp], saturate=saturate)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))  # NaN == NaN here


def test_quantize_blocked_and_dequantize_round_trip():
    x = RNG.uniform(-1, 1, (3, 5)).astype(np.float32)  # |x / scale| + |zp| < 127: no saturation
    scale = RNG.uniform(0.01, 0.05, (3, 3)).astype(np.float32)
    zp = RNG.integers(-5, 5, (3, 3)).astype(np.int8)
    (q,) = _run("QuantizeLinear", [x, scale, zp], axis=1, block_size=2, to="INT8")
    _same(q, _onnx("QuantizeLinear", [x, scale, zp], axis=1, block_size=2)[0])
    (back,) = _run("DequantizeLinear", [q, scale, zp], axis=1, block_size=2)
    _same(back, _onnx("DequantizeLinear", [q, scale, zp], axis=1, block_size=2)[0])
    assert np.abs(back - x).max() <= scale.max() / 2 + 1e-6


def test_dynamic_quantize_matches_onnx():
    x = RNG.uniform(-1, 3, (4, 6)).astype(np.float32)
    got = _run("DynamicQuantizeLinear", [x], n_out=3)
    for g, w in zip(got, _onnx("DynamicQuantizeLinear", [x], n_out=3, opset=11)):
        _same(g, np.asarray(w))


def test_matmul_and_conv_integer_match_onnx():
    a, b = RNG.integers(0, 255, (2, 3, 4)).astype(np.uint8), RNG.integers(0, 255, (4, 5)).astype(np.uint8)
    za, zb = np.array(128, np.uint8), np.array(3, np.uint8)
    _same(_run("MatMulInteger", [a, b, za, zb])[0], _onnx("MatMulInteger", [a, b, za, zb], opset=10)[0])
    x, w = (
        RNG.integers(-128, 127, (1, 2, 5, 5)).astype(np.int8),
        RNG.integers(-128, 127, (3, 2, 3, 3)).astype(np.int8),
    )
    zx, zw = np.array(-3, np.int8), np.array([1, 0, -2], np.int8)
    got = _run("ConvInteger", [x, w, zx, zw], pads=[1, 1, 1, 1], strides=[2, 1])[0]
    want = _onnx("ConvInteger", [x, w, zx, zw], opset=10, pads=[1, 1, 1, 1], strides=[2, 1])[0]
    _same(got, want)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_ops_saturate_like_onnx(dt):
    info = np.iinfo(dt)
    a = RNG.integers(info.min, info.max, (3, 4)).astype(dt)
    b = RNG.integers(info.min, info.max, (4, 2)).astype(dt)
    s = np.array([0.02], np.float32)
    z = np.array([3], dt)
    args = [a, s, z, b, s, z, np.array([0.01], np.float32), z]  # a small y_scale: many saturate
    got = _run("QLinearMatMul", args)[0]
    _same(got, _onnx("QLinearMatMul", args, opset=21)[0])
    assert {int(info.min), int(info.max)} & set(got.reshape(-1).tolist())
    x = RNG.integers(info.min, info.max, (1, 2, 4, 4)).astype(dt)
    w = RNG.integers(info.min, info.max, (2, 2, 2, 2)).astype(dt)
    bias = np.array([100, -100], np.int32)
    cargs = [
        x,
        s,
        z,
        w,
        np.array([0.01, 0.02], np.float32),
        np.array([0, 0], dt),
        np.array([2.0], np.float32),
        z,
        bias,
    ]
    _same(_run("QLinearConv", cargs)[0], _onnx("QLinearConv", cargs, opset=10)[0])


@pytest.mark.parametrize(
    ("x", "to"),
    [(np.array([1.5, -2.0], np.float32), OT.INT32), (np.array([True, False]), OT.UINT8),
     (np.array(3.25, np.float64), OT.INT64), (np.array([-1, 5], np.int8), OT.UINT8)],
)  # fmt: skip
def test_bitcast_matches_onnx(x, to):
    (got,) = _run("BitCast", [x], to=OT.DataType.Name(to))  # kaffa's enum numbers differ, names match
    _same(got, _onnx("BitCast", [x], opset=26, to=to)[0])


def test_shape_and_dtype_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ShapeError, match="neither per tensor nor per axis"):
        _run("QuantizeLinear", [x, np.ones(4, np.float32)], axis=1)
    with pytest.raises(ShapeError, match="blocked scale must have shape"):
        _run("QuantizeLinear", [x, np.ones((2, 3), np.float32)], axis=1, block_size=2)
    with pytest.raises(ShapeError, match="cannot quantize to int32"):
        _run("QuantizeLinear", [x, np.ones(1, np.float32)], to="INT32")
    with pytest.raises(ShapeError, match="differ in width"):
        _run("BitCast", [x], to="INT64")
    with pytest.raises(ShapeError, match="do not match"):
        _run("MatMulInteger", [np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.uint8)])
    with pytest.raises(ShapeError, match="int8 or uint8"):
        _run("ConvInteger", [np.zeros((1, 1, 3, 3), np.int32), np.zeros((1, 1, 2, 2), np.int32)])
