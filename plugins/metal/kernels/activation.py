"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops.

Every kernel computes in float32 and rounds once on store (wgsl/activation.wgsl)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import split_at
from kaffa.ops.activation import prelu_channels
from kaffa.schema import check, norm_axis
from kaffa_metal.kernels.common import FLOATS, WG, empty, kernel
from kaffa_metal.kernels.elementwise import SumTo, grad_map, same_shape, unary_map

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
        rows, n = split_at(x.shape, norm_axis(axis, x.ndim, "Softmax"))
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
        rows, n = split_at(y.shape, norm_axis(axis, y.ndim, "SoftmaxGradient"))
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(rows * WG, y, dy, dx, params=[rows, n])
        return (dx,)

    return run


def _slope_layout(op: str, x: Any, slope: Any, order: str) -> tuple[int, int, tuple[int, ...]]:
    """(inner, c, padded): X's element i uses slope[(i // inner) % c]; ``padded`` is the slope's
    shape lined up with X's dims (1s elsewhere), for summing the slope gradient."""
    if slope.size == 1:
        return 1, 1, (1,) * x.ndim
    c = prelu_channels(op, x.shape, order)
    check(
        slope.size == c,
        f"{op}: slope {list(slope.shape)} must have 1 or C={c} elements for X {list(x.shape)} "
        f"(order {order})",
    )
    if order == "NCHW":
        return int(np.prod(x.shape[2:], dtype=np.int64)), c, (1, c) + (1,) * (x.ndim - 2)
    return 1, c, (1,) * (x.ndim - 1) + (c,)


@table.kernel("PRelu", dtypes=FLOATS)
def prelu(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "prelu")
    order = ctx.args["order"]

    def run(x, slope):
        inner, c, _ = _slope_layout("PRelu", x, slope, order)
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
        inner, c, padded = _slope_layout("PReluGradient", x, slope, order)
        dx = empty(k.dev, dy.shape, dy.dtype)
        contrib = empty(k.dev, dy.shape, np.float32)
        k(dy.size, x, dy, slope, dx, contrib, params=[dy.size, inner, c])
        return dx, sum_to(contrib, padded, slope.shape)

    return run
