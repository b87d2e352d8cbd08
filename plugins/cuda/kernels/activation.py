"""Relu, Sigmoid, Tanh, Elu, Selu, LeakyRelu, Softplus (raw CUDA C in cu/activation.cu), Softmax
(one block per row, cu/softmax.cu), PRelu (CuPy array code) and their gradient ops."""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.elementwise import prelu_layout, same_shape, softmax_rows
from kaffa_cuda.kernels.common import FLOATS, Launcher, Table, scalar, wide, xp

table = Table()

_MAPS = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh_",
    "Softplus": "softplus",
    "Elu": "elu",
    "Selu": "elu",
    "LeakyRelu": "leaky_relu",
}


def _params(ctx: KernelContext) -> tuple:
    op, a = ctx.op_type.removesuffix("Gradient"), ctx.args
    if op in ("Elu", "Selu"):
        return scalar(ctx.dtype, a["alpha"]), scalar(ctx.dtype, a.get("scale", 1.0) if op == "Selu" else 1.0)
    if op == "LeakyRelu":
        return (scalar(ctx.dtype, a["alpha"]),)
    return ()


@table.kernel(*_MAPS, dtypes=FLOATS, raw=True)
def pointwise(ctx: KernelContext) -> RunFn:
    k = Launcher(ctx, "activation", _MAPS[ctx.op_type])
    params = _params(ctx)
    cp = xp(ctx)

    def run(x):
        x = cp.ascontiguousarray(x)
        y = cp.empty_like(x)
        k(x.size, x, y, np.int64(x.size), *params)
        return (y,)

    return run


@table.kernel(*(f"{op}Gradient" for op in _MAPS), dtypes=FLOATS, raw=True)
def pointwise_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = Launcher(ctx, "activation", _MAPS[op.removesuffix("Gradient")].rstrip("_") + "_gradient")
    params = _params(ctx)
    cp = xp(ctx)

    def run(y, dy):
        same_shape(op, y, dy)
        y, dy = cp.ascontiguousarray(y), cp.ascontiguousarray(dy)
        dx = cp.empty_like(dy)
        k(dy.size, y, dy, dx, np.int64(dy.size), *params)
        return (dx,)

    return run


def _row_threads(d: int) -> int:
    """A power of two, 32..1024, near the row length (the block reduction needs a power of two)."""
    t = 32
    while t < min(d, 1024):
        t *= 2
    return t


@table.kernel("Softmax", dtypes=FLOATS, raw=True)
def softmax(ctx: KernelContext) -> RunFn:
    k = Launcher(ctx, "softmax", "softmax_rows")
    axis, cp = ctx.args["axis"], xp(ctx)
    acc = 8 if ctx.dtype == FLOATS[2] else 4

    def run(x):
        rows, d = softmax_rows("Softmax", tuple(x.shape), axis)
        x = cp.ascontiguousarray(x)
        y = cp.empty_like(x)
        t = _row_threads(d)
        if rows and d:
            k(rows * t, x, y, np.int64(rows), np.int64(d), threads=t, blocks=min(rows, 65535), shared=t * acc)
        return (y,)

    return run


@table.kernel("SoftmaxGradient", dtypes=FLOATS, raw=True)
def softmax_gradient(ctx: KernelContext) -> RunFn:
    k = Launcher(ctx, "softmax", "softmax_gradient_rows")
    axis, cp = ctx.args["axis"], xp(ctx)
    acc = 8 if ctx.dtype == FLOATS[2] else 4

    def run(y, dy):
        same_shape("SoftmaxGradient", y, dy)
        rows, d = softmax_rows("SoftmaxGradient", tuple(y.shape), axis)
        y, dy = cp.ascontiguousarray(y), cp.ascontiguousarray(dy)
        dx = cp.empty_like(dy)
        t = _row_threads(d)
        if rows and d:
            k(
                rows * t,
                y,
                dy,
                dx,
                np.int64(rows),
                np.int64(d),
                threads=t,
                blocks=min(rows, 65535),
                shared=t * acc,
            )
        return (dx,)

    return run


@table.kernel("PRelu", dtypes=FLOATS)
def prelu(ctx: KernelContext) -> RunFn:
    order, cp = ctx.args["order"], xp(ctx)

    def run(x, slope):
        _, _, _, padded = prelu_layout("PRelu", tuple(x.shape), tuple(slope.shape), order)
        s = wide(cp, slope).reshape(padded)
        w = wide(cp, x)
        return (cp.where(w > 0, w, w * s).astype(x.dtype),)

    return run


@table.kernel("PReluGradient", dtypes=FLOATS)
def prelu_gradient(ctx: KernelContext) -> RunFn:
    order, cp = ctx.args["order"], xp(ctx)

    def run(y, dy, x, slope):
        same_shape("PReluGradient", x, dy, "X")
        _, _, _, padded = prelu_layout("PReluGradient", tuple(x.shape), tuple(slope.shape), order)
        s = wide(cp, slope).reshape(padded)
        xw, dw = wide(cp, x), wide(cp, dy)
        neg = xw <= 0
        dx = cp.where(neg, dw * s, dw)
        contrib = cp.where(neg, xw * dw, 0)
        axes = tuple(k for k, p in enumerate(padded) if p == 1)
        dslope = contrib.sum(axis=axes) if axes else contrib
        return dx.astype(dy.dtype), dslope.reshape(slope.shape).astype(dy.dtype)

    return run
