"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops.

Every kernel computes in A (float for float16) and rounds once on store.
"""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.elementwise import prelu_layout, same_shape, softmax_rows
from kaffa_opencl.kernels.common import FLOATS, empty, kernel
from kaffa_opencl.kernels.elementwise import grad_map, unary_map

table = KernelTable("opencl")

_MAPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh_", "Softplus": "softplus"}
_GRADS = {
    "ReluGradient": "relu_gradient",
    "SigmoidGradient": "sigmoid_gradient",
    "TanhGradient": "tanh_gradient",
    "SoftplusGradient": "softplus_gradient",
}


@table.kernel(*_MAPS, dtypes=FLOATS)
def elementwise(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "activation", _MAPS[ctx.op_type])


@table.kernel(*_GRADS, dtypes=FLOATS)
def elementwise_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "activation", _GRADS[ctx.op_type])


@table.kernel("LeakyRelu", dtypes=FLOATS)
def leaky_relu(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "activation", "leaky_relu", ctx.args["alpha"])


@table.kernel("LeakyReluGradient", dtypes=FLOATS)
def leaky_relu_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "activation", "leaky_relu_gradient", ctx.args["alpha"])


@table.kernel("Elu", "Selu", dtypes=FLOATS)
def elu(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "activation", "elu", ctx.args["alpha"], ctx.args.get("scale", 1.0))


@table.kernel("EluGradient", "SeluGradient", dtypes=FLOATS)
def elu_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "activation", "elu_gradient", ctx.args["alpha"], ctx.args.get("scale", 1.0))


@table.kernel("Softmax", dtypes=FLOATS)
def softmax(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "softmax")
    axis = ctx.args["axis"]

    def run(x):
        rows, cols = softmax_rows("Softmax", x.shape, axis)
        y = empty(k.dev, x.shape, x.dtype)
        k(rows, x, y, np.int64(rows), np.int64(cols))
        return (y,)

    return run


@table.kernel("SoftmaxGradient", dtypes=FLOATS)
def softmax_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "softmax_gradient")
    axis = ctx.args["axis"]

    def run(y, dy):
        same_shape("SoftmaxGradient", y, dy)
        rows, cols = softmax_rows("SoftmaxGradient", y.shape, axis)
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(rows, y, dy, dx, np.int64(rows), np.int64(cols))
        return (dx,)

    return run


@table.kernel("PRelu", dtypes=FLOATS)
def prelu(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "prelu")
    order = ctx.args["order"]

    def run(x, slope):
        _, c, inner, _ = prelu_layout("PRelu", x.shape, slope.shape, order)
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, slope, y, np.int64(x.size), np.int64(c), np.int64(inner))
        return (y,)

    return run


@table.kernel("PReluGradient", dtypes=FLOATS)
def prelu_gradient(ctx: KernelContext) -> RunFn:
    kx = kernel(ctx, "activation", "prelu_gradient")
    ks = kernel(ctx, "activation", "prelu_slope_gradient")
    order = ctx.args["order"]

    def run(y, dy, x, slope):
        same_shape("PReluGradient", x, dy, "X")
        outer, c, inner, _ = prelu_layout("PReluGradient", x.shape, slope.shape, order)
        dx = empty(kx.dev, dy.shape, dy.dtype)
        kx(dx.size, x, dy, slope, dx, np.int64(dx.size), np.int64(c), np.int64(inner))
        ds = empty(ks.dev, slope.shape, dy.dtype)
        ks(c, x, dy, ds, np.int64(outer), np.int64(c), np.int64(inner))
        return dx, ds

    return run
