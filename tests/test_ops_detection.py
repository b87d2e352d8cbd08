"""The detection family beyond conformance: RoiAlign and NonMaxSuppression against onnx's own
reference evaluator on random inputs (through kaffa.onnx.backend), shape inference and errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kaffa.core import create_operator
from kaffa.errors import KaffaError, ShapeError
from kaffa.schema import SCHEMAS, TensorInfo

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import kaffa.onnx.backend as kb  # noqa: E402

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def _infer(op: str, infos, **args) -> list[TensorInfo]:
    schema = SCHEMAS.get(op)
    o = create_operator(op, [f"in{k}" for k in range(len(infos))], ["out"], **args)
    return schema.infer_outputs(schema.parse_args(o.arg), list(infos), 1)


def _rois(rng, n, h, w):
    """Rois partly outside the image too (samples there read 0 or clamp)."""
    x1 = rng.uniform(-2, w, n)
    y1 = rng.uniform(-2, h, n)
    return np.stack([x1, y1, x1 + rng.uniform(0.3, w, n), y1 + rng.uniform(0.3, h, n)], 1).astype(np.float32)


@pytest.mark.parametrize(
    ("mode", "ctm", "ratio", "scale"),
    list(itertools.product(("avg", "max"), ("half_pixel", "output_half_pixel"), (0, 2), (1.0, 0.5))),
)
def test_roi_align_matches_onnx_reference(mode, ctm, ratio, scale):
    rng = np.random.default_rng(abs(hash((mode, ctm, ratio, scale))) % 2**32)
    x = rng.uniform(-2, 2, (2, 3, 7, 8)).astype(np.float32)
    rois = _rois(rng, 5, 7 / scale, 8 / scale)
    idx = rng.integers(0, 2, 5).astype(np.int64)
    node = helper.make_node(
        "RoiAlign",
        ["x", "rois", "idx"],
        ["y"],
        mode=mode,
        coordinate_transformation_mode=ctm,
        output_height=3,
        output_width=2,
        sampling_ratio=ratio,
        spatial_scale=scale,
    )
    feeds = {"x": x, "rois": rois, "idx": idx}
    (want,) = ReferenceEvaluator(node).run(None, feeds)
    (got,) = kb.run_node(node, [x, rois, idx])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_roi_align_shape_inference_and_errors():
    out = _infer(
        "RoiAlign",
        [TensorInfo((2, 3, 8, 8), F32), TensorInfo((5, 4), F32), TensorInfo((5,), I64)],
        output_height=4,
        output_width=3,
    )
    assert out[0].shape == (5, 3, 4, 3)
    with pytest.raises(ShapeError, match="rois"):
        _infer("RoiAlign", [TensorInfo((2, 3, 8, 8), F32), TensorInfo((5, 5), F32), TensorInfo((5,), I64)])
    with pytest.raises(ShapeError, match="batch_indices"):
        _infer("RoiAlign", [TensorInfo((2, 3, 8, 8), F32), TensorInfo((5, 4), F32), TensorInfo((5,), F32)])
    node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"])
    with pytest.raises(KaffaError, match="batch_indices"):
        kb.run_node(
            node, [np.ones((1, 1, 4, 4), np.float32), np.ones((1, 4), np.float32), np.array([3], np.int64)]
        )


@pytest.mark.parametrize("seed", range(12))
def test_nms_matches_onnx_reference_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    n, c, b = rng.integers(1, 3), rng.integers(1, 4), rng.integers(1, 12)
    center = int(rng.integers(0, 2))
    a = rng.uniform(0, 8, (n, b, 2))
    size = rng.uniform(0.5, 4, (n, b, 2))
    if center:
        boxes = np.concatenate([a, size], axis=2)
    else:
        boxes = np.concatenate([a, a + size], axis=2)
        flip = rng.random((n, b)) < 0.3
        boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    scores = rng.uniform(0, 1, (n, c, b))
    scores[..., : b // 3] = scores[..., :1]  # some ties
    feeds = {
        "boxes": boxes.astype(np.float32),
        "scores": scores.astype(np.float32),
        "limit": np.array([rng.integers(0, b + 1)], np.int64),
        "iou": np.array([rng.uniform(0, 0.7)], np.float32),
        "score": np.array([rng.uniform(0, 0.5)], np.float32),
    }
    node = helper.make_node(
        "NonMaxSuppression", ["boxes", "scores", "limit", "iou", "score"], ["sel"], center_point_box=center
    )
    (want,) = ReferenceEvaluator(node).run(None, feeds)
    (got,) = kb.run_node(node, [feeds[k] for k in ("boxes", "scores", "limit", "iou", "score")])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.reshape(-1, 3), want.reshape(-1, 3))


def test_nms_without_optional_inputs_selects_nothing():
    """ONNX: max_output_boxes_per_class defaults to 0."""
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"])
    boxes = np.array([[[0, 0, 1, 1]]], np.float32)
    (got,) = kb.run_node(node, [boxes, np.array([[[0.9]]], np.float32)])
    assert got.shape == (0, 3)


def test_nms_shape_inference_and_errors():
    out = _infer("NonMaxSuppression", [TensorInfo((2, 6, 4), F32), TensorInfo((2, 3, 6), F32)])
    assert out[0].shape == (None, 3) and out[0].dtype == I64
    with pytest.raises(ShapeError, match="disagree"):
        _infer("NonMaxSuppression", [TensorInfo((2, 6, 4), F32), TensorInfo((2, 3, 5), F32)])
    with pytest.raises(ShapeError, match="boxes"):
        _infer("NonMaxSuppression", [TensorInfo((2, 6, 5), F32), TensorInfo((2, 3, 6), F32)])
