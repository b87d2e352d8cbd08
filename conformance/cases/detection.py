"""Conformance cases for the detection family (see kaffa.ops.detection).

RoiAlign rois lie inside the image with room to spare, and X is random, so no sample sits on a
cell boundary and mode max has no ties: every case is a gradient case (in X). NonMaxSuppression
boxes come on a coarse grid (exact in float16) with distinct scores, and the thresholds sit away
from every IoU that occurs, so every dtype selects the same boxes.
"""

from __future__ import annotations

import numpy as np

from kaffa_conformance.cases import EXACT, REDUCTION, Case, cases, uniform

I64 = np.int64


@cases("RoiAlign")
def roi_align(rng):
    def case(name, x_shape, n_rois, samples, **args):
        n, _, h, w = x_shape
        scale = args.get("spatial_scale", 1.0)
        x1 = rng.uniform(0.2, w * 0.45, n_rois) / scale
        y1 = rng.uniform(0.2, h * 0.45, n_rois) / scale
        x2 = x1 + rng.uniform(1.0, w * 0.5, n_rois) / scale
        y2 = y1 + rng.uniform(1.0, h * 0.5, n_rois) / scale
        rois = np.stack([x1, y1, x2, y2], axis=1)
        idx = rng.integers(0, n, n_rois).astype(I64)
        return Case(
            "RoiAlign",
            name,
            [uniform(rng, x_shape, -2, 2), rois, idx],
            args,
            op_class=REDUCTION,
            reduction=4 * samples,
            fixed_dtype_inputs={2: I64},
            grad_inputs=[0],
        )

    return [
        case("avg_half_pixel", (2, 2, 6, 7), 3, 4, output_height=2, output_width=3, sampling_ratio=2),
        case(
            "avg_output_half_pixel_adaptive",
            (1, 3, 7, 6),
            2,
            16,
            output_height=2,
            output_width=2,
            coordinate_transformation_mode="output_half_pixel",
        ),
        case(
            "avg_scale",
            (2, 1, 8, 8),
            3,
            9,
            output_height=3,
            output_width=2,
            sampling_ratio=3,
            spatial_scale=0.5,
        ),
        case("max", (1, 2, 6, 6), 2, 4, output_height=2, output_width=2, sampling_ratio=2, mode="max"),
        case(
            "max_output_half_pixel",
            (2, 1, 7, 7),
            3,
            4,
            output_height=3,
            output_width=3,
            sampling_ratio=2,
            mode="max",
            coordinate_transformation_mode="output_half_pixel",
        ),
    ]


def _boxes(rng, n, b, center=False):
    """Boxes on a 0.5 grid; corners in either order (or centre form)."""
    a = rng.integers(0, 16, (n, b, 2)) / 2
    size = rng.integers(2, 10, (n, b, 2)) / 2
    if center:
        return np.concatenate([a + size / 2, size], axis=2)[..., [1, 0, 3, 2]]
    corners = np.concatenate([a, a + size], axis=2)  # y1, x1, y2, x2
    flip = rng.random((n, b)) < 0.3
    corners[flip] = corners[flip][:, [2, 3, 0, 1]]
    return corners


def _scores(rng, n, c, b):
    return (
        np.stack([rng.permutation(b * c)[:b].reshape(1, b) for _ in range(n * c)]).reshape(n, c, b)
        / (2 * b * c)
        + 0.0625
    )


@cases("NonMaxSuppression")
def non_max_suppression(rng):
    def case(name, n, c, b, center=False, **args):
        boxes = _boxes(rng, n, b, center)
        return Case(
            "NonMaxSuppression",
            name,
            [boxes, _scores(rng, n, c, b)],
            {"center_point_box": int(center), **args},
            op_class=EXACT,
        )

    return [
        case("basic", 1, 1, 8, max_output_boxes_per_class=4, iou_threshold=0.33),
        case(
            "score_threshold", 2, 2, 9, max_output_boxes_per_class=9, iou_threshold=0.41, score_threshold=0.25
        ),
        case("center_point", 1, 2, 7, center=True, max_output_boxes_per_class=3, iou_threshold=0.27),
        case("no_limit_zero", 1, 1, 5, max_output_boxes_per_class=0, iou_threshold=0.5),
        case("iou_zero", 2, 1, 6, max_output_boxes_per_class=6, iou_threshold=0.0),
    ]
