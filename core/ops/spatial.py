"""Image and normalisation ops ONNX needs: Resize (and Caffe2's ResizeNearest), DepthToSpace /
SpaceToDepth, LpPool, RMSNormalization, InstanceNorm, GroupNorm, LpNormalization,
MeanVarianceNormalization (schemas, shape inference, gradients).

Resize follows ONNX Resize-19: every mode is separable, one 1-D interpolation per resized axis, so
its gradient (ResizeGradient) applies the transposed per-axis interpolation matrices. Output sizes
are floor(in * scale) with ``scales``, ``sizes`` as given (or, with keep_aspect_ratio_policy
not_larger / not_smaller, round(in * one common scale)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.ops.geometry import WINDOW_ARGS, Window, canonicalize_window
from kaffa.schema import (
    Arg,
    ArgType,
    Shape,
    TensorInfo,
    check,
    define,
    norm_axis,
    same_dtype,
)

ORDERS = ("NCHW", "NHWC")


def _s(info: TensorInfo | Shape | None) -> str:
    shape = info.shape if isinstance(info, TensorInfo) else info
    return "[?]" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _grad_like(name: str, x_index: int):
    """Inference for a gradient op whose first output has the shape of input ``x_index``."""

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        dtype = same_dtype(name, ins)
        # Further outputs (RMSNormalization's dscale) have the shapes of inputs 1, 2, ...
        return [
            TensorInfo(ins[x_index].shape, dtype),
            *(TensorInfo(ins[i].shape, dtype) for i in range(1, n)),
        ]

    return infer


# -- Resize ----------------------------------------------------------------------------------------

RESIZE_MODES = ("nearest", "linear", "cubic")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
COORD_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")

RESIZE_ARGS = [
    Arg("mode", ArgType.STRING, "nearest", "nearest, linear (bi/trilinear) or cubic"),
    Arg(
        "coordinate_transformation_mode",
        ArgType.STRING,
        "half_pixel",
        "how output coordinates map to input ones",
    ),
    Arg("nearest_mode", ArgType.STRING, "round_prefer_floor", "rounding of mode=nearest"),
    Arg("cubic_coeff_a", ArgType.FLOAT, -0.75, "the cubic kernel's a"),
    Arg("exclude_outside", ArgType.BOOL, False, "weights of taps outside the input are 0 (renormalized)"),
    Arg("extrapolation_value", ArgType.FLOAT, 0.0, "tf_crop_and_resize: value outside the input"),
    Arg("antialias", ArgType.BOOL, False, "linear/cubic: widen the kernel by 1/scale when downsampling"),
    Arg("axes", ArgType.INTS, None, "the axes scales/sizes/roi refer to (default: all)"),
    Arg("scales", ArgType.FLOATS, None, "one scale per resized axis (or sizes)"),
    Arg("sizes", ArgType.INTS, None, "one output size per resized axis (or scales)"),
    Arg("roi", ArgType.FLOATS, None, "tf_crop_and_resize: starts then ends per resized axis, normalized"),
    Arg(
        "keep_aspect_ratio_policy", ArgType.STRING, "stretch", "with sizes: stretch, not_larger, not_smaller"
    ),
]


def resize_plan(
    args: Mapping[str, Any], shape: Sequence[int | None]
) -> tuple[tuple[int | None, ...], list[tuple[int, float, tuple[float, float] | None]]]:
    """(output shape, [(axis, scale, roi start/end or None)] for every resized axis)."""
    op = "Resize"
    rank = len(shape)
    check(args["mode"] in RESIZE_MODES, f"{op}: mode must be one of {RESIZE_MODES}, got {args['mode']!r}")
    ctm = args["coordinate_transformation_mode"]
    check(
        ctm in COORD_MODES, f"{op}: coordinate_transformation_mode must be one of {COORD_MODES}, got {ctm!r}"
    )
    check(args["nearest_mode"] in NEAREST_MODES, f"{op}: nearest_mode must be one of {NEAREST_MODES}")
    policy = args["keep_aspect_ratio_policy"]
    check(policy in ASPECT_POLICIES, f"{op}: keep_aspect_ratio_policy must be one of {ASPECT_POLICIES}")
    check(
        not (args["antialias"] and args["mode"] == "nearest"),
        f"{op}: antialias is for mode linear or cubic, not nearest",
    )
    scales, sizes = args["scales"], args["sizes"]
    check((scales is None) != (sizes is None), f"{op}: give exactly one of scales and sizes")
    axes = args["axes"]
    given = scales if scales is not None else sizes
    if axes is None:
        axes = list(range(rank))
    axes = [norm_axis(a, rank, op, "axes entry") for a in axes]
    check(len(set(axes)) == len(axes), f"{op}: axes {axes} repeat an axis")
    check(
        len(given) == len(axes),
        f"{op}: {'scales' if scales is not None else 'sizes'} {list(given)} needs one value per resized "
        f"axis ({len(axes)}) of X {_s(tuple(shape))}",
    )
    roi = args["roi"]
    if ctm == "tf_crop_and_resize":
        check(
            roi is not None and len(roi) == 2 * len(axes),
            f"{op}: tf_crop_and_resize needs roi (2 x {len(axes)})",
        )
    out = list(shape)
    plan: list[tuple[int, float, tuple[float, float] | None]] = []
    if scales is not None:
        check(all(s > 0 for s in scales), f"{op}: scales must be positive, got {list(scales)}")
        for a, s in zip(axes, scales):
            out[a] = None if shape[a] is None else math.floor(s * shape[a])
        factors = list(scales)
    else:
        check(all(s >= 0 for s in sizes), f"{op}: sizes must be >= 0, got {list(sizes)}")
        if any(shape[a] is None for a in axes):  # sizes stand unless a policy rescales them
            for a, s in zip(axes, sizes):
                out[a] = int(s) if policy == "stretch" else None
            return tuple(out), []
        factors = [s / shape[a] for a, s in zip(axes, sizes)]
        if policy == "stretch":
            for a, s in zip(axes, sizes):
                out[a] = int(s)
        else:
            common = min(factors) if policy == "not_larger" else max(factors)
            factors = [common] * len(axes)
            for a in axes:
                out[a] = int(common * shape[a] + 0.5)
    for i, (a, f) in enumerate(zip(axes, factors)):
        r = None if roi is None else (float(roi[i]), float(roi[len(axes) + i]))
        plan.append((a, float(f), r))
    return tuple(out), sorted(plan)


def _infer_resize(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is None:
        return [x]
    out, _ = resize_plan(args, x.shape)
    return [TensorInfo(out, x.dtype)]


define(
    "Resize",
    family="spatial",
    doc="ONNX Resize (opset 19): nearest (nearest_mode), linear or cubic interpolation per resized "
    "axis, with ONNX's coordinate transformation modes, antialias, exclude_outside, "
    "tf_crop_and_resize's roi and extrapolation_value. Scales or sizes are arguments.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "resized")],
    args=RESIZE_ARGS,
    infer=_infer_resize,
)


def _infer_resize_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dy, x = ins
    dtype = same_dtype("ResizeGradient", ins)
    if x.shape is not None and dy.shape is not None:
        out, _ = resize_plan(args, x.shape)
        ok = len(out) == len(dy.shape) and all(
            p is None or q is None or p == q for p, q in zip(out, dy.shape)
        )
        check(ok, f"ResizeGradient: dY {_s(dy)} is not the resized X {_s(x)} ({_s(out)})")
    return [TensorInfo(x.shape, dtype)]


define(
    "ResizeGradient",
    family="spatial",
    doc="Gradient of Resize: dY through the transposed per-axis interpolation (extrapolated cells "
    "pass nothing back).",
    inputs=2,
    input_docs=[("dY", "gradient of Y"), ("X", "forward input (for its shape)")],
    output_docs=[("dX", "X's shape")],
    args=RESIZE_ARGS,
    infer=_infer_resize_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("Resize")
def _resize_grad(g: GradientContext) -> GradientOps:
    return g.single("ResizeGradient", [g.GO(0), g.I(0)], [g.GI(0)], **g.forward_args())


# -- ResizeNearest (Caffe2) -------------------------------------------------------------------------

RESIZE_NEAREST_ARGS = [
    Arg("width_scale", ArgType.FLOAT, 1.0, "output W = int(W * width_scale)"),
    Arg("height_scale", ArgType.FLOAT, 1.0, "output H = int(H * height_scale)"),
    Arg("order", ArgType.STRING, "NCHW", "NCHW or NHWC"),
]


def resize_nearest_out(op: str, args: Mapping[str, Any], shape: Shape) -> Shape:
    check(args["order"] in ORDERS, f"{op}: order must be NCHW or NHWC, got {args['order']!r}")
    check(len(shape) == 4, f"{op}: X {_s(shape)} must be 4-D")
    check(args["width_scale"] > 0 and args["height_scale"] > 0, f"{op}: scales must be positive")
    h_ax = 2 if args["order"] == "NCHW" else 1
    out = list(shape)
    for ax, s in ((h_ax, args["height_scale"]), (h_ax + 1, args["width_scale"])):
        out[ax] = None if shape[ax] is None else int(shape[ax] * s)
    return tuple(out)


define(
    "ResizeNearest",
    family="spatial",
    doc="Caffe2's nearest-neighbour resize of H and W: Y[.., y, x] = X[.., min(int(y / height_scale), "
    "H-1), min(int(x / width_scale), W-1)].",
    inputs=1,
    input_docs=[("X", "[N, C, H, W] (NCHW) or [N, H, W, C] (NHWC)")],
    output_docs=[("Y", "resized")],
    args=RESIZE_NEAREST_ARGS,
    infer=lambda args, ins, n: [
        ins[0]
        if ins[0].shape is None
        else TensorInfo(resize_nearest_out("ResizeNearest", args, ins[0].shape), ins[0].dtype)
    ],
)

define(
    "ResizeNearestGradient",
    family="spatial",
    doc="Gradient of ResizeNearest: each dY cell added to the X cell it copied.",
    inputs=2,
    input_docs=[("dY", "gradient of Y"), ("X", "forward input (for its shape)")],
    output_docs=[("dX", "X's shape")],
    args=RESIZE_NEAREST_ARGS,
    infer=_grad_like("ResizeNearestGradient", 1),
    gradient_op=True,
    differentiable=False,
)


@gradient("ResizeNearest")
def _resize_nearest_grad(g: GradientContext) -> GradientOps:
    return g.single("ResizeNearestGradient", [g.GO(0), g.I(0)], [g.GI(0)], **g.forward_args())


# -- DepthToSpace / SpaceToDepth --------------------------------------------------------------------

_BLOCK_ARGS = [
    Arg("blocksize", ArgType.INT, 2, "the block edge"),
    Arg("mode", ArgType.STRING, "DCR", "DCR (depth-column-row) or CRD (column-row-depth)"),
]


def _infer_d2s(op: str, to_space: bool):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        b = args["blocksize"]
        check(b > 0, f"{op}: blocksize must be positive, got {b}")
        check(args["mode"] in ("DCR", "CRD"), f"{op}: mode must be DCR or CRD, got {args['mode']!r}")
        if x.shape is None:
            return [x]
        check(len(x.shape) == 4, f"{op}: X {_s(x)} must be 4-D [N, C, H, W]")
        nb, c, h, w = x.shape
        if to_space:
            check(
                c is None or c % (b * b) == 0,
                f"{op}: C of X {_s(x)} must be divisible by blocksize^2 = {b * b}",
            )
            out = (
                nb,
                None if c is None else c // (b * b),
                None if h is None else h * b,
                None if w is None else w * b,
            )
        else:
            for d in (h, w):
                check(
                    d is None or d % b == 0, f"{op}: H and W of X {_s(x)} must be divisible by blocksize {b}"
                )
            out = (
                nb,
                None if c is None else c * b * b,
                None if h is None else h // b,
                None if w is None else w // b,
            )
        return [TensorInfo(out, x.dtype)]

    return infer


define(
    "DepthToSpace",
    family="spatial",
    doc="Moves blocksize x blocksize blocks of channels into space: [N, C, H, W] -> [N, C/b^2, H*b, "
    "W*b]; mode DCR takes the channel as (b, b, C/b^2), CRD as (C/b^2, b, b).",
    inputs=1,
    input_docs=[("X", "[N, C, H, W]")],
    output_docs=[("Y", "[N, C/b^2, H*b, W*b]")],
    args=_BLOCK_ARGS,
    infer=_infer_d2s("DepthToSpace", True),
)

define(
    "SpaceToDepth",
    family="spatial",
    doc="The inverse of DepthToSpace with the same mode: [N, C, H, W] -> [N, C*b^2, H/b, W/b] (ONNX's "
    "SpaceToDepth is mode DCR).",
    inputs=1,
    input_docs=[("X", "[N, C, H, W]")],
    output_docs=[("Y", "[N, C*b^2, H/b, W/b]")],
    args=_BLOCK_ARGS,
    infer=_infer_d2s("SpaceToDepth", False),
)


@gradient("DepthToSpace")
def _d2s_grad(g: GradientContext) -> GradientOps:
    return g.single("SpaceToDepth", [g.GO(0)], [g.GI(0)], **g.forward_args())


@gradient("SpaceToDepth")
def _s2d_grad(g: GradientContext) -> GradientOps:
    return g.single("DepthToSpace", [g.GO(0)], [g.GI(0)], **g.forward_args())


# -- LpPool ----------------------------------------------------------------------------------------

LP_POOL_ARGS = [*WINDOW_ARGS, Arg("p", ArgType.INT, 2, "the norm's order (>= 1)")]


def _infer_lp_pool(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LpPool"
    x = ins[0]
    check(args["p"] >= 1, f"{op}: p must be >= 1, got {args['p']}")
    if x.shape is None:
        return [x]
    check(len(x.shape) >= 3, f"{op}: X {_s(x)} needs a batch, a channel and a spatial axis")
    nchw = args["order"] == "NCHW"
    sizes = x.shape[2:] if nchw else x.shape[1:-1]
    win = Window.from_args(args, len(sizes))
    if any(s is None for s in sizes):
        outs: tuple[int | None, ...] = tuple(None for _ in sizes)
    else:
        outs = win.resolve([int(s) for s in sizes])[0]
    shape = (x.shape[0], x.shape[1], *outs) if nchw else (x.shape[0], *outs, x.shape[-1])
    return [TensorInfo(shape, x.dtype)]


define(
    "LpPool",
    family="spatial",
    doc="Lp norm over sliding windows: Y = (sum over the window of |X|^p)^(1/p); padded cells count as 0.",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "output")],
    args=LP_POOL_ARGS,
    canonicalize=canonicalize_window,
    infer=_infer_lp_pool,
)

define(
    "LpPoolGradient",
    family="spatial",
    doc="Gradient of LpPool: dX += dY * |X|^(p-1) * sign(X) / Y^(p-1) over every window.",
    inputs=3,
    input_docs=[("X", "forward input"), ("Y", "forward output"), ("dY", "gradient of Y")],
    output_docs=[("dX", "X's shape")],
    args=LP_POOL_ARGS,
    canonicalize=canonicalize_window,
    infer=_grad_like("LpPoolGradient", 0),
    gradient_op=True,
    differentiable=False,
)


@gradient("LpPool")
def _lp_pool_grad(g: GradientContext) -> GradientOps:
    return g.single("LpPoolGradient", [g.I(0), g.O(0), g.GO(0)], [g.GI(0)], **g.forward_args())


# -- RMSNormalization ------------------------------------------------------------------------------

RMS_ARGS = [
    Arg("axis", ArgType.INT, -1, "normalize over dims[axis:]"),
    Arg("epsilon", ArgType.FLOAT, 1e-5, "added to the mean square"),
    Arg(
        "stash_type",
        ArgType.INT,
        1,
        "ONNX's precision of the statistics (accepted; float32 or wider is used)",
    ),
]


def _check_rms(op: str, args: Mapping[str, Any], x: TensorInfo, scale: TensorInfo) -> None:
    check(args["epsilon"] >= 0, f"{op}: epsilon must be >= 0")
    if x.shape is None:
        return
    check(len(x.shape) >= 1, f"{op}: X must have at least one dim")
    axis = norm_axis(args["axis"], len(x.shape), op)
    if scale.shape is not None:
        inner = x.shape[axis:]
        ok = len(scale.shape) <= len(inner) and all(
            s is None or d is None or s in (1, d) for s, d in zip(reversed(scale.shape), reversed(inner))
        )
        check(ok, f"{op}: scale {_s(scale)} must broadcast to X's normalized dims {_s(tuple(inner))}")


def _infer_rms(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("RMSNormalization", ins)
    _check_rms("RMSNormalization", args, ins[0], ins[1])
    return [TensorInfo(ins[0].shape, dtype)]


define(
    "RMSNormalization",
    family="spatial",
    doc="Y = X / sqrt(mean(X^2 over dims[axis:]) + epsilon) * scale (scale broadcasts to dims[axis:]).",
    inputs=2,
    input_docs=[("X", "input"), ("scale", "broadcastable to dims[axis:]")],
    output_docs=[("Y", "X's shape")],
    args=RMS_ARGS,
    infer=_infer_rms,
)

define(
    "RMSNormalizationGradient",
    family="spatial",
    doc="Gradient of RMSNormalization: with r = 1/sqrt(mean(X^2) + eps), g = dY * scale: dX = r * (g - "
    "X * r^2 * mean(g * X)); dscale = dY * X * r summed to scale's shape.",
    inputs=3,
    outputs=2,
    input_docs=[("X", "forward input"), ("scale", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "X's shape"), ("dscale", "scale's shape")],
    args=RMS_ARGS,
    infer=_grad_like("RMSNormalizationGradient", 0),
    gradient_op=True,
    differentiable=False,
)


@gradient("RMSNormalization")
def _rms_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "RMSNormalizationGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0), g.GI(1)], **g.forward_args()
    )


# -- InstanceNorm / GroupNorm ---------------------------------------------------------------------


def _channels(
    op: str, args: Mapping[str, Any], x: TensorInfo, vectors: list[tuple[str, TensorInfo]]
) -> int | None:
    check(args["order"] in ORDERS, f"{op}: order must be NCHW or NHWC, got {args['order']!r}")
    check(args["epsilon"] >= 0, f"{op}: epsilon must be >= 0")
    c = None
    if x.shape is not None:
        check(len(x.shape) >= 3, f"{op}: X {_s(x)} needs N, C and at least one spatial dim")
        c = x.shape[1 if args["order"] == "NCHW" else -1]
    for name, v in vectors:
        if v.shape is None:
            continue
        ok = len(v.shape) == 1 and (c is None or v.shape[0] is None or v.shape[0] == c)
        check(ok, f"{op}: {name} {_s(v)} must be [C] = [{'?' if c is None else c}] for X {_s(x)}")
        c = c if c is not None else v.shape[0]
    return c


_IN_ARGS = [
    Arg("epsilon", ArgType.FLOAT, 1e-5, "added to the variance"),
    Arg("order", ArgType.STRING, "NCHW", "NCHW or NHWC"),
]


def _infer_instance_norm(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "InstanceNorm"
    dtype = same_dtype(op, ins)
    x = ins[0]
    _channels(op, args, x, [("scale", ins[1]), ("bias", ins[2])])
    stat = None if x.shape is None else (x.shape[0], x.shape[1 if args["order"] == "NCHW" else -1])
    return [TensorInfo(x.shape, dtype), TensorInfo(stat, dtype), TensorInfo(stat, dtype)][:n]


define(
    "InstanceNorm",
    family="spatial",
    doc="Instance normalization (Caffe2; ONNX InstanceNormalization): per sample and channel over the "
    "spatial dims, Y = (X - mean) / sqrt(biased var + epsilon) * scale[c] + bias[c]. Optional "
    "outputs: mean and 1/sqrt(var + epsilon), [N, C].",
    inputs=3,
    outputs=(1, 3),
    input_docs=[("X", "[N, C, ...] (NCHW) or [N, ..., C] (NHWC)"), ("scale", "[C]"), ("bias", "[C]")],
    output_docs=[("Y", "X's shape"), ("saved_mean", "[N, C]"), ("saved_inv_stdev", "[N, C]")],
    args=_IN_ARGS,
    infer=_infer_instance_norm,
    grad_outputs=(0,),
)

define(
    "InstanceNormGradient",
    family="spatial",
    doc="Gradient of InstanceNorm (statistics recomputed from X; inputs 4/5 are accepted, as Caffe2 "
    "passed them, and unused).",
    inputs=(4, 6),
    outputs=3,
    input_docs=[
        ("X", "forward input"),
        ("scale", "[C]"),
        ("bias", "[C]"),
        ("dY", "gradient of Y"),
        ("mean", "optional"),
        ("inv_stdev", "optional"),
    ],
    output_docs=[("dX", "X's shape"), ("dscale", "[C]"), ("dbias", "[C]")],
    args=_IN_ARGS,
    infer=lambda args, ins, n: [
        TensorInfo(ins[0].shape, same_dtype("InstanceNormGradient", ins)),
        ins[1],
        ins[2],
    ],
    gradient_op=True,
    differentiable=False,
)


@gradient("InstanceNorm")
def _instance_norm_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None] * g.num_inputs)
    return g.single(
        "InstanceNormGradient",
        [g.I(0), g.I(1), g.I(2), g.GO(0)],
        [g.GI(0), g.GI(1), g.GI(2)],
        **g.forward_args(),
    )


_GN_ARGS = [
    Arg("num_groups", ArgType.INT, 32, "channel groups; C must be divisible by it"),
    Arg("epsilon", ArgType.FLOAT, 1e-5, "added to the variance"),
    Arg("order", ArgType.STRING, "NCHW", "NCHW or NHWC"),
]


def _infer_group_norm(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "GroupNorm"
    dtype = same_dtype(op, ins)
    x = ins[0]
    c = _channels(op, args, x, [("gamma", ins[1]), ("beta", ins[2])])
    g = args["num_groups"]
    check(g > 0, f"{op}: num_groups must be positive, got {g}")
    check(c is None or c % g == 0, f"{op}: C = {c} of X {_s(x)} is not divisible by num_groups {g}")
    stat = None if x.shape is None else (x.shape[0], g)
    return [TensorInfo(x.shape, dtype), TensorInfo(stat, dtype), TensorInfo(stat, dtype)][:n]


define(
    "GroupNorm",
    family="spatial",
    doc="Group normalization (Caffe2; ONNX GroupNormalization): channels split into num_groups groups, "
    "each group of each sample normalized over its channels and spatial dims, then Y = Y * gamma[c] "
    "+ beta[c]. Optional outputs: mean and 1/sqrt(var + epsilon), [N, num_groups].",
    inputs=3,
    outputs=(1, 3),
    input_docs=[("X", "[N, C, ...] (NCHW) or [N, ..., C] (NHWC)"), ("gamma", "[C]"), ("beta", "[C]")],
    output_docs=[("Y", "X's shape"), ("mean", "[N, G]"), ("inv_std", "[N, G]")],
    args=_GN_ARGS,
    infer=_infer_group_norm,
    grad_outputs=(0,),
)

define(
    "GroupNormGradient",
    family="spatial",
    doc="Gradient of GroupNorm (statistics recomputed from X; inputs 4/5 accepted and unused).",
    inputs=(4, 6),
    outputs=3,
    input_docs=[
        ("dY", "gradient of Y"),
        ("X", "forward input"),
        ("gamma", "[C]"),
        ("beta", "[C]"),
        ("mean", "optional"),
        ("inv_std", "optional"),
    ],
    output_docs=[("dX", "X's shape"), ("dgamma", "[C]"), ("dbeta", "[C]")],
    args=_GN_ARGS,
    infer=lambda args, ins, n: [
        TensorInfo(ins[1].shape, same_dtype("GroupNormGradient", ins)),
        ins[2],
        ins[3],
    ],
    gradient_op=True,
    differentiable=False,
)


@gradient("GroupNorm")
def _group_norm_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None] * g.num_inputs)
    return g.single(
        "GroupNormGradient",
        [g.GO(0), g.I(0), g.I(1), g.I(2)],
        [g.GI(0), g.GI(1), g.GI(2)],
        **g.forward_args(),
    )


# -- LpNormalization / MeanVarianceNormalization ---------------------------------------------------

_LPN_ARGS = [
    Arg("axis", ArgType.INT, -1, "the axis normalized"),
    Arg("p", ArgType.INT, 2, "the norm's order (1 or 2 in ONNX; any >= 1 here)"),
]


def _infer_lp_norm(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    check(args["p"] >= 1, f"LpNormalization: p must be >= 1, got {args['p']}")
    if x.shape is not None:
        norm_axis(args["axis"], len(x.shape), "LpNormalization")
    return [x]


define(
    "LpNormalization",
    family="spatial",
    doc="Y = X / ||X||_p along axis (0 where the norm is 0).",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "X's shape")],
    args=_LPN_ARGS,
    infer=_infer_lp_norm,
)

define(
    "LpNormalizationGradient",
    family="spatial",
    doc="Gradient of LpNormalization: dX = dY / n - sum(dY * X) / n^(p+1) * |X|^(p-1) * sign(X).",
    inputs=2,
    input_docs=[("X", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "X's shape")],
    args=_LPN_ARGS,
    infer=_grad_like("LpNormalizationGradient", 0),
    gradient_op=True,
    differentiable=False,
)


@gradient("LpNormalization")
def _lp_norm_grad(g: GradientContext) -> GradientOps:
    return g.single("LpNormalizationGradient", [g.I(0), g.GO(0)], [g.GI(0)], **g.forward_args())


_MVN_ARGS = [
    Arg("axes", ArgType.INTS, [0, 2, 3], "the axes the statistics are taken over"),
    Arg("epsilon", ArgType.FLOAT, 1e-9, "added to the standard deviation (ONNX's function body: 1e-9)"),
]


def _infer_mvn(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is not None:
        axes = [norm_axis(a, len(x.shape), "MeanVarianceNormalization", "axes entry") for a in args["axes"]]
        check(len(set(axes)) == len(axes), f"MeanVarianceNormalization: axes {args['axes']} repeat an axis")
    return [TensorInfo(x.shape, same_dtype("MeanVarianceNormalization", ins))]


define(
    "MeanVarianceNormalization",
    family="spatial",
    doc="Y = (X - mean) / (sqrt(biased var) + epsilon), the statistics over axes.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "X's shape")],
    args=_MVN_ARGS,
    infer=_infer_mvn,
)

define(
    "MeanVarianceNormalizationGradient",
    family="spatial",
    doc="Gradient of MeanVarianceNormalization: with d = X - mean, s = std, k = 1/(s + eps), M values "
    "per group: dX = k * (dY - mean(dY)) - k^2 / (M s) * d * sum(dY * d).",
    inputs=2,
    input_docs=[("X", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "X's shape")],
    args=_MVN_ARGS,
    infer=_grad_like("MeanVarianceNormalizationGradient", 0),
    gradient_op=True,
    differentiable=False,
)


@gradient("MeanVarianceNormalization")
def _mvn_grad(g: GradientContext) -> GradientOps:
    return g.single("MeanVarianceNormalizationGradient", [g.I(0), g.GO(0)], [g.GI(0)], **g.forward_args())
