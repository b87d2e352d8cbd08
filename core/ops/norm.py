"""Normalization and regularization: SpatialBN, LRN, LayerNorm, Dropout (schemas, shape inference,
gradient makers).

SpatialBN in training (is_test=0) updates the running statistics in place (inputs 3/4 are outputs
1/2) with ``running = momentum * running + (1 - momentum) * batch``; the running variance takes the
*unbiased* batch variance (M / (M - 1) times the biased one, M = N * spatial size), as Caffe2's
unified CPU/CUDA kernels and cuDNN do, while the normalization itself and ``saved_inv_var`` use the
biased one. Only output 0 of SpatialBN, LRN and LayerNorm carries a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa.errors import SchemaError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import (
    REQUIRED,
    Arg,
    ArgType,
    Shape,
    TensorInfo,
    check,
    define,
    norm_axis,
    prod,
    same_dtype,
)

BOOL = np.dtype(np.bool_)
ORDERS = ("NCHW", "NHWC")
_ORDER = Arg("order", ArgType.STRING, "NCHW", "NCHW: channels on axis 1; NHWC: on the last axis")


def _s(info: TensorInfo) -> str:
    return (
        "[?]"
        if info.shape is None
        else "[" + ",".join("?" if d is None else str(d) for d in info.shape) + "]"
    )


def _same_shape(a: Shape | None, b: Shape | None) -> bool:
    """True unless both shapes are known enough to differ."""
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(p is None or q is None or p == q for p, q in zip(a, b))


def _merge(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(p if p is not None else q for p, q in zip(a, b))


def channel_axis(op: str, x: Shape, order: str) -> int:
    """The channel axis of X for ``order`` (X needs N and C: rank >= 2)."""
    check(order in ORDERS, f"{op}: order must be NCHW or NHWC, got {order!r}")
    check(len(x) >= 2, f"{op}: X {list(x)} needs at least 2 dims (N, C, ...)")
    return 1 if order == "NCHW" else len(x) - 1


# -- SpatialBN -------------------------------------------------------------------------------------


def _bn_channels(
    op: str, args: Mapping[str, Any], x: TensorInfo, named: list[tuple[str, TensorInfo]]
) -> int | None:
    """C from X, checked against the per-channel inputs ([C] each)."""
    check(args["order"] in ORDERS, f"{op}: order must be NCHW or NHWC, got {args['order']!r}")
    c = None
    if x.shape is not None:
        c = x.shape[channel_axis(op, x.shape, args["order"])]
    for name, info in named:
        if info.shape is None:
            continue
        ok = len(info.shape) == 1 and (c is None or info.shape[0] is None or info.shape[0] == c)
        check(
            ok,
            f"{op}: {name} {_s(info)} must be [C] = [{'?' if c is None else c}] for X {_s(x)} "
            f"(order {args['order']})",
        )
        c = c if c is not None else info.shape[0]
    return c


def _infer_spatial_bn(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SpatialBN"
    dtype = same_dtype(op, ins)
    x = ins[0]
    want = 1 if args["is_test"] else 5
    check(n == want, f"{op}: is_test={int(args['is_test'])} takes {want} output(s), got {n}")
    check(args["epsilon"] > 0, f"{op}: epsilon must be > 0, got {args['epsilon']}")
    c = _bn_channels(op, args, x, list(zip(("scale", "bias", "mean", "var"), ins[1:])))
    if not args["is_test"] and x.shape is not None:
        total = prod(x.shape)
        m = None if total is None or not c else total // c
        check(
            m is None or m > 1,
            f"{op}: training needs more than one value per channel to estimate a variance, X {_s(x)} "
            f"has {m} (order {args['order']})",
        )
    y = TensorInfo(x.shape, dtype)
    stat = TensorInfo((c,), dtype)
    return [y] if args["is_test"] else [y, stat, stat, stat, stat]


_BN_ARGS = [
    Arg("is_test", ArgType.BOOL, False, "1: normalize with the running mean/var inputs; 0: batch statistics"),
    Arg("epsilon", ArgType.FLOAT, 1e-5, "added to the variance"),
    Arg("momentum", ArgType.FLOAT, 0.9, "running = momentum * running + (1 - momentum) * batch"),
    _ORDER,
]

define(
    "SpatialBN",
    family="norm",
    doc="Batch normalization per channel over N and the spatial dims: Y = (X - mu) / sqrt(var + "
    "epsilon) * scale + bias. is_test=1 uses the mean/var inputs (one output). is_test=0 uses the "
    "batch mean and biased variance, updates running_mean/running_var in place (momentum; the running "
    "variance takes the unbiased batch variance) and saves the batch mean and 1/sqrt(var + epsilon) "
    "for the gradient.",
    inputs=5,
    outputs=(1, 5),
    input_docs=[
        ("X", "input, [N, C, ...] (NCHW) or [N, ..., C] (NHWC)"),
        ("scale", "[C]"),
        ("bias", "[C]"),
        ("mean", "[C] running mean (is_test=0: updated in place as output 1)"),
        ("var", "[C] running variance (is_test=0: updated in place as output 2)"),
    ],
    output_docs=[
        ("Y", "X's shape"),
        ("running_mean", "[C], in place over input 3 (training only)"),
        ("running_var", "[C], in place over input 4 (training only)"),
        ("saved_mean", "[C] batch mean (training only)"),
        ("saved_inv_var", "[C] 1 / sqrt(batch variance + epsilon) (training only)"),
    ],
    args=_BN_ARGS,
    inplace={(0, 0)},
    enforce_inplace=frozenset({(3, 1), (4, 2)}),
    infer=_infer_spatial_bn,
    grad_outputs=(0,),
)


def _infer_spatial_bn_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SpatialBNGradient"
    dtype = same_dtype(op, ins)
    x, scale, dy, m, s = ins
    check(_same_shape(x.shape, dy.shape), f"{op}: X {_s(x)} and dY {_s(dy)} must have one shape")
    stats = ("mean", "var") if args["is_test"] else ("saved_mean", "saved_inv_var")
    c = _bn_channels(
        op, args, TensorInfo(_merge(x.shape, dy.shape)), [("scale", scale), (stats[0], m), (stats[1], s)]
    )
    stat = TensorInfo((c,), dtype)
    return [TensorInfo(_merge(x.shape, dy.shape), dtype), stat, stat]


define(
    "SpatialBNGradient",
    family="norm",
    doc="Gradient of SpatialBN. Training (is_test=0): with xhat = (X - saved_mean) * saved_inv_var "
    "and M values per channel, dbias = sum(dY), dscale = sum(dY * xhat), dX = scale * saved_inv_var "
    "/ M * (M * dY - dbias - xhat * dscale). is_test=1: inputs 3/4 are the running mean and variance "
    "(constants), dX = dY * scale / sqrt(var + epsilon).",
    inputs=5,
    outputs=3,
    input_docs=[
        ("X", "forward input"),
        ("scale", "[C]"),
        ("dY", "gradient of Y"),
        ("saved_mean", "[C] (is_test=1: the running mean)"),
        ("saved_inv_var", "[C] (is_test=1: the running variance)"),
    ],
    output_docs=[("dX", "X's shape"), ("dscale", "[C]"), ("dbias", "[C]")],
    args=_BN_ARGS,  # momentum is accepted (Caffe2 copies the forward arguments) and unused
    infer=_infer_spatial_bn_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("SpatialBN")
def _spatial_bn_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:  # only Y carries a gradient; the running statistics never do
        return GradientOps([], [None] * g.num_inputs)
    stats = [g.I(3), g.I(4)] if g.args["is_test"] else [g.O(3), g.O(4)]
    return g.single(
        "SpatialBNGradient",
        [g.I(0), g.I(1), g.GO(0), *stats],
        [g.GI(0), g.GI(1), g.GI(2)],
        **g.forward_args(),
    )


# -- LRN -------------------------------------------------------------------------------------------


def _check_lrn_args(op: str, args: Mapping[str, Any], x: TensorInfo) -> None:
    size = args["size"]
    check(size > 0 and size % 2 == 1, f"{op}: size must be a positive odd number, got {size}")
    check(args["order"] in ORDERS, f"{op}: order must be NCHW or NHWC, got {args['order']!r}")
    if x.shape is not None:
        channel_axis(op, x.shape, args["order"])


def _infer_lrn(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _check_lrn_args("LRN", args, ins[0])
    return [ins[0]] * n


_LRN_ARGS = [
    Arg("size", ArgType.INT, REQUIRED, "window length across channels (odd)"),
    Arg("alpha", ArgType.FLOAT, 0.0, "scale of the window's sum of squares"),
    Arg("beta", ArgType.FLOAT, 0.0, "exponent"),
    Arg("bias", ArgType.FLOAT, 1.0, "added to the scaled sum"),
    _ORDER,
]

define(
    "LRN",
    family="norm",
    doc="Local response normalization across channels: scale = bias + alpha / size * sum of X^2 over "
    "the channels c - (size-1)/2 .. c + (size-1)/2 (clipped at the edges), Y = X * scale^-beta.",
    inputs=1,
    outputs=(1, 2),
    input_docs=[("X", "input, [N, C, ...] (NCHW) or [N, ..., C] (NHWC)")],
    output_docs=[("Y", "X's shape"), ("scale", "X's shape (optional)")],
    args=_LRN_ARGS,
    infer=_infer_lrn,
    grad_outputs=(0,),
)


def _infer_lrn_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LRNGradient"
    dtype = same_dtype(op, ins)
    names = ("X", "Y", "dY", "scale")
    shape = ins[0].shape
    for name, info in zip(names[1:], ins[1:]):
        check(
            _same_shape(ins[0].shape, info.shape),
            f"{op}: X {_s(ins[0])} and {name} {_s(info)} must have one shape",
        )
        shape = _merge(shape, info.shape)
    _check_lrn_args(op, args, TensorInfo(shape))
    return [TensorInfo(shape, dtype)]


define(
    "LRNGradient",
    family="norm",
    doc="Gradient of LRN: dX = dY * scale^-beta - 2 * alpha * beta / size * X * (window sum of "
    "dY * Y / scale). scale is recomputed from X unless given as input 3.",
    inputs=(3, 4),
    input_docs=[
        ("X", "forward input"),
        ("Y", "forward output"),
        ("dY", "gradient of Y"),
        ("scale", "optional"),
    ],
    output_docs=[("dX", "X's shape")],
    args=_LRN_ARGS,
    infer=_infer_lrn_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("LRN")
def _lrn_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None])
    scale = [g.O(1)] if g.num_outputs > 1 else []
    return g.single("LRNGradient", [g.I(0), g.O(0), g.GO(0), *scale], [g.GI(0)], **g.forward_args())


# -- LayerNorm -------------------------------------------------------------------------------------


def _check_affine(
    op: str, args: Mapping[str, Any], x: TensorInfo, named: list[tuple[str, TensorInfo]]
) -> int | None:
    """The normalized block's size D, checked against gamma/beta (D elements each)."""
    check(args["epsilon"] >= 0, f"{op}: epsilon must be >= 0, got {args['epsilon']}")
    d = None
    if x.shape is not None:
        check(len(x.shape) >= 1, f"{op}: X must have at least one dim, got a scalar")
        axis = norm_axis(args["axis"], len(x.shape), op)
        d = prod(x.shape[axis:])
    for name, info in named:
        if info.shape is None:
            continue
        k = prod(info.shape)
        check(
            d is None or k is None or k == d,
            f"{op}: {name} {_s(info)} must have {d} elements (X {_s(x)} from axis {args['axis']})",
        )
    return d


def _stat_shape(args: Mapping[str, Any], x: TensorInfo) -> Shape | None:
    if x.shape is None:
        return None
    axis = norm_axis(args["axis"], len(x.shape), "LayerNorm")
    return (*x.shape[:axis], 1)


def _infer_layer_norm(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LayerNorm"
    affine = bool(args["elementwise_affine"])
    want = 3 if affine else 1
    check(
        len(ins) == want,
        f"{op}: elementwise_affine={int(affine)} takes {want} input(s) "
        f"({'X, gamma, beta' if affine else 'X'}), got {len(ins)}",
    )
    dtype = same_dtype(op, ins)
    _check_affine(op, args, ins[0], list(zip(("gamma", "beta"), ins[1:])))
    stat = TensorInfo(_stat_shape(args, ins[0]), dtype)
    return [TensorInfo(ins[0].shape, dtype), stat, stat]


_LN_ARGS = [
    Arg("axis", ArgType.INT, 1, "normalize over dims[axis:] (one row per index of dims[:axis])"),
    Arg("epsilon", ArgType.FLOAT, 1e-5, "added to the variance"),
    Arg("elementwise_affine", ArgType.BOOL, False, "inputs gamma and beta scale and shift the result"),
]

define(
    "LayerNorm",
    family="norm",
    doc="Layer normalization: X viewed as [prod(dims[:axis]), D = prod(dims[axis:])], each row "
    "normalized: Y = (X - mean) / std with std = sqrt(biased var + epsilon); with "
    "elementwise_affine=1, Y = Y * gamma + beta (D elements each). mean and std have shape "
    "dims[:axis] + [1].",
    inputs=(1, 3),
    outputs=3,
    input_docs=[("X", "input"), ("gamma", "D scales (elementwise_affine=1)"), ("beta", "D shifts")],
    output_docs=[("Y", "X's shape"), ("mean", "dims[:axis] + [1]"), ("std", "dims[:axis] + [1]")],
    args=_LN_ARGS,
    infer=_infer_layer_norm,
    grad_outputs=(0,),
)


def _infer_layer_norm_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "LayerNormGradient"
    affine = bool(args["elementwise_affine"])
    arity = "6 inputs and 3 outputs" if affine else "5 inputs and 1 output"
    check(
        len(ins) == (6 if affine else 5) and n == (3 if affine else 1),
        f"{op}: elementwise_affine={int(affine)} takes {arity}, got {len(ins)} and {n}",
    )
    dtype = same_dtype(op, ins)
    dy, y, mean, std, x = ins[:5]
    for name, info in (("dY", dy), ("Y", y)):
        check(_same_shape(x.shape, info.shape), f"{op}: X {_s(x)} and {name} {_s(info)} must have one shape")
    shape = _merge(_merge(x.shape, dy.shape), y.shape)
    full = TensorInfo(shape, dtype)
    _check_affine(op, args, full, list(zip(("gamma",), ins[5:])))
    want = _stat_shape(args, full)
    for name, info in (("mean", mean), ("std", std)):
        check(
            _same_shape(want, info.shape),
            f"{op}: {name} {_s(info)} must be {list(want or [])} for X {_s(full)}",
        )
    out = [full]
    if affine:
        out += [ins[5].with_dtype(dtype)] * 2
    return out


define(
    "LayerNormGradient",
    family="norm",
    doc="Gradient of LayerNorm. Per row, with xhat = (X - mean) / std and g = dY (* gamma): dX = "
    "(g - mean(g) - xhat * mean(g * xhat)) / std; dgamma = sum over rows of dY * xhat, dbeta = sum "
    "over rows of dY.",
    inputs=(5, 6),
    outputs=(1, 3),
    input_docs=[
        ("dY", "gradient of Y"),
        ("Y", "forward output (unused; Caffe2's signature)"),
        ("mean", "forward output"),
        ("std", "forward output"),
        ("X", "forward input"),
        ("gamma", "(elementwise_affine=1)"),
    ],
    output_docs=[("dX", "X's shape"), ("dgamma", "gamma's shape"), ("dbeta", "beta's shape")],
    args=_LN_ARGS,
    infer=_infer_layer_norm_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("LayerNorm")
def _layer_norm_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:  # Caffe2 ignores the gradients of mean and std
        return GradientOps([], [None] * g.num_inputs)
    ins = [g.GO(0), g.O(0), g.O(1), g.O(2), g.I(0)]
    outs = [g.GI(0)]
    if g.args["elementwise_affine"]:
        ins.append(g.I(1))
        outs += [g.GI(1), g.GI(2)]
    return g.single("LayerNormGradient", ins, outs, **g.forward_args())


# -- Dropout ---------------------------------------------------------------------------------------


def _check_ratio(op: str, args: Mapping[str, Any]) -> None:
    check(0.0 <= args["ratio"] < 1.0, f"{op}: ratio must be in [0, 1), got {args['ratio']}")


def _infer_dropout(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _check_ratio("Dropout", args)
    x = ins[0]
    return [x, TensorInfo(x.shape, BOOL)][:n]


_DROPOUT_ARGS = [
    Arg("ratio", ArgType.FLOAT, 0.5, "probability of dropping an element, in [0, 1)"),
    Arg("is_test", ArgType.BOOL, False, "1: the identity (inference)"),
]

define(
    "Dropout",
    family="norm",
    doc="Training (is_test=0): each element is kept with probability 1 - ratio, Y = X * mask / "
    "(1 - ratio); the bool mask is output 1 (needed for the gradient). The draws come from the op's "
    "seed (DeviceOption.random_seed), so a seeded net is reproducible. is_test=1: Y = X (a mask "
    "output is all true).",
    inputs=1,
    outputs=(1, 2),
    input_docs=[("X", "input")],
    output_docs=[("Y", "X's shape"), ("mask", "bool, X's shape (optional)")],
    args=_DROPOUT_ARGS,
    inplace={(0, 0)},
    infer=_infer_dropout,
    grad_outputs=(0,),
    stochastic=True,
)


def _infer_dropout_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "DropoutGrad"
    _check_ratio(op, args)
    dy = ins[0]
    check(
        args["is_test"] or len(ins) == 2,
        f"{op}: is_test=0 needs the mask as input 1 (Dropout's output 1)",
    )
    shape = dy.shape
    if len(ins) == 2:
        mask = ins[1]
        check(mask.dtype is None or mask.dtype == BOOL, f"{op}: mask must be bool, got {mask}")
        check(_same_shape(dy.shape, mask.shape), f"{op}: dY {_s(dy)} and mask {_s(mask)} must have one shape")
        shape = _merge(dy.shape, mask.shape)
    return [TensorInfo(shape, dy.dtype)]


define(
    "DropoutGrad",
    family="norm",
    doc="Gradient of Dropout: dX = dY * mask / (1 - ratio) in training, dX = dY with is_test=1.",
    inputs=(1, 2),
    input_docs=[("dY", "gradient of Y"), ("mask", "bool, Dropout's output 1 (is_test=0)")],
    output_docs=[("dX", "dY's shape")],
    args=_DROPOUT_ARGS,
    inplace={(0, 0)},
    infer=_infer_dropout_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("Dropout")
def _dropout_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None])
    if g.args["is_test"]:
        return g.single("DropoutGrad", [g.GO(0)], [g.GI(0)], **g.forward_args())
    if g.num_outputs < 2:
        raise SchemaError("Dropout with is_test=0 needs its mask output (output 1) for a gradient")
    return g.single("DropoutGrad", [g.GO(0), g.O(1)], [g.GI(0)], **g.forward_args())
