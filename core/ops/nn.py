"""Layers: FC, Conv, FusedConv, ConvTranspose, MaxPool, AveragePool, PadImage, and their gradients."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.ops.geometry import (
    PAD_ARGS,
    TRANSPOSE_ARGS,
    WINDOW_ARGS,
    Window,
    canonicalize_pads,
    canonicalize_transpose_window,
    canonicalize_window,
    split_pads,
)
from kaffa.ops.unary import FLOAT_LOWEST, FLOAT_MAX  # Clip's defaults: no bound
from kaffa.proto import OperatorDef
from kaffa.schema import (
    Arg,
    ArgType,
    TensorInfo,
    check,
    define,
    norm_axis,
    prod,
    same_dtype,
)

# -- FC --------------------------------------------------------------------------------------------


def _infer_fc(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, w = ins[0], ins[1]
    dtype = same_dtype("FC", ins)
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    axis = norm_axis(args["axis"], len(x.shape), "FC")
    axis_w = norm_axis(args["axis_w"], len(w.shape), "FC", "axis_w")
    k_x, n_w, k_w = prod(x.shape[axis:]), prod(w.shape[:axis_w]), prod(w.shape[axis_w:])
    check(
        k_x is None or k_w is None or k_x == k_w,
        f"FC: X flattened at axis {axis} has {k_x} columns but W flattened at axis_w {axis_w} has {k_w}",
    )
    if len(ins) > 2 and ins[2].shape is not None:
        check(
            n_w is None or prod(ins[2].shape) in (None, n_w),
            f"FC: bias has {prod(ins[2].shape)} elements, W has {n_w} rows",
        )
    return [TensorInfo((*x.shape[:axis], n_w), dtype)]


define(
    "FC",
    family="nn",
    doc="Fully connected: Y = X · Wᵀ + b, with X flattened to 2-D at `axis` and W at `axis_w`.",
    inputs=(2, 3),
    input_docs=[
        ("X", "input, flattened to [M, K] at axis"),
        ("W", "weights [N, K]"),
        ("b", "bias [N] (optional)"),
    ],
    output_docs=[("Y", "output [M..., N]")],
    args=[
        Arg("axis", ArgType.INT, 1, "flatten X into [prod(dims[:axis]), prod(dims[axis:])]"),
        Arg("axis_w", ArgType.INT, 1, "flatten W likewise"),
    ],
    infer=_infer_fc,
)

# -- Conv ------------------------------------------------------------------------------------------

# Read by the gradient makers of Conv and ConvTranspose (Caffe2: e.g. for a first layer fed by data).
NO_DX_ARG = Arg("no_gradient_to_input", ArgType.BOOL, False, "the gradient op computes no dX")


def _spatial(x: TensorInfo, order: str) -> tuple[int | None, ...]:
    assert x.shape is not None
    return tuple(x.shape[2:]) if order == "NCHW" else tuple(x.shape[1:-1])


def _channels(x: TensorInfo, order: str) -> int | None:
    assert x.shape is not None
    return x.shape[1] if order == "NCHW" else x.shape[-1]


def _out_spatial(win: Window, sizes: tuple[int | None, ...]) -> tuple[int | None, ...]:
    if any(s is None for s in sizes):
        return tuple(None for _ in sizes)
    return win.resolve([int(s) for s in sizes])[0]


def _layout(
    order: str, n: int | None, c: int | None, spatial: tuple[int | None, ...]
) -> tuple[int | None, ...]:
    return (n, c, *spatial) if order == "NCHW" else (n, *spatial, c)


def _infer_conv(
    args: Mapping[str, Any], ins: list[TensorInfo], n: int, name: str = "Conv"
) -> list[TensorInfo]:
    x, w = ins[0], ins[1]
    dtype = same_dtype(name, ins)
    order, group = args["order"], args["group"]
    check(group >= 1, f"{name}: group must be >= 1, got {group}")
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    check(
        len(x.shape) >= 3,
        f"{name}: X must have a batch, a channel and at least one spatial axis, got rank {len(x.shape)}",
    )
    check(
        len(w.shape) == len(x.shape),
        f"{name}: filter rank {len(w.shape)} differs from input rank {len(x.shape)}",
    )
    nsp = len(x.shape) - 2
    m = w.shape[0]
    kern = tuple(w.shape[2:]) if order == "NCHW" else tuple(w.shape[1:-1])
    w_c = w.shape[1] if order == "NCHW" else w.shape[-1]
    c = _channels(x, order)
    check(c is None or c % group == 0, f"{name}: {c} input channels do not divide into {group} groups")
    check(m is None or m % group == 0, f"{name}: {m} output channels do not divide into {group} groups")
    check(
        c is None or w_c is None or w_c * group == c,
        f"{name}: filter expects {w_c} channels per group x {group} groups but X has {c} channels",
    )
    if args.get("kernels"):
        win = Window.from_args(args, nsp)
        check(
            any(k is None for k in kern) or tuple(win.kernels) == kern,
            f"{name}: kernel argument {list(win.kernels)} does not match filter spatial shape {list(kern)}",
        )
    else:
        check(all(k is not None for k in kern), f"{name}: kernel size unknown")
        win = Window.from_args(args, nsp, kernels=[int(k) for k in kern])  # type: ignore[misc]
    if len(ins) > 2 and ins[2].shape is not None:
        check(
            m is None or prod(ins[2].shape) in (None, m),
            f"{name}: bias has shape {list(ins[2].shape)} for {m} output channels",
        )
    return [TensorInfo(_layout(order, x.shape[0], m, _out_spatial(win, _spatial(x, order))), dtype)]


define(
    "Conv",
    family="nn",
    doc="N-d convolution (cross-correlation) with stride, padding, dilation and groups. "
    "NCHW: X [N, C, *S], filter [M, C/group, *K]; NHWC: X [N, *S, C], filter [M, *K, C/group]. "
    "Without a kernel argument the filter's spatial shape is used.",
    inputs=(2, 3),
    input_docs=[("X", "input"), ("filter", "weights"), ("bias", "[M] (optional)")],
    output_docs=[("Y", "output")],
    args=[*WINDOW_ARGS, Arg("group", ArgType.INT, 1, "number of channel groups"), NO_DX_ARG],
    canonicalize=canonicalize_window,
    infer=_infer_conv,
)

# -- FusedConv -------------------------------------------------------------------------------------

# What FusedConv applies after Conv (+ Z); the names are the ops it stands for.
FUSED_ACTIVATIONS = ("", "Relu", "Clip")


def _canon_fused_conv(args: dict[str, Any]) -> dict[str, Any]:
    if args["activation"] not in FUSED_ACTIVATIONS:
        raise ArgumentError(
            f"FusedConv: activation must be one of {', '.join(repr(a) for a in FUSED_ACTIVATIONS)}, "
            f"got {args['activation']!r}"
        )
    return canonicalize_window(args)


def _infer_fused_conv(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    same_dtype("FusedConv", ins)
    y = _infer_conv(args, ins[:3], n, "FusedConv")[0]
    if len(ins) > 3 and ins[3].shape is not None and y.shape is not None:
        z = ins[3].shape
        check(
            _compatible(z, y.shape),
            f"FusedConv: Z has shape {list(z)} but the convolution's output has shape {list(y.shape)} "
            "(Z is added without broadcasting)",
        )
    return [y]


define(
    "FusedConv",
    family="nn",
    doc="Conv, then an optional residual Z and an activation in one op: Y = act(Conv(X, filter, bias) "
    '+ Z), act one of none (activation=""), Relu, or Clip to [min, max] (ReLU6: min=0, max=6). '
    "Written by kaffa.passes.fuse_conv_activation (onnxruntime's com.microsoft FusedConv; Caffe2's "
    "ConvRelu). Z, which needs a bias, has Y's shape; Y may overwrite it in place.",
    inputs=(2, 4),
    input_docs=[
        ("X", "input"),
        ("filter", "weights"),
        ("bias", "[M] (optional; required with Z)"),
        ("Z", "added before the activation, Y's shape (optional)"),
    ],
    output_docs=[("Y", "output")],
    args=[
        *WINDOW_ARGS,
        Arg("group", ArgType.INT, 1, "number of channel groups"),
        NO_DX_ARG,
        Arg("activation", ArgType.STRING, "", 'applied last: "" (none), "Relu" or "Clip"'),
        Arg("min", ArgType.FLOAT, FLOAT_LOWEST, "Clip's lower bound"),
        Arg("max", ArgType.FLOAT, FLOAT_MAX, "Clip's upper bound"),
    ],
    inplace={(3, 0)},
    canonicalize=_canon_fused_conv,
    infer=_infer_fused_conv,
)

# -- pooling ---------------------------------------------------------------------------------------


def _pool_window(args: Mapping[str, Any], x: TensorInfo) -> tuple[Window, tuple[int | None, ...]]:
    order = args["order"]
    assert x.shape is not None
    sizes = _spatial(x, order)
    if args["global_pooling"]:
        check(all(s is not None for s in sizes), "global pooling needs known spatial sizes")
        win = Window.from_args(
            {**args, "pads": [0], "strides": [1], "dilations": [1], "legacy_pad": 0},
            len(sizes),
            kernels=[int(s) for s in sizes],
        )  # type: ignore[misc]
    else:
        win = Window.from_args(args, len(sizes))
    return win, sizes


def _infer_pool(name: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if x.shape is None:
            return [x]
        check(
            len(x.shape) >= 3,
            f"{name}: X must have a batch, a channel and a spatial axis, got rank {len(x.shape)}",
        )
        if not args["global_pooling"]:
            check(
                bool(args.get("kernels")),
                f"{name}: no kernel size given (kernel, kernel_h/kernel_w or kernels)",
            )
        win, sizes = _pool_window(args, x)
        return [
            TensorInfo(
                _layout(args["order"], x.shape[0], _channels(x, args["order"]), _out_spatial(win, sizes)),
                x.dtype,
            )
        ]

    return infer


POOL_ARGS = [*WINDOW_ARGS, Arg("global_pooling", ArgType.BOOL, False, "pool over the whole spatial extent")]

define(
    "MaxPool",
    family="nn",
    doc="Max over sliding windows. Padding never wins (it counts as -inf, or the dtype's minimum for "
    "int8 / uint8).",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "output")],
    args=POOL_ARGS,
    canonicalize=canonicalize_window,
    infer=_infer_pool("MaxPool"),
    dtypes=(*dtypes.FLOAT_TYPES, np.dtype(np.int8), np.dtype(np.uint8)),
)

define(
    "AveragePool",
    family="nn",
    doc="Mean over sliding windows. By default padded cells are not counted; with count_include_pad "
    "the declared padding is counted (but not Caffe ceil-mode overhang).",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "output")],
    args=[*POOL_ARGS, Arg("count_include_pad", ArgType.BOOL, False, "count padded cells in the divisor")],
    canonicalize=canonicalize_window,
    infer=_infer_pool("AveragePool"),
)


def _compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    """Same rank and no known dims that differ."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


# -- ConvTranspose ---------------------------------------------------------------------------------


def _infer_conv_transpose(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, w = ins[0], ins[1]
    dtype = same_dtype("ConvTranspose", ins)
    order, group = args["order"], args["group"]
    check(group >= 1, f"ConvTranspose: group must be >= 1, got {group}")
    if x.shape is None or w.shape is None:
        return [TensorInfo(None, dtype)]
    check(
        len(x.shape) >= 3,
        "ConvTranspose: X must have a batch, a channel and at least one spatial axis, "
        f"got rank {len(x.shape)}",
    )
    check(
        len(w.shape) == len(x.shape),
        f"ConvTranspose: filter rank {len(w.shape)} differs from input rank {len(x.shape)}",
    )
    nsp = len(x.shape) - 2
    c = _channels(x, order)
    w_c = w.shape[0]
    kern = tuple(w.shape[2:]) if order == "NCHW" else tuple(w.shape[1:-1])
    mg = w.shape[1] if order == "NCHW" else w.shape[-1]
    m = None if mg is None else mg * group
    check(
        c is None or w_c is None or c == w_c,
        f"ConvTranspose: X has {c} channels but the filter {list(w.shape)} is for {w_c}",
    )
    check(c is None or c % group == 0, f"ConvTranspose: {c} input channels do not divide into {group} groups")
    if args.get("kernels"):
        win = Window.from_args(args, nsp)
        check(
            any(k is None for k in kern) or tuple(win.kernels) == kern,
            f"ConvTranspose: kernel argument {list(win.kernels)} does not match filter spatial "
            f"shape {list(kern)}",
        )
    else:
        check(all(k is not None for k in kern), "ConvTranspose: kernel size unknown")
        win = Window.from_args(args, nsp, kernels=[int(k) for k in kern])  # type: ignore[misc]
    if len(ins) > 2 and ins[2].shape is not None:
        check(
            m is None or prod(ins[2].shape) in (None, m),
            f"ConvTranspose: bias has shape {list(ins[2].shape)} for {m} output channels",
        )
    sizes = _spatial(x, order)
    if any(s is None for s in sizes):
        outs: tuple[int | None, ...] = tuple(None for _ in sizes)
    else:
        outs = win.transpose_resolve([int(s) for s in sizes], args["adjs"])[0]
    return [TensorInfo(_layout(order, x.shape[0], m, outs), dtype)]


define(
    "ConvTranspose",
    family="nn",
    doc="Transposed convolution (the adjoint of Conv w.r.t. its input): every input cell scatters "
    "X[n, c, i] * W[c, m, k] into Y[n, m, i * stride + k - pad_begin]. NCHW: X [N, C, *S], filter "
    "[C, M/group, *K]; NHWC: X [N, *S, C], filter [C, *K, M/group]. Output size per axis: "
    "(S - 1) * stride + K + adj - pad_begin - pad_end; legacy_pad VALID or SAME means no padding.",
    inputs=(2, 3),
    input_docs=[("X", "input"), ("filter", "weights"), ("bias", "[M] (optional)")],
    output_docs=[("Y", "output")],
    args=[*TRANSPOSE_ARGS, Arg("group", ArgType.INT, 1, "number of channel groups"), NO_DX_ARG],
    canonicalize=canonicalize_transpose_window,
    infer=_infer_conv_transpose,
)

# -- PadImage --------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge", "wrap")
PAD_IMAGE_ARGS = [
    *PAD_ARGS,
    Arg("order", ArgType.STRING, "NCHW", "NCHW or NHWC"),
    Arg("mode", ArgType.STRING, "constant", "constant, reflect (mirror without the edge), edge or wrap"),
    Arg("value", ArgType.FLOAT, 0.0, "fill value for mode=constant"),
]


def _canon_pad_image(args: dict[str, Any]) -> dict[str, Any]:
    out = canonicalize_pads(args)
    check(
        out["mode"] in PAD_MODES, f"PadImage: mode must be one of {', '.join(PAD_MODES)}, got {out['mode']!r}"
    )
    return out


def _check_reflect(name: str, mode: str, sizes: tuple[int | None, ...], begins, ends) -> None:
    if mode != "reflect":
        return
    for s, b, e in zip(sizes, begins, ends):
        check(
            s is None or max(b, e) < s,
            f"{name}: reflect padding by {b}+{e} needs a spatial size above {max(b, e)}, got {s}",
        )


def _pad_image_sizes(name: str, args: Mapping[str, Any], x: TensorInfo, sign: int) -> TensorInfo:
    """PadImage's output (sign=1) or PadImageGradient's dX (sign=-1) from the other's shape."""
    if x.shape is None:
        return x
    check(len(x.shape) >= 3, f"{name}: needs a batch, a channel and a spatial axis, got rank {len(x.shape)}")
    order = args["order"]
    sizes = _spatial(x, order)
    begins, ends = split_pads(args["pads"], len(sizes))
    outs = tuple(None if s is None else s + sign * (b + e) for s, b, e in zip(sizes, begins, ends))
    check(
        all(o is None or o > 0 for o in outs),
        f"{name}: spatial sizes {list(sizes)} minus pads {list(begins)}+{list(ends)} leave nothing",
    )
    _check_reflect(name, args["mode"], outs if sign < 0 else sizes, begins, ends)
    return TensorInfo(_layout(order, x.shape[0], _channels(x, order), outs), x.dtype)


define(
    "PadImage",
    family="nn",
    doc="Pads the spatial axes of an image batch. mode=constant fills with `value`; reflect mirrors "
    "without repeating the edge (pads must be below the size); edge repeats the border cell; wrap "
    "repeats the axis periodically (ONNX Pad's wrap).",
    inputs=1,
    input_docs=[("X", "input (NCHW or NHWC)")],
    output_docs=[("Y", "padded output")],
    args=PAD_IMAGE_ARGS,
    canonicalize=_canon_pad_image,
    infer=lambda args, ins, n: [_pad_image_sizes("PadImage", args, ins[0], 1)],
    dtypes=dtypes.NUMERIC_TYPES,  # data movement: integers too (ONNX pads int tensors)
)

# -- gradients -------------------------------------------------------------------------------------


def _infer_fc_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, w, dy = ins
    dtype = same_dtype("FCGradient", ins)
    y = _infer_fc(args, [x, w], 1)[0]
    if y.shape is not None and dy.shape is not None:
        check(
            _compatible(y.shape, dy.shape),
            f"FCGradient: dY has shape {list(dy.shape)}, the forward output {list(y.shape)}",
        )
    n_w = None
    if w.shape is not None:
        n_w = prod(w.shape[: norm_axis(args["axis_w"], len(w.shape), "FCGradient", "axis_w")])
    return [TensorInfo(w.shape, dtype), TensorInfo((n_w,), dtype), TensorInfo(x.shape, dtype)][:n]


define(
    "FCGradient",
    family="nn",
    doc="FC's gradient: dW = dYᵀ · X, db = column sums of dY, dX = dY · W (2-D views as in FC).",
    inputs=3,
    outputs=(2, 3),
    input_docs=[("X", "forward input"), ("W", "forward weights"), ("dY", "gradient of Y")],
    output_docs=[("dW", "gradient of W"), ("db", "gradient of b [N]"), ("dX", "gradient of X (optional)")],
    args=[
        Arg("axis", ArgType.INT, 1, "as the forward FC"),
        Arg("axis_w", ArgType.INT, 1, "as the forward FC"),
    ],
    infer=_infer_fc_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("FC")
def _fc_grad(g: GradientContext) -> GradientOps:
    # FCGradient always writes db; without a bias it goes to a scratch blob.
    db = g.GI(2) if g.num_inputs == 3 else g.temp("bias")
    g_inputs = [g.GI(0), g.GI(1)] + ([g.GI(2)] if g.num_inputs == 3 else [])
    return g.single(
        "FCGradient",
        [g.I(0), g.I(1), g.GO(0)],
        [g.GI(1), db, g.GI(0)],
        g_inputs,
        **g.forward_args("axis", "axis_w"),
    )


NO_BIAS_ARG = Arg("no_bias", ArgType.BOOL, False, "the forward op had no bias: outputs are dW, [dX]")


def _infer_conv_like_grad(
    name: str, forward: Callable[[Mapping[str, Any], list[TensorInfo], int], list[TensorInfo]]
) -> Callable[[Mapping[str, Any], list[TensorInfo], int], list[TensorInfo]]:
    """dW like W, db [M] (M from the forward output's channels), dX like X."""

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x, w, dy = ins
        check(
            not args["no_bias"] or n <= 2,
            f"{name}: with no_bias the outputs are dW and dX, got {n} outputs",
        )
        y = forward(args, [x, w], 1)[0]
        dtype = same_dtype(name, ins)
        if y.shape is not None and dy.shape is not None:
            check(
                _compatible(y.shape, dy.shape),
                f"{name}: dY has shape {list(dy.shape)}, the forward output {list(y.shape)}",
            )
        m = None
        for shape in (y.shape, dy.shape):
            if shape is not None and m is None:
                m = _channels(TensorInfo(shape), args["order"])
        outs = [TensorInfo(w.shape, dtype)]
        if not args["no_bias"]:
            outs.append(TensorInfo((m,), dtype))
        outs.append(TensorInfo(x.shape, dtype))
        return outs[:n]

    return infer


define(
    "ConvGradient",
    family="nn",
    doc="Conv's gradient: dW (correlation of X with dY), db (sums of dY over batch and space), "
    "dX (dY scattered back through the filter: a transposed convolution).",
    inputs=3,
    outputs=(1, 3),
    input_docs=[("X", "forward input"), ("filter", "forward weights"), ("dY", "gradient of Y")],
    output_docs=[
        ("dfilter", "gradient of the filter"),
        ("dbias", "gradient of the bias [M] (absent with no_bias)"),
        ("dX", "gradient of X (optional)"),
    ],
    args=[*WINDOW_ARGS, Arg("group", ArgType.INT, 1, "as the forward Conv"), NO_DX_ARG, NO_BIAS_ARG],
    canonicalize=canonicalize_window,
    infer=_infer_conv_like_grad("ConvGradient", _infer_conv),
    gradient_op=True,
    differentiable=False,
)

define(
    "ConvTransposeGradient",
    family="nn",
    doc="ConvTranspose's gradient: dW (correlation of dY with X), db (sums of dY over batch and "
    "space), dX (a forward convolution of dY with the same filter).",
    inputs=3,
    outputs=(1, 3),
    input_docs=[("X", "forward input"), ("filter", "forward weights"), ("dY", "gradient of Y")],
    output_docs=[
        ("dfilter", "gradient of the filter"),
        ("dbias", "gradient of the bias [M] (absent with no_bias)"),
        ("dX", "gradient of X (optional)"),
    ],
    args=[*TRANSPOSE_ARGS, Arg("group", ArgType.INT, 1, "as the forward op"), NO_DX_ARG, NO_BIAS_ARG],
    canonicalize=canonicalize_transpose_window,
    infer=_infer_conv_like_grad("ConvTransposeGradient", _infer_conv_transpose),
    gradient_op=True,
    differentiable=False,
)


def _conv_gradient_op(
    g: GradientContext, grad_type: str, dy: str, args: dict[str, Any]
) -> tuple[OperatorDef, list[str | None]]:
    """The ConvGradient (or ConvTransposeGradient) of X, W[, b] for ``dy``, and the gradients it
    gives X, W[, b]. Caffe2's output order: dW, [db], [dX]; no_bias says which one is which."""
    with_dx = not g.args["no_gradient_to_input"]
    has_bias = g.num_inputs >= 3
    outs = [g.GI(1), *([g.GI(2)] if has_bias else []), *([g.GI(0)] if with_dx else [])]
    g_inputs = [g.GI(0) if with_dx else None, g.GI(1), *([g.GI(2)] if has_bias else [])]
    if not has_bias:
        args["no_bias"] = 1
    return g.make(grad_type, [g.I(0), g.I(1), dy], outs, **args), g_inputs


def _conv_grad_maker(grad_type: str):
    def maker(g: GradientContext) -> GradientOps:
        op, g_inputs = _conv_gradient_op(g, grad_type, g.GO(0), g.forward_args())
        return GradientOps([op], g_inputs)

    return maker


gradient("Conv")(_conv_grad_maker("ConvGradient"))
gradient("ConvTranspose")(_conv_grad_maker("ConvTransposeGradient"))


# The arguments FusedConv adds to Conv's: not passed on to ConvGradient.
_FUSED_ONLY_ARGS = ("activation", "min", "max")


@gradient("FusedConv")
def _fused_conv_grad(g: GradientContext) -> GradientOps:
    # dPre, the gradient before the activation, is Z's gradient too (Z is added as it is).
    has_z = g.num_inputs == 4
    act, ops = g.args["activation"], []
    if act == "":
        d_pre = g.GO(0)
    else:
        d_pre = g.GI(3) if has_z else g.temp("pre")
        extra = {"min": g.args["min"], "max": g.args["max"]} if act == "Clip" else {}
        ops.append(g.make(f"{act}Gradient", [g.O(0), g.GO(0)], [d_pre], **extra))
    args = {k: v for k, v in g.forward_args().items() if k not in _FUSED_ONLY_ARGS}
    conv_grad, g_inputs = _conv_gradient_op(g, "ConvGradient", d_pre, args)
    return GradientOps([*ops, conv_grad], g_inputs + ([d_pre] if has_z else []))


def _infer_pool_grad(name: str):
    forward = _infer_pool(name)

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x, y, dy = ins
        same_dtype(name, ins)
        want = forward(args, [x], 1)[0]
        for what, t in (("Y", y), ("dY", dy)):
            if want.shape is not None and t.shape is not None:
                check(
                    _compatible(want.shape, t.shape),
                    f"{name}: {what} has shape {list(t.shape)}, the pooled X {list(want.shape)}",
                )
        return [x]

    return infer


for _op, _rule in (
    ("MaxPool", "dY goes to every cell equal to its window's max (all of them on ties, as Caffe2's CPU op)"),
    ("AveragePool", "dY / (the window's divisor) goes to every counted cell of the window"),
):
    define(
        f"{_op}Gradient",
        family="nn",
        doc=f"{_op}'s gradient: {_rule}; contributions of overlapping windows add.",
        inputs=3,
        input_docs=[("X", "forward input"), ("Y", "forward output"), ("dY", "gradient of Y")],
        output_docs=[("dX", "gradient of X")],
        args=[*POOL_ARGS, Arg("count_include_pad", ArgType.BOOL, False, "as the forward op")]
        if _op == "AveragePool"
        else POOL_ARGS,
        canonicalize=canonicalize_window,
        infer=_infer_pool_grad(f"{_op}Gradient"),
        gradient_op=True,
        differentiable=False,
    )


@gradient("MaxPool", "AveragePool")
def _pool_grad(g: GradientContext) -> GradientOps:
    return g.single(f"{g.op.type}Gradient", [g.I(0), g.O(0), g.GO(0)], [g.GI(0)], **g.forward_args())


define(
    "PadImageGradient",
    family="nn",
    doc="PadImage's gradient from dY alone: the interior of dY, plus (reflect, edge, wrap) the padded "
    "cells' gradients added to the cells they copied.",
    inputs=1,
    input_docs=[("dY", "gradient of the padded output")],
    output_docs=[("dX", "gradient of X")],
    args=PAD_IMAGE_ARGS,
    canonicalize=_canon_pad_image,
    infer=lambda args, ins, n: [_pad_image_sizes("PadImageGradient", args, ins[0], -1)],
    gradient_op=True,
    differentiable=False,
)


@gradient("PadImage")
def _pad_image_grad(g: GradientContext) -> GradientOps:
    return g.single("PadImageGradient", [g.GO(0)], [g.GI(0)], **g.forward_args())
