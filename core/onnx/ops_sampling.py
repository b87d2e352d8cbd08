"""Translators for ONNX sampling and detection ops: GridSample, AffineGrid, Col2Im, DeformConv,
MaxUnpool, CenterCropPad, RoiAlign, NonMaxSuppression (kaffa.ops.sampling, kaffa.ops.detection).

Tensors ONNX passes as inputs but kaffa takes as arguments (AffineGrid's size, Col2Im's shapes,
MaxUnpool's output_shape, CenterCropPad's shape, NonMaxSuppression's limits) must be constants;
when they are graph inputs, ``kaffa.onnx.backend`` specializes the model on their values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported

# GridSample-16 spelled the modes bilinear / bicubic.
_GRID_MODES = {
    "bilinear": "linear",
    "bicubic": "cubic",
    "linear": "linear",
    "cubic": "cubic",
    "nearest": "nearest",
}


def _ints(ctx: Context, name: str, what: str) -> list[int]:
    return [int(v) for v in ctx.need_const(name, what).reshape(-1)]


@translator("GridSample")
def _grid_sample(ctx: Context, node: Node) -> None:
    mode = node.attr("mode", "bilinear" if ctx.opset < 20 else "linear")
    if mode not in _GRID_MODES:
        raise unsupported(f"mode {mode!r}")
    x, grid = node.inputs[0], node.inputs[1]
    if ctx.dtype(grid) is not None and ctx.dtype(x) is not None and ctx.dtype(grid) != ctx.dtype(x):
        raise unsupported(f"a grid of dtype {ctx.dtype(grid)} for X of dtype {ctx.dtype(x)}")
    ctx.op(
        "GridSample",
        [x, grid],
        node.outputs[:1],
        mode=_GRID_MODES[mode],
        padding_mode=node.attr("padding_mode", "zeros"),
        align_corners=bool(node.attr("align_corners", 0)),
    )


@translator("AffineGrid")
def _affine_grid(ctx: Context, node: Node) -> None:
    size = _ints(ctx, node.inputs[1], "size")
    ctx.op(
        "AffineGrid",
        node.inputs[:1],
        node.outputs[:1],
        size=size,
        align_corners=bool(node.attr("align_corners", 0)),
    )


@translator("Col2Im")
def _col2im(ctx: Context, node: Node) -> None:
    image = _ints(ctx, node.inputs[1], "image_shape")
    block = _ints(ctx, node.inputs[2], "block_shape")
    ctx.op(
        "Col2Im",
        node.inputs[:1],
        node.outputs[:1],
        image_shape=image,
        block_shape=block,
        strides=[int(v) for v in node.attr("strides") or [1]],
        pads=[int(v) for v in node.attr("pads") or [0]],
        dilations=[int(v) for v in node.attr("dilations") or [1]],
    )


@translator("DeformConv")
def _deform_conv(ctx: Context, node: Node) -> None:
    ins = [node.input(i) for i in range(5)]
    w_shape = ctx.shape(ins[1])
    if ins[4] and not ins[3]:  # a mask without a bias: kaffa's inputs are positional
        if w_shape is None or w_shape[0] is None:
            raise unsupported("a mask without a bias, with an unknown number of output channels")
        ins[3] = ctx.add_const(
            node.outputs[0] + "_bias", np.zeros(w_shape[0], ctx.dtype(ins[0]) or np.float32)
        )
    ins = [i for i in ins if i]
    args = {
        "strides": [int(v) for v in node.attr("strides") or [1]],
        "pads": [int(v) for v in node.attr("pads") or [0]],
        "dilations": [int(v) for v in node.attr("dilations") or [1]],
        "group": int(node.attr("group", 1)),
        "offset_group": int(node.attr("offset_group", 1)),
    }
    if node.attr("kernel_shape"):
        args["kernels"] = [int(v) for v in node.attr("kernel_shape")]
    ctx.op("DeformConv", ins, node.outputs[:1], **args)


@translator("MaxUnpool")
def _max_unpool(ctx: Context, node: Node) -> None:
    shape = _ints(ctx, node.input(2), "output_shape") if node.input(2) else None
    ctx.op(
        "MaxUnpool",
        node.inputs[:2],
        node.outputs[:1],
        kernels=[int(v) for v in node.attr("kernel_shape")],
        strides=[int(v) for v in node.attr("strides") or [1]],
        pads=[int(v) for v in node.attr("pads") or [0]],
        output_shape=shape,
    )


def pad_axes(
    ctx: Context,
    x: str,
    out: str,
    rank: int,
    begins: Sequence[int],
    ends: Sequence[int],
    mode: str = "constant",
    value: float = 0.0,
) -> None:
    """Pad any axes of ``x`` with PadImage: viewed as [1, 1, *x.shape], every axis of x is spatial."""
    lifted = ctx.temp(out + "_lifted")
    ctx.op("ExpandDims", [x], [lifted], dims=[0, 1])
    padded = ctx.temp(out + "_padded")
    ctx.op(
        "PadImage",
        [lifted],
        [padded],
        pads=[int(p) for p in list(begins) + list(ends)],
        mode=mode,
        value=float(value) if mode == "constant" else None,
    )
    ctx.op("Squeeze", [padded], [out], dims=[0, 1])


@translator("CenterCropPad")
def _center_crop_pad(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    if shape is None or None in shape:
        raise unsupported("CenterCropPad of an input with a non-static shape")
    rank = len(shape)
    target = _ints(ctx, node.inputs[1], "shape")
    axes = [ctx.norm_axis(int(a), rank) for a in node.attr("axes") or range(rank)]
    if len(axes) != len(target):
        raise unsupported(f"shape {target} has {len(target)} entries for axes {axes}")
    starts, stops = [0] * rank, [-1] * rank
    begins, ends = [0] * rank, [0] * rank
    for a, t in zip(axes, target):
        size = int(shape[a])
        if t < size:  # crop: the odd cell goes from the end
            starts[a] = (size - t) // 2
            stops[a] = starts[a] + t
        elif t > size:  # pad: the odd cell goes at the end
            begins[a] = (t - size) // 2
            ends[a] = t - size - begins[a]
    cropped = any(s != 0 for s in starts) or any(e != -1 for e in stops)
    padded = any(begins) or any(ends)
    if not cropped and not padded:
        ctx.op("Copy", [x], [out])
        return
    mid = ctx.temp(out + "_cropped") if cropped and padded else out
    if cropped:
        ctx.op("Slice", [x], [mid], starts=starts, ends=stops)
    if padded:
        pad_axes(ctx, mid if cropped else x, out, rank, begins, ends)


@translator("RoiAlign")
def _roi_align(ctx: Context, node: Node) -> None:
    default_ctm = "half_pixel" if ctx.opset >= 16 else "output_half_pixel"
    ctx.op(
        "RoiAlign",
        node.inputs[:3],
        node.outputs[:1],
        mode=node.attr("mode", "avg"),
        output_height=int(node.attr("output_height", 1)),
        output_width=int(node.attr("output_width", 1)),
        sampling_ratio=int(node.attr("sampling_ratio", 0)),
        spatial_scale=float(node.attr("spatial_scale", 1.0)),
        coordinate_transformation_mode=node.attr("coordinate_transformation_mode", default_ctm),
    )


@translator("NonMaxSuppression")
def _nms(ctx: Context, node: Node) -> None:
    def scalar(i: int, what: str):
        name = node.input(i)
        if not name:
            return None
        value = ctx.need_const(name, what).reshape(-1)
        return value[0] if value.size else None

    limit = scalar(2, "max_output_boxes_per_class")
    iou = scalar(3, "iou_threshold")
    score = scalar(4, "score_threshold")
    ctx.op(
        "NonMaxSuppression",
        node.inputs[:2],
        node.outputs[:1],
        max_output_boxes_per_class=max(int(limit), 0) if limit is not None else 0,
        iou_threshold=float(iou) if iou is not None else 0.0,
        score_threshold=float(score) if score is not None else None,
        center_point_box=int(node.attr("center_point_box", 0)),
    )
