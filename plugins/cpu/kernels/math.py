"""Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum, MatMul, BatchMatMul and their gradient ops
(SumReduceLike, DivGradient, MaxGradient, MinGradient, MeanGradient, WeightedSumGradient)."""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, FLOAT_TYPES, NUMERIC_TYPES
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


def _same_shapes(op: str, xs: tuple[np.ndarray, ...]) -> None:
    # numpy would broadcast [3] + [1] silently; the variadic ops want one shape.
    first = xs[0].shape
    for x in xs[1:]:
        check(
            x.shape == first,
            f"{op}: all inputs must have one shape, got {', '.join(str(list(x.shape)) for x in xs)}",
        )


def reduce_to(x: np.ndarray, shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """Sum ``x`` over the dims where ``shape`` (lined up with x's dims at ``axis``; -1: trailing, as
    numpy broadcasting does) is broadcast. Without any such dim this is a view of x."""
    padded = legacy_b_shape("SumReduceLike", x.shape, shape, axis)
    dims = tuple(k for k, (p, d) in enumerate(zip(padded, x.shape)) if p == 1 and d != 1)
    if dims:
        x = np.sum(x, axis=dims, keepdims=True, dtype=work_dtype(x.dtype)).astype(x.dtype, copy=False)
    return np.asarray(x).reshape(shape)  # a 0-d sum is a numpy scalar


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide}


@table.kernel(*_BINARY, dtypes=ALL_NUMERIC_TYPES)
def binary(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    fn = _BINARY[op]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])
    if not legacy and not (op == "Div" and ctx.dtype is not None and ctx.dtype.kind in "iu"):

        def run_plain(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
            c = fn(a, b)
            return (c if type(c) is np.ndarray else np.asarray(c),)  # 0-d inputs give numpy scalars

        return run_plain

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
        _same_shapes("Sum", xs)
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


@table.kernel("Max", "Min", dtypes=ALL_NUMERIC_TYPES)
def extreme(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    fn = np.maximum if op == "Max" else np.minimum

    def run(*xs: np.ndarray) -> tuple[np.ndarray]:
        _same_shapes(op, xs)
        out = xs[0].copy() if len(xs) == 1 else fn(xs[0], xs[1], out=np.empty_like(xs[0]))
        for x in xs[2:]:
            fn(out, x, out=out)
        return (out,)

    return run


@table.kernel("Mean", dtypes=FLOAT_TYPES)
def mean(ctx: KernelContext) -> RunFn:
    def run(*xs: np.ndarray) -> tuple[np.ndarray]:
        _same_shapes("Mean", xs)
        first = xs[0]
        out = np.array(first, dtype=work_dtype(first.dtype))
        for x in xs[1:]:
            np.add(out, x, out=out)
        out /= len(xs)
        return (out.astype(first.dtype, copy=False),)

    return run


def _weights(op: str, ws: tuple[np.ndarray, ...], dtype: np.dtype) -> list[np.ndarray]:
    """One-element weight tensors as 0-d arrays of the dtype to compute in."""
    for k, w in enumerate(ws):
        check(w.size == 1, f"{op}: weight {k} must have one element, got shape {list(w.shape)}")
    return [w.reshape(()).astype(dtype) for w in ws]


@table.kernel("WeightedSum", dtypes=FLOAT_TYPES)
def weighted_sum(ctx: KernelContext) -> RunFn:
    def run(*ins: np.ndarray) -> tuple[np.ndarray]:
        xs = ins[0::2]
        _same_shapes("WeightedSum", xs)
        wt = work_dtype(xs[0].dtype)
        ws = _weights("WeightedSum", ins[1::2], wt)
        out = np.multiply(xs[0], ws[0], dtype=wt, out=np.empty(xs[0].shape, wt))
        for x, w in zip(xs[1:], ws[1:]):
            out += x * w
        return (out.astype(xs[0].dtype, copy=False),)

    return run


def _batch_matmul(a: np.ndarray, b: np.ndarray, trans_a: bool, trans_b: bool, broadcast: bool) -> np.ndarray:
    check(
        a.ndim >= 2 and b.ndim >= 2,
        f"BatchMatMul: A {list(a.shape)} and B {list(b.shape)} must both be at least 2-D",
    )
    a2 = np.swapaxes(a, -1, -2) if trans_a else a
    b2 = np.swapaxes(b, -1, -2) if trans_b else b
    check(
        a2.shape[-1] == b2.shape[-2],
        f"BatchMatMul: A {list(a.shape)} gives K={a2.shape[-1]} but B {list(b.shape)} gives K={b2.shape[-2]}",
    )
    if broadcast:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            check(
                False, f"BatchMatMul: batch dims of A {list(a.shape)} and B {list(b.shape)} do not broadcast"
            )
    else:
        check(
            a.shape[:-2] == b.shape[:-2],
            f"BatchMatMul: A {list(a.shape)} and B {list(b.shape)} need equal batch dims without broadcast=1",
        )
    wt = work_dtype(a.dtype)
    return np.matmul(a2.astype(wt, copy=False), b2.astype(wt, copy=False)).astype(a.dtype, copy=False)


@table.kernel("BatchMatMul", dtypes=FLOAT_TYPES)
def batch_matmul(ctx: KernelContext) -> RunFn:
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])
    broadcast = bool(ctx.args["broadcast"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        return (_batch_matmul(a, b, trans_a, trans_b, broadcast),)

    return run


# -- gradient ops ----------------------------------------------------------------------------------
@table.kernel("SumReduceLike", dtypes=FLOAT_TYPES)
def sum_reduce_like(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        return (reduce_to(a, b.shape, axis),)

    return run


@table.kernel("DivGradient", dtypes=FLOAT_TYPES)
def div_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(dc: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check(
            c.shape == dc.shape,
            f"DivGradient: dC {list(dc.shape)} and C {list(c.shape)} must have one shape",
        )
        wt = work_dtype(dc.dtype)
        bb = b.reshape(legacy_b_shape("Div", dc.shape, b.shape, axis)) if legacy else b
        bb = bb.astype(wt, copy=False)
        da = np.asarray(np.divide(dc, bb, dtype=wt))
        db = np.asarray(np.negative(da) * c)
        return (
            reduce_to(da, a.shape).astype(dc.dtype, copy=False),
            reduce_to(db, b.shape, axis if legacy else -1).astype(dc.dtype, copy=False),
        )

    return run


@table.kernel("MaxGradient", "MinGradient", dtypes=FLOAT_TYPES)
def extreme_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type

    def run(y: np.ndarray, dy: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        _same_shapes(op, (y, dy, *xs))
        zero = dy.dtype.type(0)
        return tuple(np.where(x == y, dy, zero) for x in xs)

    return run


@table.kernel("MeanGradient", dtypes=FLOAT_TYPES)
def mean_gradient(ctx: KernelContext) -> RunFn:
    n = ctx.num_outputs

    def run(dy: np.ndarray) -> tuple[np.ndarray, ...]:
        dx = np.divide(dy, dy.dtype.type(n), out=np.empty_like(dy))
        return (dx,) * n  # one array for all: kernels never write into their inputs

    return run


@table.kernel("WeightedSumGradient", dtypes=FLOAT_TYPES)
def weighted_sum_gradient(ctx: KernelContext) -> RunFn:
    on_w = bool(ctx.args["grad_on_w"])

    def run(dy: np.ndarray, *ins: np.ndarray) -> tuple[np.ndarray, ...]:
        xs, raw_w = ins[0::2], ins[1::2]
        _same_shapes("WeightedSumGradient", (dy, *xs))
        wt = work_dtype(dy.dtype)
        ws = _weights("WeightedSumGradient", raw_w, wt)
        dx = [np.asarray(np.multiply(dy, w, dtype=wt)).astype(dy.dtype, copy=False) for w in ws]
        if not on_w:
            return tuple(dx)
        dw = [
            np.asarray(np.vdot(dy.astype(wt, copy=False), x.astype(wt, copy=False)))
            .astype(w.dtype)
            .reshape(w.shape)
            for x, w in zip(xs, raw_w)
        ]
        return (*dx, *dw)

    return run
