"""The index family: shape inference with value-dependent dims, errors, gradients through a net,
and ONNX import against onnxruntime for translator paths the node suite does not reach."""

from __future__ import annotations

import numpy as np
import pytest
from optest import infer, run

import kaffa
from kaffa.core import create_operator
from kaffa.errors import ShapeError
from kaffa.proto import NetDef
from kaffa.schema import TensorInfo
from kaffa.workspace import Workspace

F32, I64 = np.dtype(np.float32), np.dtype(np.int64)


def test_value_dependent_shapes_are_unknown():
    assert infer("NonZero", [TensorInfo((3, 4), F32)])[0] == TensorInfo((2, None), I64)
    assert infer("Compress", [TensorInfo((3, 4), F32), TensorInfo((4,), np.dtype(bool))], axis=1)[0] == (
        TensorInfo((3, None), F32)
    )
    assert infer("Compress", [TensorInfo((3, 4), F32), TensorInfo((5,), np.dtype(bool))])[0].shape == (None,)
    scalar = TensorInfo((), F32)
    assert infer("Range", [scalar] * 3)[0] == TensorInfo((None,), F32)
    assert infer("ConstantOfShape", [TensorInfo((3,), I64)], value=1.0)[0].shape == (None, None, None)
    assert infer("OneHot", [TensorInfo((2, 3), I64), TensorInfo((), I64), TensorInfo((2,), F32)], axis=1)[
        0
    ] == (TensorInfo((2, None, 3), F32))


def test_static_shapes():
    x = TensorInfo((2, 5, 3), F32)
    assert infer("ArgMax", [x], axis=1)[0] == TensorInfo((2, 1, 3), I64)
    assert infer("ArgMin", [x], axis=0, keepdims=0)[0] == TensorInfo((5, 3), I64)
    values, indices = infer("TopK", [x], 2, k=2, axis=1)
    assert values == TensorInfo((2, 2, 3), F32) and indices == TensorInfo((2, 2, 3), I64)
    assert infer("TopK", [x, TensorInfo((1,), I64)], 2, axis=1)[0].shape == (2, None, 3)
    idx = TensorInfo((4, 2), I64)
    assert infer("GatherND", [x, idx])[0] == TensorInfo((4, 3), F32)


def test_shape_errors():
    with pytest.raises(ShapeError, match="k=7 exceeds"):
        infer("TopK", [TensorInfo((2, 5), F32)], 2, k=7)
    with pytest.raises(ShapeError, match="last dim 4"):
        infer("GatherND", [TensorInfo((2, 3), F32), TensorInfo((1, 4), I64)])
    with pytest.raises(ShapeError, match="rank >= 2"):
        infer("Trilu", [TensorInfo((3,), F32)])
    with pytest.raises(Exception, match="reduction"):
        infer("ScatterElements", [TensorInfo((3,), F32)] * 3, reduction="sum")


def test_kernels_reject_out_of_range_indices():
    with pytest.raises(Exception, match="out of range"):
        run("GatherElements", [np.zeros((2, 3), np.float32), np.array([[0, 3, 1]])], axis=1)


def test_topk_grad_scatters_into_zeros():
    x = np.array([[3.0, 1.0, 4.0, 1.5], [0.5, 9.0, 2.0, 6.0]], np.float32)
    ws = Workspace("topk_grad")
    ws.feed_blob("x", x)
    ws.feed_blob("v_grad", np.ones((2, 2), np.float32))
    net = NetDef(name="g")
    net.op.append(create_operator("TopK", ["x"], ["v", "i"], k=2))
    from kaffa.gradients import make_gradient

    made = make_gradient(net.op[0], ["v_grad", None], ["x_grad"])
    net.op.extend(made.ops)
    ws.create_net(net).run()
    np.testing.assert_array_equal(ws.fetch_blob("x_grad"), [[1, 0, 1, 0], [0, 1, 0, 1]])


def test_cumprod_gradient_with_zero():
    x = np.array([2.0, 0.0, 3.0, 4.0])
    y = np.cumprod(x)
    (dx,) = run("CumProdGradient", [x, y, np.ones(4)])
    # d/dx1 of sum(cumprod) = x0 + x0*x2 + x0*x2*x3 = 2 + 6 + 24
    np.testing.assert_allclose(dx, [1.0, 32.0, 0.0, 0.0])


# -- ONNX import --------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as OT  # noqa: E402
from onnx import helper  # noqa: E402

from kaffa.onnx import import_model  # noqa: E402


def _compare(nodes, feeds, outputs, opset=17):
    """``outputs``: {name: ONNX element type}."""

    def vi(name, value):
        elem = helper.np_dtype_to_tensor_dtype(value.dtype)
        return helper.make_tensor_value_info(name, elem, list(value.shape))

    graph = helper.make_graph(
        nodes,
        "g",
        [vi(k, v) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, t, None) for o, t in outputs.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    init, predict = import_model(model)
    got = kaffa.Predictor(init, predict).run(feeds)
    for w, g in zip(want, got):
        np.testing.assert_allclose(np.asarray(g), w)


def test_onnx_topk_with_runtime_k_and_cumsum_runtime_axis():
    x = np.random.default_rng(1).permutation(12).astype(np.float32).reshape(3, 4)
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=0),
        helper.make_node("CumSum", ["x", "ax"], ["c"], reverse=1),
    ]
    feeds = {"x": x, "k": np.array([2], np.int64), "ax": np.array(0, np.int64)}
    _compare(nodes, feeds, {"v": OT.FLOAT, "i": OT.INT64, "c": OT.FLOAT})


def test_onnx_hardmax_before_opset_13_coerces_to_2d():
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    _compare([helper.make_node("Hardmax", ["x"], ["y"], axis=1)], {"x": x}, {"y": OT.FLOAT}, opset=11)


def test_onnx_trilu_runtime_k_and_scatter_alias():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [helper.make_node("Trilu", ["x", "k"], ["y"], upper=0)]
    _compare(nodes, {"x": x, "k": np.array(1, np.int64)}, {"y": OT.FLOAT})
    idx = np.array([[1, 0, 2, 0]], np.int64)
    upd = np.ones((1, 4), np.float32)
    nodes = [helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=0)]
    _compare(nodes, {"x": x, "i": idx, "u": upd}, {"y": OT.FLOAT}, opset=9)
