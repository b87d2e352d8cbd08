"""float64 references for the detection family (see kaffa.ops.detection).

RoiAlign is ONNX's reference loop (one roi, bin and sample at a time, four bilinear corners per
sample); comparisons look at real parts only, so its X gradient is taken by the complex step.
NonMaxSuppression is the greedy loop as ONNX writes it, one IoU at a time.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference

H = 1e-30  # complex step


# -- RoiAlign --------------------------------------------------------------------------------------


def _corner_weights(y: float, x: float, height: int, width: int):
    """[(row, col, weight)] of the four bilinear corners of a sample, ONNX's boundary rules."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return [(0, 0, 0.0)] * 4
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return [
        (y_low, x_low, hy * hx),
        (y_low, x_high, hy * lx),
        (y_high, x_low, ly * hx),
        (y_high, x_high, ly * lx),
    ]


def _roi_align(args, x, rois, batch_indices):
    n_rois = len(rois)
    _, c, height, width = x.shape
    oh, ow = args["output_height"], args["output_width"]
    half = args["coordinate_transformation_mode"] == "half_pixel"
    shift = 0.5 if half else 0.0
    y = np.zeros((n_rois, c, oh, ow), x.dtype)
    for r in range(n_rois):
        x1, y1, x2, y2 = (float(v) * args["spatial_scale"] - shift for v in rois[r])
        roi_w, roi_h = x2 - x1, y2 - y1
        if not half:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        ratio = args["sampling_ratio"]
        grid_h = ratio if ratio > 0 else math.ceil(roi_h / oh)
        grid_w = ratio if ratio > 0 else math.ceil(roi_w / ow)
        count = max(grid_h * grid_w, 1)
        img = x[int(batch_indices[r])]
        for ch in range(c):
            for ph in range(oh):
                for pw in range(ow):
                    values = []
                    for iy in range(grid_h):
                        yy = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            xx = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            values.append(
                                [w * img[ch, a, b] for a, b, w in _corner_weights(yy, xx, height, width)]
                            )
                    if args["mode"] == "avg":
                        y[r, ch, ph, pw] = sum(sum(v) for v in values) / count
                    elif values:
                        # the largest weighted corner of any sample (compared on real parts)
                        y[r, ch, ph, pw] = max((v for vs in values for v in vs), key=lambda z: z.real)
    return y


@reference("RoiAlign")
def roi_align(args, x, rois, batch_indices):
    return (_roi_align(args, x, rois, batch_indices),)


@reference("RoiAlignGradient")
def roi_align_gradient(args, x, rois, batch_indices, dy):
    base = x.astype(np.complex128)
    grad = np.zeros(x.shape)
    for j in np.ndindex(x.shape):
        pert = base.copy()
        pert[j] += 1j * H
        grad[j] = np.sum(np.imag(_roi_align(args, pert, rois, batch_indices)) / H * dy)
    return (grad,)


# -- NonMaxSuppression -----------------------------------------------------------------------------


def _iou_above(b1, b2, center: bool, threshold: float) -> bool:
    if center:
        x1 = (b1[0] - b1[2] / 2, b1[0] + b1[2] / 2)
        x2 = (b2[0] - b2[2] / 2, b2[0] + b2[2] / 2)
        y1 = (b1[1] - b1[3] / 2, b1[1] + b1[3] / 2)
        y2 = (b2[1] - b2[3] / 2, b2[1] + b2[3] / 2)
    else:
        y1, x1 = sorted((b1[0], b1[2])), sorted((b1[1], b1[3]))
        y2, x2 = sorted((b2[0], b2[2])), sorted((b2[1], b2[3]))
    iw = min(x1[1], x2[1]) - max(x1[0], x2[0])
    ih = min(y1[1], y2[1]) - max(y1[0], y2[0])
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    a1 = (x1[1] - x1[0]) * (y1[1] - y1[0])
    a2 = (x2[1] - x2[0]) * (y2[1] - y2[0])
    union = a1 + a2 - inter
    if a1 <= 0 or a2 <= 0 or union <= 0:
        return False
    return inter / union > threshold


@reference("NonMaxSuppression")
def non_max_suppression(args, boxes, scores):
    limit, thr = args["max_output_boxes_per_class"], args["score_threshold"]
    center = args["center_point_box"] == 1
    rows = []
    for n in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            cand = [(float(s), b) for b, s in enumerate(scores[n, c]) if thr is None or s > thr]
            cand.sort(key=lambda sb: (-sb[0], sb[1]))  # best score first, ties: lower index
            kept = []
            for _, b in cand:
                if len(kept) >= limit:
                    break
                if not any(_iou_above(boxes[n, b], boxes[n, k], center, args["iou_threshold"]) for k in kept):
                    kept.append(b)
                    rows.append((n, c, b))
    return (np.array(rows, np.int64).reshape(-1, 3),)
