"""The spatial family beyond conformance: Resize against onnx's own reference evaluator over a grid
of modes (both kaffa's float64 reference and the cpu kernel through the ONNX backend), shape
inference, and the errors conformance cases cannot show."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kaffa.core import create_operator
from kaffa.errors import KaffaError, ShapeError
from kaffa.schema import SCHEMAS, TensorInfo
from kaffa_conformance import reference

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import kaffa.onnx.backend as kb  # noqa: E402

F32 = np.dtype(np.float32)


def _infer(op: str, shapes, n_out: int = 1, **args) -> list[TensorInfo]:
    schema = SCHEMAS.get(op)
    o = create_operator(op, [f"in{k}" for k in range(len(shapes))], [f"out{j}" for j in range(n_out)], **args)
    return schema.infer_outputs(schema.parse_args(o.arg), [TensorInfo(s, F32) for s in shapes], n_out)


def _onnx_resize(x, scales=None, sizes=None, roi=None, **attrs):
    inputs = ["x", "roi" if roi is not None else "", "scales" if scales is not None else ""]
    feeds = {"x": x}
    if roi is not None:
        feeds["roi"] = np.array(roi, np.float32)
    if scales is not None:
        feeds["scales"] = np.array(scales, np.float32)
    if sizes is not None:
        inputs.append("sizes")
        feeds["sizes"] = np.array(sizes, np.int64)
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    return node, feeds, ReferenceEvaluator(node).run(None, feeds)[0]


GRID = [
    (mode, ctm, extra)
    for mode, ctm in itertools.product(
        ("nearest", "linear", "cubic"),
        ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"),
    )
    for extra in ({}, {"exclude_outside": 1}, {"antialias": 1})
    if not (mode == "nearest" and extra.get("antialias"))
]


@pytest.mark.parametrize(("mode", "ctm", "extra"), GRID)
@pytest.mark.parametrize("scales", [[1, 1, 1.7, 0.6], [1, 1, 0.45, 2.0]])
def test_resize_matches_onnx_reference(mode, ctm, extra, scales):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (1, 2, 5, 6)).astype(np.float32)
    node, feeds, want = _onnx_resize(x, scales=scales, mode=mode, coordinate_transformation_mode=ctm, **extra)
    args = {"mode": mode, "coordinate_transformation_mode": ctm, "scales": list(np.float32(scales))}
    args.update({k: bool(v) for k, v in extra.items()})
    full = SCHEMAS.get("Resize").parse_args(create_operator("Resize", ["x"], ["y"], **args).arg)
    (ref,) = reference.run("Resize", full, [x.astype(np.float64)])
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5)
    (got,) = kb.run_node(node, [feeds[n] for n in node.input if n])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_modes_with_sizes_and_axes(nearest_mode):
    x = np.arange(20, dtype=np.float32).reshape(1, 4, 5)
    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", nearest_mode=nearest_mode, axes=[2]
    )
    feeds = {"x": x, "sizes": np.array([8], np.int64)}
    want = ReferenceEvaluator(node).run(None, feeds)[0]
    (got,) = kb.run_node(node, [x, feeds["sizes"]])
    np.testing.assert_array_equal(got, want)


def test_resize_tf_crop_and_resize_extrapolates():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    roi = [0, 0, -0.3, 0.2, 1, 1, 0.9, 1.4]
    node, feeds, want = _onnx_resize(
        x,
        sizes=[1, 1, 3, 4],
        roi=roi,
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=7.0,
    )
    (got,) = kb.run_node(node, [feeds[n] for n in node.input if n])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (got == 7.0).any()


def test_resize_shape_inference():
    assert _infer("Resize", [(1, 3, 4, 5)], scales=[1.0, 1.0, 1.5, 0.5])[0].shape == (1, 3, 6, 2)
    assert _infer("Resize", [(1, 3, None, 5)], axes=[2, 3], sizes=[7, 8])[0].shape == (1, 3, 7, 8)
    out = _infer("Resize", [(1, 1, 4, 6)], axes=[2, 3], sizes=[6, 6], keep_aspect_ratio_policy="not_larger")
    assert out[0].shape == (1, 1, 4, 6)
    out = _infer("Resize", [(1, 1, 4, 6)], axes=[2, 3], sizes=[6, 6], keep_aspect_ratio_policy="not_smaller")
    assert out[0].shape == (1, 1, 6, 9)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({}, "exactly one of scales and sizes"),
        ({"scales": [2.0]}, "one value per resized axis"),
        ({"scales": [1.0, 2.0], "sizes": [1, 2]}, "exactly one"),
        ({"scales": [1.0, 2.0], "mode": "area"}, "mode must be"),
        ({"scales": [1.0, 2.0], "antialias": True}, "antialias"),
        ({"scales": [1.0, 2.0], "coordinate_transformation_mode": "tf_crop_and_resize"}, "roi"),
        ({"sizes": [3], "axes": [5]}, "out of range"),
    ],
)
def test_resize_errors(args, match):
    with pytest.raises(ShapeError, match=match):
        _infer("Resize", [(2, 3)], **args)


def test_depth_space_and_norm_shape_errors():
    assert _infer("DepthToSpace", [(1, 8, 2, 3)], blocksize=2)[0].shape == (1, 2, 4, 6)
    assert _infer("SpaceToDepth", [(1, 2, 4, 6)], blocksize=2)[0].shape == (1, 8, 2, 3)
    with pytest.raises(ShapeError, match="divisible"):
        _infer("DepthToSpace", [(1, 6, 2, 2)], blocksize=2)
    with pytest.raises(ShapeError, match="divisible"):
        _infer("SpaceToDepth", [(1, 1, 3, 4)], blocksize=2)
    with pytest.raises(ShapeError, match="num_groups"):
        _infer("GroupNorm", [(1, 6, 2, 2), (6,), (6,)], num_groups=4)
    with pytest.raises(ShapeError, match="must be"):
        _infer("InstanceNorm", [(1, 3, 2, 2), (4,), (3,)])
    with pytest.raises(ShapeError, match="broadcast"):
        _infer("RMSNormalization", [(2, 3, 4), (3,)], axis=1)
    assert _infer("GroupNorm", [(2, 6, 2, 2), (6,), (6,)], n_out=3, num_groups=3)[1].shape == (2, 3)
    assert _infer("LpPool", [(1, 2, 5, 5)], kernels=[3, 3], strides=[2, 2])[0].shape == (1, 2, 2, 2)


def test_resize_nearest_is_caffe2s():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    node = helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")
    (got,) = kb.run_node(node, [x, np.array([1, 1, 2, 2], np.float32)])
    from kaffa import Workspace

    ws = Workspace()
    ws.feed_blob("x", x)
    ws.run_operator_once(create_operator("ResizeNearest", ["x"], ["y"], width_scale=2.0, height_scale=2.0))
    np.testing.assert_array_equal(ws.fetch_blob("y"), got)
    np.testing.assert_array_equal(got, x.repeat(2, axis=2).repeat(2, axis=3))


def test_group_normalization_opset18_per_group_scale():
    x = np.random.default_rng(1).normal(size=(2, 4, 3)).astype(np.float32)
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[
            onnx.numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "s"),
            onnx.numpy_helper.from_array(np.array([0.5, -1.0], np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    (got,) = kb.prepare(model).run([x])
    v = x.reshape(2, 2, -1)
    want = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)
    want = want * np.array([2, 3.0])[None, :, None] + np.array([0.5, -1.0])[None, :, None]
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=1e-5, atol=1e-5)


def test_unknown_order_is_refused():
    with pytest.raises(KaffaError):
        _infer("InstanceNorm", [(1, 3, 2, 2), (3,), (3,)], order="CHWN")
