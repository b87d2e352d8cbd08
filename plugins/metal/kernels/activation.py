"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops."""

from __future__ import annotations

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check
from kaffa_metal.kernels.common import FLOATS, empty, kernel

table = KernelTable("metal")


@table.kernel("Relu", dtypes=FLOATS)
def relu(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "relu")

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, params=[x.size])
        return (y,)

    return run


@table.kernel("ReluGradient", dtypes=FLOATS)
def relu_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "relu_gradient")

    def run(y, dy):
        check(
            y.shape == dy.shape,
            f"ReluGradient: Y {list(y.shape)} and dY {list(dy.shape)} must have one shape",
        )
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dy.size, y, dy, dx, params=[dy.size])
        return (dx,)

    return run
