"""Detection ops ONNX needs: RoiAlign and NonMaxSuppression (schemas, shape inference, gradients).

RoiAlign (ONNX RoiAlign-16) pools each region of interest to a fixed grid, averaging (or taking
the max of) bilinear samples; its gradient (RoiAlignGradient) gives dX (the boxes get none).
NonMaxSuppression (ONNX NonMaxSuppression-11) selects boxes greedily by score per batch and class;
its output length depends on the values, so its first dim is inferred as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, Shape, TensorInfo, check, define, same_dtype

INT64 = np.dtype(np.int64)
INT32 = np.dtype(np.int32)

ROI_MODES = ("avg", "max")
ROI_COORD_MODES = ("half_pixel", "output_half_pixel")


def _s(info: TensorInfo | Shape | None) -> str:
    shape = info.shape if isinstance(info, TensorInfo) else info
    return "[?]" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


# -- RoiAlign --------------------------------------------------------------------------------------

ROI_ALIGN_ARGS = [
    Arg("mode", ArgType.STRING, "avg", "avg or max over the samples of a bin"),
    Arg("output_height", ArgType.INT, 1, "pooled height"),
    Arg("output_width", ArgType.INT, 1, "pooled width"),
    Arg("sampling_ratio", ArgType.INT, 0, "samples per bin and axis (0: ceil(roi size / output size))"),
    Arg("spatial_scale", ArgType.FLOAT, 1.0, "rois are scaled by this into X's cells"),
    Arg(
        "coordinate_transformation_mode",
        ArgType.STRING,
        "half_pixel",
        "half_pixel (shift rois by -0.5) or output_half_pixel (no shift; rois at least 1x1)",
    ),
]


def check_roi_align(op: str, args: Mapping[str, Any], ins: list[TensorInfo]) -> Shape | None:
    """RoiAlign's output shape [R, C, output_height, output_width] (None if unknown)."""
    x, rois, idx = ins[:3]
    check(args["mode"] in ROI_MODES, f"{op}: mode must be avg or max, got {args['mode']!r}")
    ctm = args["coordinate_transformation_mode"]
    check(ctm in ROI_COORD_MODES, f"{op}: coordinate_transformation_mode must be one of {ROI_COORD_MODES}")
    oh, ow = args["output_height"], args["output_width"]
    check(oh > 0 and ow > 0, f"{op}: output_height and output_width must be positive, got {oh}, {ow}")
    check(args["sampling_ratio"] >= 0, f"{op}: sampling_ratio must be >= 0")
    check(
        idx.dtype is None or idx.dtype in (INT32, INT64),
        f"{op}: batch_indices must be int32 or int64, got {dtypes.name(idx.dtype)}",
    )
    if x.shape is not None:
        check(len(x.shape) == 4, f"{op}: X {_s(x)} must be [N, C, H, W]")
    r = None
    if rois.shape is not None:
        check(len(rois.shape) == 2 and _same(rois.shape[1], 4), f"{op}: rois {_s(rois)} must be [R, 4]")
        r = rois.shape[0]
    if idx.shape is not None:
        check(len(idx.shape) == 1 and _same(idx.shape[0], r), f"{op}: batch_indices {_s(idx)} must be [R]")
        r = r if r is not None else idx.shape[0]
    if x.shape is None:
        return None
    return (r, x.shape[1], oh, ow)


def _infer_roi_align(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("RoiAlign", ins[:2])
    return [TensorInfo(check_roi_align("RoiAlign", args, ins), dtype)]


define(
    "RoiAlign",
    family="detection",
    doc="Region of interest align (ONNX RoiAlign-16): each roi (x1, y1, x2, y2) of image "
    "batch_indices[r], scaled by spatial_scale, is cut into output_height x output_width bins; a bin "
    "averages (mode avg) sampling_ratio^2 bilinear samples, or (mode max) takes the largest weighted "
    "corner value of any of them. Samples more than one cell outside X read 0.",
    inputs=3,
    input_docs=[("X", "[N, C, H, W]"), ("rois", "[R, 4]"), ("batch_indices", "int [R]")],
    output_docs=[("Y", "[R, C, output_height, output_width]")],
    args=ROI_ALIGN_ARGS,
    infer=_infer_roi_align,
)


def _infer_roi_align_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "RoiAlignGradient"
    x, dy = ins[0], ins[3]
    dtype = same_dtype(op, [x, ins[1], dy])
    out = check_roi_align(op, args, ins[:3])
    if out is not None and dy.shape is not None:
        check(
            len(dy.shape) == 4 and all(_same(a, b) for a, b in zip(out, dy.shape)),
            f"{op}: dY {_s(dy)} is not the output shape {_s(out)}",
        )
    return [TensorInfo(x.shape, dtype)]


define(
    "RoiAlignGradient",
    family="detection",
    doc="Gradient of RoiAlign in X: each dY spread over the cells its samples read, with their "
    "bilinear weights (mode avg, divided by the sample count; mode max, to the winning corner only).",
    inputs=4,
    input_docs=[
        ("X", "forward input"),
        ("rois", "forward input"),
        ("batch_indices", "forward input"),
        ("dY", "gradient of Y"),
    ],
    output_docs=[("dX", "X's shape")],
    args=ROI_ALIGN_ARGS,
    infer=_infer_roi_align_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("RoiAlign")
def _roi_align_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "RoiAlignGradient",
        [g.I(0), g.I(1), g.I(2), g.GO(0)],
        [g.GI(0)],
        [g.GI(0), None, None],
        **g.forward_args(),
    )


# -- NonMaxSuppression -----------------------------------------------------------------------------


def _infer_nms(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "NonMaxSuppression"
    boxes, scores = ins
    same_dtype(op, ins)
    check(args["center_point_box"] in (0, 1), f"{op}: center_point_box must be 0 or 1")
    check(args["max_output_boxes_per_class"] >= 0, f"{op}: max_output_boxes_per_class must be >= 0")
    if boxes.shape is not None:
        check(
            len(boxes.shape) == 3 and _same(boxes.shape[2], 4),
            f"{op}: boxes {_s(boxes)} must be [N, B, 4]",
        )
    if scores.shape is not None:
        check(len(scores.shape) == 3, f"{op}: scores {_s(scores)} must be [N, C, B]")
    if boxes.shape is not None and scores.shape is not None:
        check(
            _same(boxes.shape[0], scores.shape[0]) and _same(boxes.shape[1], scores.shape[2]),
            f"{op}: boxes {_s(boxes)} and scores {_s(scores)} disagree on N or B",
        )
    return [TensorInfo((None, 3), INT64)]


define(
    "NonMaxSuppression",
    family="detection",
    doc="Greedy non-maximum suppression per batch and class (ONNX NonMaxSuppression-11): boxes with "
    "score > score_threshold (when given) are taken by decreasing score (ties: lower index first), "
    "each kept unless its IoU with an already kept box exceeds iou_threshold, at most "
    "max_output_boxes_per_class per class. Output: int64 [selected, 3] rows (batch, class, box), "
    "by batch, class, then selection order. Boxes are (y1, x1, y2, x2) corners in either order, or "
    "with center_point_box (x_center, y_center, width, height).",
    inputs=2,
    input_docs=[("boxes", "[N, B, 4]"), ("scores", "[N, C, B]")],
    output_docs=[("selected_indices", "int64 [selected, 3]")],
    args=[
        Arg("max_output_boxes_per_class", ArgType.INT, 0, "most boxes kept per batch and class (0: none)"),
        Arg("iou_threshold", ArgType.FLOAT, 0.0, "suppress boxes whose IoU with a kept one is above this"),
        Arg("score_threshold", ArgType.FLOAT, None, "keep only boxes scoring above this (default: all)"),
        Arg("center_point_box", ArgType.INT, 0, "0: corners (y1, x1, y2, x2); 1: (xc, yc, w, h)"),
    ],
    infer=_infer_nms,
    differentiable=False,
)
