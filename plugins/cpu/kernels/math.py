"""Add, Sub, Mul, Div, Sum, MatMul."""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.math import legacy_b_shape
from kaffa.schema import check, norm_axis
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")


def trunc_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero, as C does (numpy's // rounds toward -inf)."""
    q, r = np.divmod(a, b)
    # Floor and truncation differ exactly when the division is inexact and the signs differ.
    q += (r != 0) & ((a < 0) != (b < 0))
    return q


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide}


@table.kernel(*_BINARY, dtypes=NUMERIC_TYPES)
def binary(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    fn = _BINARY[op]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        if legacy:
            # B lines up with A's dims at `axis`; padded with 1s it broadcasts the numpy way.
            b = b.reshape(legacy_b_shape(op, a.shape, b.shape, axis))
        if op == "Div" and a.dtype.kind in "iu":
            c = trunc_divide(a, b)
        else:
            c = fn(a, b)
        return (np.asarray(c),)  # ufuncs on 0-d arrays return numpy scalars

    return run


@table.kernel("Sum", dtypes=NUMERIC_TYPES)
def sum_(ctx: KernelContext) -> RunFn:
    def run(*xs: np.ndarray) -> tuple[np.ndarray]:
        first = xs[0]
        for x in xs[1:]:
            # numpy would broadcast [3] + [1] silently; Sum wants one shape.
            check(
                x.shape == first.shape,
                f"Sum: all inputs must have one shape, got {', '.join(str(list(x.shape)) for x in xs)}",
            )
        if len(xs) == 1:
            return (first.copy(),)
        # float16 accumulates in float32 and is rounded once.
        out = np.asarray(np.add(first, xs[1], dtype=work_dtype(first.dtype)))
        for x in xs[2:]:
            np.add(out, x, out=out)
        return (out.astype(first.dtype, copy=False),)

    return run


@table.kernel("MatMul", dtypes=FLOAT_TYPES)
def matmul(ctx: KernelContext) -> RunFn:
    axis_a, axis_b = ctx.args["axis_a"], ctx.args["axis_b"]
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])

    def flat(x: np.ndarray, axis: int, what: str) -> np.ndarray:
        ax = norm_axis(axis, x.ndim, "MatMul", what)
        return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        a2, b2 = flat(a, axis_a, "axis_a"), flat(b, axis_b, "axis_b")
        if trans_a:
            a2 = a2.T
        if trans_b:
            b2 = b2.T
        check(
            a2.shape[1] == b2.shape[0],
            f"MatMul: A {list(a.shape)} gives K={a2.shape[1]} but B {list(b.shape)} gives K={b2.shape[0]}",
        )
        wt = work_dtype(a.dtype)
        y = np.matmul(a2.astype(wt, copy=False), b2.astype(wt, copy=False))
        return (y.astype(a.dtype, copy=False),)

    return run
