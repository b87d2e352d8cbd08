"""Relu, Sigmoid, Tanh, Softmax."""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable
from kaffa.schema import norm_axis

table = KernelTable("cpu")


@table.kernel("Relu", dtypes=FLOAT_TYPES)
def relu(ctx: KernelContext):
    def run(x):
        return (np.maximum(x, x.dtype.type(0)),)

    return run


@table.kernel("Sigmoid", dtypes=FLOAT_TYPES)
def sigmoid(ctx: KernelContext):
    def run(x):
        # Two branches so exp never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below.
        e = np.exp(-np.abs(x))
        return (np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False),)

    return run


@table.kernel("Tanh", dtypes=FLOAT_TYPES)
def tanh(ctx: KernelContext):
    def run(x):
        return (np.tanh(x),)

    return run


@table.kernel("Softmax", dtypes=FLOAT_TYPES)
def softmax(ctx: KernelContext):
    axis = ctx.args["axis"]

    def run(x):
        ax = norm_axis(axis, x.ndim, "Softmax")
        rows = int(np.prod(x.shape[:ax], dtype=np.int64))
        x2 = x.reshape(rows, -1)
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        return ((e / e.sum(axis=1, keepdims=True)).reshape(x.shape),)

    return run


@table.kernel("ReluGradient", dtypes=FLOAT_TYPES)
def relu_gradient(ctx: KernelContext):
    def run(y, dy):
        return (np.where(y > 0, dy, dy.dtype.type(0)),)

    return run
