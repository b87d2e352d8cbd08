"""The 'numba' kernels: kaffa ops mapped onto the compiled ufuncs of ``kaffa_numba.ufuncs``."""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.math import legacy_b_shape
from kaffa_numba import ufuncs

table = KernelTable("numba")

_UNARY = ("Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Sqr", "Abs", "Negative", "Softplus")
_WITH_ALPHA = ("Elu", "LeakyRelu")
_BINARY = ("Add", "Sub", "Mul", "Div")
_GRADIENTS = ("ReluGradient", "SigmoidGradient", "TanhGradient")


@table.kernel(*_UNARY, dtypes=ufuncs.TYPES)
def unary(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (ufuncs.call(op, x),)

    return run


@table.kernel(*_WITH_ALPHA, dtypes=ufuncs.TYPES)
def with_alpha(ctx: KernelContext) -> RunFn:
    op, alpha = ctx.op_type, ctx.args["alpha"]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (ufuncs.call(op, x, x.dtype.type(alpha)),)

    return run


@table.kernel(*_BINARY, dtypes=ufuncs.TYPES)
def binary(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        if legacy:  # Caffe2's broadcast=1: B lines up with A's dims starting at `axis`
            b = b.reshape(legacy_b_shape(op, a.shape, b.shape, axis))
        return (ufuncs.call(op, a, b),)

    return run


def _same_shape(op: str, y: np.ndarray, dy: np.ndarray) -> None:
    if y.shape != dy.shape:
        from kaffa.errors import ShapeError

        raise ShapeError(f"{op}: Y {list(y.shape)} and dY {list(dy.shape)} must have the same shape")


@table.kernel(*_GRADIENTS, dtypes=ufuncs.TYPES)
def gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _same_shape(op, y, dy)
        return (ufuncs.call(op, y, dy),)

    return run


@table.kernel("LeakyReluGradient", dtypes=ufuncs.TYPES)
def leaky_relu_gradient(ctx: KernelContext) -> RunFn:
    alpha = ctx.args["alpha"]

    def run(y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _same_shape("LeakyReluGradient", y, dy)
        return (ufuncs.call("LeakyReluGradient", y, dy, dy.dtype.type(alpha)),)

    return run
