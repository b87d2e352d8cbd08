"""Sampling ops ONNX needs: GridSample, AffineGrid, Col2Im, DeformConv, MaxUnpool and
MaxPoolWithIndices (schemas, shape inference, gradients).

GridSample reads X at the (normalized) points of a grid with nearest, linear or cubic
interpolation and zeros, border or reflection padding (ONNX GridSample-20 over any number of
spatial axes); its gradient (GridSampleGradient) gives dX and dgrid. AffineGrid builds the grid
of an affine map theta (gradient: AffineGridGradient, dtheta). Col2Im sums a column matrix back
into an image, the adjoint of im2col (gradient: Col2ImGradient, which is im2col). DeformConv is
ONNX's deformable convolution (bilinear samples at offset kernel taps, optionally masked).
MaxPoolWithIndices is max pooling that also returns where each maximum came from (ONNX MaxPool's
Indices output), and MaxUnpool scatters values back to such indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.ops.geometry import WINDOW_ARGS, Window, canonicalize_window
from kaffa.schema import Arg, ArgType, Shape, TensorInfo, check, define, prod, same_dtype

INT64 = np.dtype(np.int64)
INT32 = np.dtype(np.int32)

GRID_MODES = ("nearest", "linear", "cubic")
GRID_PADDINGS = ("zeros", "border", "reflection")


def _s(info: TensorInfo | Shape | None) -> str:
    shape = info.shape if isinstance(info, TensorInfo) else info
    return "[?]" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


# -- GridSample ------------------------------------------------------------------------------------

GRID_SAMPLE_ARGS = [
    Arg("mode", ArgType.STRING, "linear", "nearest (round half to even), linear or cubic (a = -0.75)"),
    Arg("padding_mode", ArgType.STRING, "zeros", "zeros, border or reflection: what points outside X read"),
    Arg(
        "align_corners",
        ArgType.BOOL,
        False,
        "-1 and 1 are the centres of the corner cells (else their outer edges)",
    ),
]


def check_grid_sample(op: str, args: Mapping[str, Any], x: TensorInfo, grid: TensorInfo) -> Shape | None:
    """The output shape [N, C, *grid spatial] (None if unknown), after checking X and grid."""
    check(args["mode"] in GRID_MODES, f"{op}: mode must be one of {GRID_MODES}, got {args['mode']!r}")
    check(
        args["padding_mode"] in GRID_PADDINGS,
        f"{op}: padding_mode must be one of {GRID_PADDINGS}, got {args['padding_mode']!r}",
    )
    if x.shape is not None:
        check(len(x.shape) >= 3, f"{op}: X {_s(x)} needs a batch, a channel and a spatial axis")
    if grid.shape is not None:
        check(len(grid.shape) >= 3, f"{op}: grid {_s(grid)} must be [N, *out, spatial rank]")
    if x.shape is None or grid.shape is None:
        return None
    nsp = len(x.shape) - 2
    check(
        len(grid.shape) == nsp + 2 and _same(grid.shape[-1], nsp) and _same(grid.shape[0], x.shape[0]),
        f"{op}: grid {_s(grid)} must be [N, *out, {nsp}] for X {_s(x)}",
    )
    return (x.shape[0], x.shape[1], *grid.shape[1:-1])


def _infer_grid_sample(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("GridSample", ins)
    return [TensorInfo(check_grid_sample("GridSample", args, ins[0], ins[1]), dtype)]


define(
    "GridSample",
    family="sampling",
    doc="Samples X [N, C, *S] at the points of grid [N, *out, k] (k = number of spatial axes; the "
    "last grid entry indexes the last axis, W; -1 and 1 are the ends of each axis) -> [N, C, *out]. "
    "mode nearest, linear (bi/trilinear) or cubic; padding_mode zeros (outside reads 0), border "
    "(clamped) or reflection (mirrored at the borders) - ONNX GridSample-20.",
    inputs=2,
    input_docs=[("X", "[N, C, *S]"), ("grid", "[N, *out, k], normalized coordinates")],
    output_docs=[("Y", "[N, C, *out]")],
    args=GRID_SAMPLE_ARGS,
    infer=_infer_grid_sample,
)


def _infer_grid_sample_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, grid, dy = ins
    dtype = same_dtype("GridSampleGradient", ins)
    out = check_grid_sample("GridSampleGradient", args, x, grid)
    if out is not None and dy.shape is not None:
        check(
            len(out) == len(dy.shape) and all(_same(a, b) for a, b in zip(out, dy.shape)),
            f"GridSampleGradient: dY {_s(dy)} is not the output shape {_s(out)}",
        )
    return [TensorInfo(x.shape, dtype), TensorInfo(grid.shape, dtype)]


define(
    "GridSampleGradient",
    family="sampling",
    doc="Gradient of GridSample: dX (each dY spread over the cells it interpolated, with their "
    "weights) and dgrid (dY times the derivative of the interpolation in each coordinate; 0 for "
    "nearest, and where border padding clamps).",
    inputs=3,
    outputs=2,
    input_docs=[("X", "forward input"), ("grid", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "X's shape"), ("dgrid", "grid's shape")],
    args=GRID_SAMPLE_ARGS,
    infer=_infer_grid_sample_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("GridSample")
def _grid_sample_grad(g: GradientContext) -> GradientOps:
    return g.single("GridSampleGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0), g.GI(1)], **g.forward_args())


# -- AffineGrid ------------------------------------------------------------------------------------

AFFINE_GRID_ARGS = [
    Arg("size", ArgType.INTS, [], "the output image size [N, C, *S] (2 or 3 spatial axes)"),
    Arg("align_corners", ArgType.BOOL, False, "as GridSample's"),
]


def check_affine_grid(op: str, args: Mapping[str, Any], theta: TensorInfo) -> Shape:
    """The grid shape [N, *S, k] after checking size and theta."""
    size = list(args["size"])
    check(len(size) in (4, 5), f"{op}: size {size} must be [N, C, H, W] or [N, C, D, H, W]")
    check(all(s > 0 for s in size), f"{op}: size {size} must be positive")
    k = len(size) - 2
    if theta.shape is not None:
        check(
            len(theta.shape) == 3
            and _same(theta.shape[0], size[0])
            and _same(theta.shape[1], k)
            and _same(theta.shape[2], k + 1),
            f"{op}: theta {_s(theta)} must be [{size[0]}, {k}, {k + 1}] for size {size}",
        )
    return (size[0], *size[2:], k)


define(
    "AffineGrid",
    family="sampling",
    doc="The sampling grid of affine maps theta [N, k, k+1] (k = 2 or 3) for an image of `size`: "
    "grid[n, *p] = theta[n] @ (x_p, y_p[, z_p], 1), with x along the last axis (W) and each "
    "coordinate in [-1, 1] (cell centres; with align_corners the corner cells sit at -1 and 1).",
    inputs=1,
    input_docs=[("theta", "[N, k, k+1]")],
    output_docs=[("grid", "[N, *S, k]")],
    args=AFFINE_GRID_ARGS,
    infer=lambda args, ins, n: [TensorInfo(check_affine_grid("AffineGrid", args, ins[0]), ins[0].dtype)],
)


def _infer_affine_grid_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dgrid = ins[0]
    size = list(args["size"])
    check(len(size) in (4, 5), f"AffineGridGradient: size {size} must have 4 or 5 entries")
    k = len(size) - 2
    want = (size[0], *size[2:], k)
    if dgrid.shape is not None:
        check(
            len(dgrid.shape) == len(want) and all(_same(a, b) for a, b in zip(dgrid.shape, want)),
            f"AffineGridGradient: dgrid {_s(dgrid)} is not the grid shape {list(want)}",
        )
    return [TensorInfo((size[0], k, k + 1), dgrid.dtype)]


define(
    "AffineGridGradient",
    family="sampling",
    doc="Gradient of AffineGrid: dtheta[n] = sum over points of dgrid[n, p] (x) (x_p, y_p[, z_p], 1).",
    inputs=1,
    input_docs=[("dgrid", "gradient of grid")],
    output_docs=[("dtheta", "[N, k, k+1]")],
    args=AFFINE_GRID_ARGS,
    infer=_infer_affine_grid_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("AffineGrid")
def _affine_grid_grad(g: GradientContext) -> GradientOps:
    return g.single("AffineGridGradient", [g.GO(0)], [g.GI(0)], **g.forward_args())


# -- Col2Im ----------------------------------------------------------------------------------------

COL2IM_ARGS = [
    Arg("image_shape", ArgType.INTS, [], "the spatial shape of the image"),
    Arg("block_shape", ArgType.INTS, [], "the spatial shape of one block (the kernel)"),
    Arg("strides", ArgType.INTS, [1], "per spatial axis (one value: all axes)"),
    Arg("pads", ArgType.INTS, [0], "all begin pads, then all end pads (one value: all)"),
    Arg("dilations", ArgType.INTS, [1], "per spatial axis (one value: all axes)"),
]


def col2im_window(op: str, args: Mapping[str, Any]) -> tuple[Window, tuple[int, ...], tuple[int, ...]]:
    """(window, image sizes, block counts per axis) of a Col2Im / Col2ImGradient."""
    image, block = list(args["image_shape"]), list(args["block_shape"])
    check(len(image) >= 1, f"{op}: image_shape is required")
    check(
        len(block) == len(image),
        f"{op}: block_shape {block} needs one entry per image axis ({len(image)})",
    )
    check(all(s > 0 for s in image), f"{op}: image_shape {image} must be positive")
    win = Window.from_args(
        {"kernels": block, "strides": args["strides"], "pads": args["pads"], "dilations": args["dilations"]},
        len(image),
    )
    blocks, _, _ = win.resolve(image)
    return win, tuple(image), blocks


def _infer_col2im(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "Col2Im"
    x = ins[0]
    win, image, blocks = col2im_window(op, args)
    kp, lp = prod(win.kernels), prod(blocks)
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    check(len(x.shape) == 3, f"{op}: input {_s(x)} must be [N, C * prod(block_shape), L]")
    check(
        x.shape[1] is None or x.shape[1] % kp == 0,
        f"{op}: input {_s(x)}: dim 1 is not a multiple of prod(block_shape) = {kp}",
    )
    check(
        _same(x.shape[2], lp),
        f"{op}: input {_s(x)} has L = {x.shape[2]} blocks; image {list(image)} with block "
        f"{list(win.kernels)} holds {lp}",
    )
    c = None if x.shape[1] is None else x.shape[1] // kp
    return [TensorInfo((x.shape[0], c, *image), x.dtype)]


define(
    "Col2Im",
    family="sampling",
    doc="Sums the columns of input [N, C * prod(block), L] into an image [N, C, *image_shape]: "
    "column (c, tap) of block l adds to the image cell block_l * stride - pad_begin + tap * dilation "
    "(the adjoint of im2col; L = the number of block positions, row-major).",
    inputs=1,
    input_docs=[("input", "[N, C * prod(block_shape), L]")],
    output_docs=[("image", "[N, C, *image_shape]")],
    args=COL2IM_ARGS,
    infer=_infer_col2im,
)


def _infer_col2im_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "Col2ImGradient"
    dy = ins[0]
    win, image, blocks = col2im_window(op, args)
    if dy.shape is None:
        return [TensorInfo(None, dy.dtype)]
    check(
        len(dy.shape) == 2 + len(image) and all(_same(a, b) for a, b in zip(dy.shape[2:], image)),
        f"{op}: dY {_s(dy)} must be [N, C, *{list(image)}]",
    )
    c = dy.shape[1]
    return [TensorInfo((dy.shape[0], None if c is None else c * prod(win.kernels), prod(blocks)), dy.dtype)]


define(
    "Col2ImGradient",
    family="sampling",
    doc="Gradient of Col2Im (im2col): dX[n, c * K + tap, l] = dY[n, c, cell of (l, tap)], 0 for cells "
    "in the padding.",
    inputs=1,
    input_docs=[("dY", "[N, C, *image_shape]")],
    output_docs=[("dX", "[N, C * prod(block_shape), L]")],
    args=COL2IM_ARGS,
    infer=_infer_col2im_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("Col2Im")
def _col2im_grad(g: GradientContext) -> GradientOps:
    return g.single("Col2ImGradient", [g.GO(0)], [g.GI(0)], **g.forward_args())


# -- DeformConv ------------------------------------------------------------------------------------

DEFORM_ARGS = [
    *(a for a in WINDOW_ARGS if a.name not in ("order", "legacy_pad")),
    Arg("group", ArgType.INT, 1, "channel groups of the convolution"),
    Arg("offset_group", ArgType.INT, 1, "channel groups sharing one set of offsets (and mask)"),
]


def _canon_deform(args: dict[str, Any]) -> dict[str, Any]:
    return canonicalize_window({**args, "order": "NCHW", "legacy_pad": 0})


def deform_geometry(
    args: Mapping[str, Any], x: Shape, w: Shape
) -> tuple[Window | None, tuple[int | None, ...] | None]:
    """(window, output spatial sizes) from X and W shapes (None parts when unknown)."""
    nsp = len(x) - 2
    kern = w[2:]
    if args.get("kernels"):
        win = Window.from_args(args, nsp)
        check(
            all(k is None or k == kw for k, kw in zip(kern, win.kernels)),
            f"DeformConv: kernel {list(win.kernels)} does not match W {_s(w)}",
        )
    elif all(k is not None for k in kern):
        win = Window.from_args(args, nsp, kernels=[int(k) for k in kern])
    else:
        return None, None
    sizes = x[2:]
    if any(s is None for s in sizes):
        return win, None
    return win, win.resolve([int(s) for s in sizes])[0]


def _infer_deform(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "DeformConv"
    dtype = same_dtype(op, ins)
    x, w, off = ins[0], ins[1], ins[2]
    group, og = args["group"], args["offset_group"]
    check(group >= 1 and og >= 1, f"{op}: group and offset_group must be >= 1")
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    check(len(x.shape) >= 3, f"{op}: X {_s(x)} needs a batch, a channel and a spatial axis")
    check(len(w.shape) == len(x.shape), f"{op}: W {_s(w)} must have X's rank ({len(x.shape)})")
    c, m = x.shape[1], w.shape[0]
    check(
        c is None or w.shape[1] is None or c == w.shape[1] * group,
        f"{op}: X {_s(x)} has {c} channels; W {_s(w)} with group {group} takes {w.shape[1]} per group",
    )
    check(m is None or m % group == 0, f"{op}: {m} output channels do not divide into {group} groups")
    check(c is None or c % og == 0, f"{op}: {c} channels do not divide into {og} offset groups")
    win, outs = deform_geometry(args, x.shape, w.shape)
    nsp = len(x.shape) - 2
    if off.shape is not None and win is not None:
        want = (x.shape[0], og * prod(win.kernels) * nsp, *(outs or (None,) * nsp))
        check(
            len(off.shape) == len(want) and all(_same(a, b) for a, b in zip(off.shape, want)),
            f"{op}: offset {_s(off)} must be {_s(want)}",
        )
    if len(ins) > 3 and ins[3].shape is not None:
        check(prod(ins[3].shape) in (None, m), f"{op}: bias {_s(ins[3])} must have {m} entries")
    if len(ins) > 4 and ins[4].shape is not None and win is not None:
        want = (x.shape[0], og * prod(win.kernels), *(outs or (None,) * nsp))
        check(
            len(ins[4].shape) == len(want) and all(_same(a, b) for a, b in zip(ins[4].shape, want)),
            f"{op}: mask {_s(ins[4])} must be {_s(want)}",
        )
    return [TensorInfo((x.shape[0], m, *(outs or (None,) * nsp)), dtype)]


define(
    "DeformConv",
    family="sampling",
    doc="Deformable convolution (ONNX DeformConv-19): Conv whose kernel tap t at output position p "
    "reads X bilinearly (0 outside) at p * stride - pad_begin + t * dilation + offset[n, g, t, :, p], "
    "times mask[n, g, t, p] when given; g is the tap's offset group. X [N, C, *S], W [M, C/group, *K], "
    "offset [N, offset_group * prod(K) * k, *out], bias [M], mask [N, offset_group * prod(K), *out]. "
    "(No gradient here.)",
    inputs=(3, 5),
    input_docs=[
        ("X", "[N, C, *S]"),
        ("W", "[M, C/group, *K]"),
        ("offset", "[N, offset_group * prod(K) * k, *out]"),
        ("B", "[M] (optional)"),
        ("mask", "[N, offset_group * prod(K), *out] (optional)"),
    ],
    output_docs=[("Y", "[N, M, *out]")],
    args=DEFORM_ARGS,
    canonicalize=_canon_deform,
    infer=_infer_deform,
    differentiable=False,
)


# -- MaxPoolWithIndices / MaxUnpool ----------------------------------------------------------------

MAXPOOL_INDICES_ARGS = [
    *(a for a in WINDOW_ARGS if a.name != "order"),
    Arg("storage_order", ArgType.INT, 0, "indices: 0 row-major, 1 column-major spatial offsets"),
]


def _canon_pool_indices(args: dict[str, Any]) -> dict[str, Any]:
    out = canonicalize_window({**args, "order": "NCHW"})
    check(out["storage_order"] in (0, 1), f"storage_order must be 0 or 1, got {out['storage_order']}")
    return out


def _infer_pool_indices(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "MaxPoolWithIndices"
    x = ins[0]
    check(bool(args.get("kernels")), f"{op}: no kernel size given (kernel, kernel_h/kernel_w or kernels)")
    if x.shape is None:
        return [x, TensorInfo(None, INT64)]
    check(len(x.shape) >= 3, f"{op}: X {_s(x)} needs a batch, a channel and a spatial axis")
    sizes = x.shape[2:]
    win = Window.from_args(args, len(sizes))
    outs = (None,) * len(sizes) if None in sizes else win.resolve([int(s) for s in sizes])[0]
    shape = (x.shape[0], x.shape[1], *outs)
    return [TensorInfo(shape, x.dtype), TensorInfo(shape, INT64)]


define(
    "MaxPoolWithIndices",
    family="sampling",
    doc="MaxPool (NCHW) that also returns, per output, the int64 index of its maximum in X flattened "
    "(ONNX MaxPool's Indices: n, c and the spatial offset, row-major; with storage_order 1 the "
    "spatial offset is column-major). Ties go to the first cell in window order; padding never wins.",
    inputs=1,
    outputs=2,
    input_docs=[("X", "[N, C, *S]")],
    output_docs=[("Y", "[N, C, *out]"), ("Indices", "int64 [N, C, *out]")],
    args=MAXPOOL_INDICES_ARGS,
    canonicalize=_canon_pool_indices,
    infer=_infer_pool_indices,
    grad_outputs=(0,),
)


define(
    "MaxPoolWithIndicesGradient",
    family="sampling",
    doc="Gradient of MaxPoolWithIndices: each dY added to the X cell its index names.",
    inputs=3,
    input_docs=[("X", "forward input (for its shape)"), ("Indices", "forward output"), ("dY", "gradient")],
    output_docs=[("dX", "X's shape")],
    args=MAXPOOL_INDICES_ARGS,
    canonicalize=_canon_pool_indices,
    infer=lambda args, ins, n: [TensorInfo(ins[0].shape, ins[2].dtype)],
    gradient_op=True,
    differentiable=False,
)


@gradient("MaxPoolWithIndices")
def _pool_indices_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None])
    return g.single("MaxPoolWithIndicesGradient", [g.I(0), g.O(1), g.GO(0)], [g.GI(0)], **g.forward_args())


MAXUNPOOL_ARGS = [
    *(a for a in WINDOW_ARGS if a.name not in ("order", "legacy_pad") and not a.name.startswith("dilation")),
    Arg("output_shape", ArgType.INTS, [], "the full output shape (default: from the window)"),
]


def _canon_unpool(args: dict[str, Any]) -> dict[str, Any]:
    return canonicalize_window({**args, "order": "NCHW", "legacy_pad": 0})


def unpool_shape(op: str, args: Mapping[str, Any], x: Shape) -> tuple[Shape, Shape]:
    """MaxUnpool's (unpooled shape, output shape) for input shape ``x``: the indices address the
    unpooled shape, (S - 1) * stride + K - pad_begin - pad_end per spatial axis; output_shape, when
    given, may only add cells at the ends."""
    check(len(x) >= 3, f"{op}: X {_s(x)} needs a batch, a channel and a spatial axis")
    sizes = x[2:]
    win = Window.from_args(args, len(sizes))
    if None in sizes:
        inferred: Shape = (x[0], x[1], *(None,) * len(sizes))
    else:
        inferred = (x[0], x[1], *win.transpose_resolve([int(s) for s in sizes], [0])[0])
    if not args["output_shape"]:
        return inferred, inferred
    out = tuple(int(d) for d in args["output_shape"])
    check(
        len(out) == len(x)
        and all(_same(a, b) for a, b in zip(out[:2], x[:2]))
        and all(i is None or o >= i for o, i in zip(out[2:], inferred[2:])),
        f"{op}: output_shape {list(out)} must be [N, C, *spatial] for X {_s(x)}, at least {_s(inferred)}",
    )
    return inferred, out


def _infer_unpool(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "MaxUnpool"
    x, idx = ins
    check(bool(args.get("kernels")), f"{op}: no kernel size given")
    check(
        idx.dtype is None or idx.dtype in (INT32, INT64),
        f"{op}: I must be int32 or int64, got {dtypes.name(idx.dtype)}",
    )
    if x.shape is None:
        return [TensorInfo(None, x.dtype)]
    if idx.shape is not None:
        check(
            len(idx.shape) == len(x.shape) and all(_same(a, b) for a, b in zip(idx.shape, x.shape)),
            f"{op}: I {_s(idx)} must have X's shape {_s(x)}",
        )
    return [TensorInfo(unpool_shape(op, args, x.shape)[1], x.dtype)]


define(
    "MaxUnpool",
    family="sampling",
    doc="The partial inverse of MaxPoolWithIndices: zeros of the unpooled shape, (S - 1) * stride + K - "
    "pad_begin - pad_end per spatial axis, with Y.flat[I] = X (I: flat indices as MaxPoolWithIndices "
    "gives them); with output_shape, that result sits at the start of zeros of output_shape (ONNX's "
    "reference).",
    inputs=2,
    input_docs=[("X", "[N, C, *S]"), ("I", "int64 [N, C, *S], flat output indices")],
    output_docs=[("Y", "[N, C, *out]")],
    args=MAXUNPOOL_ARGS,
    canonicalize=_canon_unpool,
    infer=_infer_unpool,
)

define(
    "MaxUnpoolGradient",
    family="sampling",
    doc="Gradient of MaxUnpool: dX = dY, cut to the unpooled shape, at the flat indices I.",
    inputs=2,
    input_docs=[("dY", "gradient of Y"), ("I", "forward indices (and X's shape)")],
    output_docs=[("dX", "I's shape")],
    args=MAXUNPOOL_ARGS,
    canonicalize=_canon_unpool,
    infer=lambda args, ins, n: [TensorInfo(ins[1].shape, ins[0].dtype)],
    gradient_op=True,
    differentiable=False,
)


@gradient("MaxUnpool")
def _unpool_grad(g: GradientContext) -> GradientOps:
    return g.single("MaxUnpoolGradient", [g.GO(0), g.I(1)], [g.GI(0)], [g.GI(0), None], **g.forward_args())
