"""Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus and their gradient ops."""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, empty, kernel

table = KernelTable("opencl")


@table.kernel("Relu", dtypes=FLOATS)
def relu(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "activation", "relu")

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, np.int64(x.size))
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
        k(dy.size, y, dy, dx, np.int64(dy.size))
        return (dx,)

    return run
