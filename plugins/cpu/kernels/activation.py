"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops.

float16 is computed in float32 and rounded once (numpy would round after every step).
"""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.activation import prelu_channels
from kaffa.schema import check, norm_axis
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


def _same_shape(op: str, y: np.ndarray, dy: np.ndarray, what: str = "Y") -> None:
    check(y.shape == dy.shape, f"{op}: {what} {list(y.shape)} and dY {list(dy.shape)} must have one shape")


@table.kernel("Relu", dtypes=FLOAT_TYPES)
def relu(ctx: KernelContext) -> RunFn:
    def run(x):
        return (np.asarray(np.maximum(x, x.dtype.type(0))),)

    return run


@table.kernel("Sigmoid", dtypes=FLOAT_TYPES)
def sigmoid(ctx: KernelContext) -> RunFn:
    def run(x):
        # Two branches so exp never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below.
        e = np.exp(-np.abs(x))
        return (np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False),)

    return run


@table.kernel("Tanh", dtypes=FLOAT_TYPES)
def tanh(ctx: KernelContext) -> RunFn:
    def run(x):
        return (np.asarray(np.tanh(x)),)

    return run


def _rows(x: np.ndarray, axis: int, op: str) -> np.ndarray:
    ax = norm_axis(axis, x.ndim, op)
    return x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)


@table.kernel("Softmax", dtypes=FLOAT_TYPES)
def softmax(ctx: KernelContext) -> RunFn:
    axis = ctx.args["axis"]

    def run(x):
        x2 = _rows(x, axis, "Softmax")
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        return ((e / e.sum(axis=1, keepdims=True)).reshape(x.shape),)

    return run


@table.kernel("LeakyRelu", dtypes=FLOAT_TYPES)
def leaky_relu(ctx: KernelContext) -> RunFn:
    alpha = ctx.args["alpha"]

    def run(x):
        return (np.where(x > 0, x, x * x.dtype.type(alpha)),)

    return run


@table.kernel("Elu", "Selu", dtypes=FLOAT_TYPES)
def elu(ctx: KernelContext) -> RunFn:
    alpha = ctx.args["alpha"]
    scale = ctx.args.get("scale", 1.0)

    def run(x):
        w = _wide(x)
        y = np.where(w > 0, w, alpha * np.expm1(np.minimum(w, 0))) * scale
        return (np.asarray(y).astype(x.dtype, copy=False),)

    return run


@table.kernel("Softplus", dtypes=FLOAT_TYPES)
def softplus(ctx: KernelContext) -> RunFn:
    def run(x):
        return (np.asarray(np.logaddexp(_wide(x), 0)).astype(x.dtype, copy=False),)

    return run


def _slope_view(op: str, x: np.ndarray, slope: np.ndarray, order: str) -> np.ndarray:
    """The slope shaped to broadcast against X along its channel axis."""
    if slope.size == 1:
        return slope.reshape(())
    c = prelu_channels(op, x.shape, order)
    check(
        slope.size == c,
        f"{op}: slope {list(slope.shape)} must have 1 or C={c} elements for X {list(x.shape)} "
        f"(order {order})",
    )
    if order == "NCHW":
        return slope.reshape((1, c) + (1,) * (x.ndim - 2))
    return slope.reshape(c)


@table.kernel("PRelu", dtypes=FLOAT_TYPES)
def prelu(ctx: KernelContext) -> RunFn:
    order = ctx.args["order"]

    def run(x, slope):
        s = _slope_view("PRelu", x, slope, order)
        return (np.where(x > 0, x, x * s).astype(x.dtype, copy=False),)

    return run


# -- gradient ops ----------------------------------------------------------------------------------
@table.kernel("ReluGradient", dtypes=FLOAT_TYPES)
def relu_gradient(ctx: KernelContext) -> RunFn:
    def run(y, dy):
        return (np.where(y > 0, dy, dy.dtype.type(0)),)

    return run


@table.kernel("SigmoidGradient", dtypes=FLOAT_TYPES)
def sigmoid_gradient(ctx: KernelContext) -> RunFn:
    def run(y, dy):
        _same_shape("SigmoidGradient", y, dy)
        w = _wide(y)
        return (np.asarray(_wide(dy) * w * (1 - w)).astype(dy.dtype, copy=False),)

    return run


@table.kernel("TanhGradient", dtypes=FLOAT_TYPES)
def tanh_gradient(ctx: KernelContext) -> RunFn:
    def run(y, dy):
        _same_shape("TanhGradient", y, dy)
        w = _wide(y)
        return (np.asarray(_wide(dy) * (1 - w * w)).astype(dy.dtype, copy=False),)

    return run


@table.kernel("SoftmaxGradient", dtypes=FLOAT_TYPES)
def softmax_gradient(ctx: KernelContext) -> RunFn:
    axis = ctx.args["axis"]

    def run(y, dy):
        _same_shape("SoftmaxGradient", y, dy)
        y2, dy2 = _rows(_wide(y), axis, "SoftmaxGradient"), _rows(_wide(dy), axis, "SoftmaxGradient")
        dx = y2 * (dy2 - np.sum(y2 * dy2, axis=1, keepdims=True))
        return (dx.reshape(y.shape).astype(dy.dtype, copy=False),)

    return run


@table.kernel("LeakyReluGradient", dtypes=FLOAT_TYPES)
def leaky_relu_gradient(ctx: KernelContext) -> RunFn:
    alpha = ctx.args["alpha"]

    def run(y, dy):
        _same_shape("LeakyReluGradient", y, dy)
        return (np.where(y > 0, dy, dy * dy.dtype.type(alpha)),)

    return run


@table.kernel("EluGradient", "SeluGradient", dtypes=FLOAT_TYPES)
def elu_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    alpha = ctx.args["alpha"]
    scale = ctx.args.get("scale", 1.0)

    def run(y, dy):
        _same_shape(op, y, dy)
        w, d = _wide(y), _wide(dy)
        # For x <= 0, y = scale * alpha * (e^x - 1), so dy/dx = scale * alpha * e^x = y + scale * alpha.
        dx = np.where(w > 0, d * scale, d * (w + alpha * scale))
        return (np.asarray(dx).astype(dy.dtype, copy=False),)

    return run


@table.kernel("SoftplusGradient", dtypes=FLOAT_TYPES)
def softplus_gradient(ctx: KernelContext) -> RunFn:
    def run(y, dy):
        _same_shape("SoftplusGradient", y, dy)
        # 1 - exp(-y) cancels for small y (very negative x); -expm1(-y) does not.
        return (np.asarray(_wide(dy) * -np.expm1(-_wide(y))).astype(dy.dtype, copy=False),)

    return run


@table.kernel("PReluGradient", dtypes=FLOAT_TYPES)
def prelu_gradient(ctx: KernelContext) -> RunFn:
    order = ctx.args["order"]

    def run(y, dy, x, slope):
        _same_shape("PReluGradient", x, dy, "X")
        s = _slope_view("PReluGradient", x, slope, order)
        xw, dw = _wide(x), _wide(dy)
        neg = xw <= 0
        dx = np.where(neg, dw * s, dw)
        contrib = np.where(neg, xw * dw, 0)
        if slope.size == 1:
            dslope = np.sum(contrib)
        else:
            channel = 1 if order == "NCHW" else x.ndim - 1
            dslope = np.sum(contrib, axis=tuple(k for k in range(x.ndim) if k != channel))
        return (
            np.asarray(dx).astype(dy.dtype, copy=False),
            np.asarray(dslope).reshape(slope.shape).astype(dy.dtype, copy=False),
        )

    return run
