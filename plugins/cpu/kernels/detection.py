"""cpu kernels for the detection family (see kaffa.ops.detection).

RoiAlign runs one roi at a time (the sample count per bin may differ between rois) and reads
all channels and bins of a roi at once: per axis the sample coordinates give (low, high, weight)
pairs, and the four bilinear corners are gathered with fancy indexing. NonMaxSuppression loops
over batches and classes; the IoU of the next box against all kept ones is one vector step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype
from kaffa.ops.detection import check_roi_align
from kaffa.schema import TensorInfo, check

table = KernelTable("cpu")


# -- RoiAlign --------------------------------------------------------------------------------------


def _axis_samples(start: float, bin_size: float, bins: int, grid: int, size: int):
    """Per sample along one axis ([bins * grid], bin-major): valid, low, high, weight of low, of high."""
    pos = start + np.arange(bins)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid
    pos = pos.reshape(-1)
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    top = low >= size - 1
    low = np.where(top, size - 1, low)
    high = np.where(top, size - 1, low + 1)
    pos = np.where(top, low, pos)
    frac = pos - low
    return valid, low, high, 1.0 - frac, frac


def _roi_plan(args: Mapping[str, Any], roi: np.ndarray, h: int, w: int):
    """Everything one roi needs: (sample grid sizes, per-axis samples) - see _axis_samples."""
    half = args["coordinate_transformation_mode"] == "half_pixel"
    shift = 0.5 if half else 0.0
    x1, y1, x2, y2 = (float(v) * args["spatial_scale"] - shift for v in roi)
    rw, rh = x2 - x1, y2 - y1
    if not half:  # malformed rois are forced to 1 x 1
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    oh, ow, ratio = args["output_height"], args["output_width"], args["sampling_ratio"]
    gh = ratio if ratio > 0 else math.ceil(rh / oh)
    gw = ratio if ratio > 0 else math.ceil(rw / ow)
    ys = _axis_samples(y1, rh / oh, oh, gh, h)
    xs = _axis_samples(x1, rw / ow, ow, gw, w)
    return gh, gw, ys, xs


def _corners(ys, xs):
    """The four bilinear corners: (row index, col index, weight [Sy, Sx]) with invalid samples at 0."""
    vy, yl, yh, wyl, wyh = ys
    vx, xl, xh, wxl, wxh = xs
    valid = vy[:, None] & vx[None, :]
    out = []
    for rows, wy in ((yl, wyl), (yh, wyh)):
        for cols, wx in ((xl, wxl), (xh, wxh)):
            out.append((rows, cols, np.where(valid, wy[:, None] * wx[None, :], 0.0)))
    return out


def _check_roi_inputs(op: str, args, x, rois, idx) -> np.ndarray:
    check_roi_align(op, args, [TensorInfo.of(x), TensorInfo.of(rois), TensorInfo.of(idx)])
    check(len(rois) == len(idx), f"{op}: rois {list(rois.shape)} and batch_indices {list(idx.shape)} differ")
    b = idx.astype(np.int64)
    check(
        b.size == 0 or (int(b.min()) >= 0 and int(b.max()) < x.shape[0]),
        f"{op}: batch_indices must lie in [0, {x.shape[0]})",
    )
    return b


@table.kernel("RoiAlign", dtypes=FLOAT_TYPES)
def roi_align(ctx: KernelContext) -> RunFn:
    args = ctx.args
    oh, ow, use_max = args["output_height"], args["output_width"], args["mode"] == "max"

    def run(x: np.ndarray, rois: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        b = _check_roi_inputs("RoiAlign", args, x, rois, idx)
        c, h, w = x.shape[1:]
        wt = work_dtype(x.dtype)
        y = np.zeros((len(rois), c, oh, ow), wt)
        for r in range(len(rois)):
            gh, gw, ys, xs = _roi_plan(args, rois[r], h, w)
            if gh * gw == 0:
                continue
            img = x[b[r]].astype(wt, copy=False)
            parts = [img[:, rows[:, None], cols[None, :]] * wgt for rows, cols, wgt in _corners(ys, xs)]
            if use_max:
                v = np.maximum.reduce(parts).reshape(c, oh, gh, ow, gw)
                y[r] = v.max(axis=(2, 4))
            else:
                y[r] = np.add.reduce(parts).reshape(c, oh, gh, ow, gw).sum(axis=(2, 4)) / (gh * gw)
        return (y.astype(x.dtype, copy=False),)

    return run


@table.kernel("RoiAlignGradient", dtypes=FLOAT_TYPES)
def roi_align_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    oh, ow, use_max = args["output_height"], args["output_width"], args["mode"] == "max"

    def run(x: np.ndarray, rois: np.ndarray, idx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        b = _check_roi_inputs("RoiAlignGradient", args, x, rois, idx)
        c, h, w = x.shape[1:]
        check(
            tuple(dy.shape) == (len(rois), c, oh, ow),
            f"RoiAlignGradient: dY {list(dy.shape)} is not [{len(rois)}, {c}, {oh}, {ow}]",
        )
        wt = work_dtype(x.dtype)
        dx = np.zeros(x.shape, wt)
        chan = np.arange(c)[:, None, None]
        for r in range(len(rois)):
            gh, gw, ys, xs = _roi_plan(args, rois[r], h, w)
            if gh * gw == 0:
                continue
            corners = _corners(ys, xs)
            g = dy[r].astype(wt, copy=False)  # [C, oh, ow]
            flat = dx[b[r]].reshape(c, -1)
            if use_max:
                img = x[b[r]].astype(wt, copy=False)
                vals = np.stack([img[:, rr[:, None], cc[None, :]] * wg for rr, cc, wg in corners])
                # [4, C, oh, gh, ow, gw] -> [C, oh, ow, (gh, gw, corner)]: the first maximum wins
                vals = vals.reshape(4, c, oh, gh, ow, gw).transpose(1, 2, 4, 3, 5, 0).reshape(c, oh, ow, -1)
                win = vals.argmax(axis=-1)
                iy, rest = np.divmod(win, gw * 4)
                ix, corner = np.divmod(rest, 4)
                sy = np.arange(oh)[None, :, None] * gh + iy
                sx = np.arange(ow)[None, None, :] * gw + ix
                rows = np.stack([corners[k][0] for k in range(4)])[corner, sy]
                cols = np.stack([corners[k][1] for k in range(4)])[corner, sx]
                wgt = np.stack([corners[k][2] for k in range(4)])[corner, sy, sx]
                cells = rows * w + cols
                np.add.at(flat, (np.broadcast_to(chan, cells.shape), cells), g * wgt)
            else:
                share = np.repeat(np.repeat(g, gh, axis=1), gw, axis=2) / (gh * gw)  # [C, Sy, Sx]
                for rr, cc, wg in corners:
                    cells = np.broadcast_to(rr[:, None] * w + cc[None, :], share.shape)
                    np.add.at(flat, (np.broadcast_to(chan, cells.shape), cells), share * wg)
            dx[b[r]] = flat.reshape(c, h, w)
        return (dx.astype(x.dtype, copy=False),)

    return run


# -- NonMaxSuppression -----------------------------------------------------------------------------


def _corner_boxes(boxes: np.ndarray, center: bool) -> np.ndarray:
    """[B, 4] as (y_min, x_min, y_max, x_max)."""
    if center:
        xc, yc, bw, bh = boxes.T
        return np.stack([yc - bh / 2, xc - bw / 2, yc + bh / 2, xc + bw / 2], axis=1)
    y = np.sort(boxes[:, [0, 2]], axis=1)
    x = np.sort(boxes[:, [1, 3]], axis=1)
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)


def _suppressed(box: np.ndarray, kept: np.ndarray, threshold: float) -> bool:
    """Does ``box`` overlap any of ``kept`` (corner form) by IoU > threshold?"""
    if len(kept) == 0:
        return False
    ih = np.minimum(box[2], kept[:, 2]) - np.maximum(box[0], kept[:, 0])
    iw = np.minimum(box[3], kept[:, 3]) - np.maximum(box[1], kept[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    iou = np.where(ok, inter / np.where(ok, union, 1), 0.0)
    return bool(np.any(ok & (iou > threshold)))


@table.kernel("NonMaxSuppression", dtypes=FLOAT_TYPES)
def non_max_suppression(ctx: KernelContext) -> RunFn:
    args = ctx.args
    limit, iou_t = args["max_output_boxes_per_class"], args["iou_threshold"]
    score_t, center = args["score_threshold"], args["center_point_box"] == 1

    def run(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray]:
        check(
            boxes.ndim == 3 and boxes.shape[2] == 4 and scores.ndim == 3,
            f"NonMaxSuppression: boxes {list(boxes.shape)} must be [N, B, 4], "
            f"scores {list(scores.shape)} [N, C, B]",
        )
        check(
            boxes.shape[0] == scores.shape[0] and boxes.shape[1] == scores.shape[2],
            f"NonMaxSuppression: boxes {list(boxes.shape)} and scores {list(scores.shape)} "
            "disagree on N or B",
        )
        wt = work_dtype(boxes.dtype)
        rows: list[tuple[int, int, int]] = []
        for n in range(boxes.shape[0]):
            corners = _corner_boxes(boxes[n].astype(wt, copy=False), center)
            for c in range(scores.shape[1]):
                s = scores[n, c]
                order = np.argsort(-s.astype(np.float64), kind="stable")  # ties: lower index first
                if score_t is not None:
                    order = order[s[order] > score_t]
                kept: list[int] = []
                for i in order:
                    if len(kept) >= limit:
                        break
                    if not _suppressed(corners[i], corners[kept], iou_t):
                        kept.append(int(i))
                        rows.append((n, c, int(i)))
        return (np.array(rows, np.int64).reshape(-1, 3),)

    return run
