"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops.

Every kernel computes in float32 and rounds once on store (wgsl/activation.wgsl)."""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.elementwise import prelu_layout, same_shape, softmax_rows
from kaffa_metal.kernels.common import FLOATS, WG, empty, kernel
from kaffa_metal.kernels.elementwise import SumTo, grad_map, unary_map

table = KernelTable("metal")

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
    return unary_map(ctx, "activation", "leaky_relu", float(ctx.args["alpha"]))


@table.kernel("LeakyReluGradient", dtypes=FLOATS)
def leaky_relu_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "activation", "leaky_relu_gradient", float(ctx.args["alpha"]))


@table.kernel("Elu", "Selu", dtypes=FLOATS)
def elu(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "activation", "elu", float(ctx.args["alpha"]), float(ctx.args.get("scale", 1.0)))


@table.kernel("EluGradient", "SeluGradient", dtypes=FLOATS)
def elu_gradient(ctx: KernelContext) -> RunFn:
    alpha, scale = float(ctx.args["alpha"]), float(ctx.args.get("scale", 1.0))
    return grad_map(ctx, "activation", "elu_gradient", alpha, scale)


@table.kernel("Softmax", dtypes=FLOATS)
def softmax(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "softmax")
    axis = ctx.args["axis"]

    def run(x):
        rows, n = softmax_rows("Softmax", x.shape, axis)
        y = empty(k.dev, x.shape, x.dtype)
        k(rows * WG, x, y, params=[rows, n])  # a workgroup per row
        return (y,)

    return run


@table.kernel("SoftmaxGradient", dtypes=FLOATS)
def softmax_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "softmax_gradient")
    axis = ctx.args["axis"]

    def run(y, dy):
        same_shape("SoftmaxGradient", y, dy)
        rows, n = softmax_rows("SoftmaxGradient", y.shape, axis)
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(rows * WG, y, dy, dx, params=[rows, n])
        return (dx,)

    return run


@table.kernel("PRelu", dtypes=FLOATS)
def prelu(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "prelu")
    order = ctx.args["order"]

    def run(x, slope):
        _, c, inner, _ = prelu_layout("PRelu", x.shape, slope.shape, order)
        inner = inner if c > 1 else 1  # a shared slope: any inner reads slope[0]
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, slope, y, params=[x.size, inner, c])
        return (y,)

    return run


@table.kernel("PReluGradient", dtypes=FLOATS)
def prelu_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "prelu_gradient")
    sum_to = SumTo(ctx)
    order = ctx.args["order"]

    def run(y, dy, x, slope):
        same_shape("PReluGradient", x, dy, "X")
        _, c, inner, padded = prelu_layout("PReluGradient", x.shape, slope.shape, order)
        inner = inner if c > 1 else 1
        dx = empty(k.dev, dy.shape, dy.dtype)
        contrib = empty(k.dev, dy.shape, np.float32)
        k(dy.size, x, dy, slope, dx, contrib, params=[dy.size, inner, c])
        return dx, sum_to(contrib, padded, slope.shape)

    return run
