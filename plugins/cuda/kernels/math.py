"""Add, Sub, Mul, Div (numpy or Caffe2's legacy broadcasting), Sum, Max, Min, Mean, WeightedSum,
MatMul and BatchMatMul (cuBLAS through CuPy's matmul), SumReduceLike, DivGradient, MaxGradient,
MinGradient, MeanGradient and WeightedSumGradient, as CuPy array code. float16 accumulates in
float32."""

from __future__ import annotations

import math
from typing import Any

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import math as shared
from kaffa.ops.math import legacy_b_shape
from kaffa.schema import check, norm_axis
from kaffa_cuda.kernels.common import FLOATS, NUMERIC, Table, wide, xp

table = Table()


def sum_to(cp: Any, x: Any, shape: tuple[int, ...], axis: int = -1) -> Any:
    """``x`` summed over the dims where ``shape`` (lined up at ``axis``; -1: trailing) broadcasts."""
    axes = shared.sum_to_axes(tuple(x.shape), tuple(shape), axis)
    if axes:
        x = wide(cp, x).sum(axis=axes, keepdims=True).astype(x.dtype)
    return cp.ascontiguousarray(x).reshape(shape)


def _trunc_divide(cp: Any, a: Any, b: Any) -> Any:
    q = cp.floor_divide(a, b)
    r = a - q * b
    return q + ((r != 0) & ((a < 0) != (b < 0))).astype(q.dtype)


_BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "true_divide"}


@table.kernel(*_BINARY, dtypes=NUMERIC)
def binary(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    fn = getattr(cp, _BINARY[op])
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(a, b):
        shape, _ = shared.binary_geometry(op, tuple(a.shape), tuple(b.shape), legacy, axis)
        if legacy:
            b = b.reshape(legacy_b_shape(op, tuple(a.shape), tuple(b.shape), axis))
        if op == "Div" and a.dtype.kind in "iu":
            c = _trunc_divide(cp, a, b)
        else:
            c = fn(a, b)
        return (cp.asarray(c).astype(a.dtype, copy=False).reshape(shape),)

    return run


@table.kernel("Sum", "Max", "Min", dtypes=NUMERIC)
@table.kernel("Mean", dtypes=FLOATS)
def variadic(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(*xs):
        shared.check_same_shapes(op, xs)
        if op in ("Max", "Min"):
            fn = cp.maximum if op == "Max" else cp.minimum
            out = xs[0].copy()
            for x in xs[1:]:
                out = fn(out, x)
            return (out,)
        out = wide(cp, xs[0]).copy()
        for x in xs[1:]:
            out = out + x
        if op == "Mean":
            out = out / len(xs)
        return (out.astype(xs[0].dtype),)

    return run


@table.kernel("SumReduceLike", dtypes=FLOATS)
def sum_reduce_like(ctx: KernelContext) -> RunFn:
    axis, cp = int(ctx.args["axis"]), xp(ctx)
    return lambda a, b: (sum_to(cp, a, tuple(b.shape), axis),)


@table.kernel("DivGradient", dtypes=FLOATS)
def div_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis, cp = bool(ctx.args["broadcast"]), int(ctx.args["axis"]), xp(ctx)

    def run(dc, a, b, c):
        shape, _, _, _ = shared.div_gradient_layout(dc, a, b, c, legacy, axis)
        b_pad = legacy_b_shape("Div", shape, tuple(b.shape), axis) if legacy else tuple(b.shape)
        bw, dw, cw = wide(cp, b).reshape(b_pad), wide(cp, dc), wide(cp, c)
        da = cp.broadcast_to(dw / bw, shape).astype(dc.dtype)
        db = cp.broadcast_to(-dw * cw / bw, shape).astype(dc.dtype)
        return (
            sum_to(cp, da, tuple(a.shape)),
            sum_to(cp, db, tuple(b.shape), axis if legacy else -1),
        )

    return run


@table.kernel("MaxGradient", "MinGradient", dtypes=FLOATS)
def extreme_gradient(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)

    def run(y, dy, *xs):
        shared.check_same_shapes(op, (y, dy, *xs))
        zero = cp.zeros((), dy.dtype)
        return tuple(cp.where(x == y, dy, zero) for x in xs)

    return run


@table.kernel("MeanGradient", dtypes=FLOATS)
def mean_gradient(ctx: KernelContext) -> RunFn:
    n, cp = ctx.num_outputs, xp(ctx)

    def run(dy):
        dx = (wide(cp, dy) / n).astype(dy.dtype)
        return (dx,) * n

    return run


@table.kernel("WeightedSum", dtypes=FLOATS)
def weighted_sum(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(*ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSum", xs)
        shared.check_weights("WeightedSum", ws)
        # weights stay on the device (no read-back); float16 X with float32 weights sums in float32
        wt = shared.work_dtype(xs[0].dtype)
        out = wide(cp, xs[0]) * ws[0].astype(wt).reshape(())
        for x, w in zip(xs[1:], ws[1:]):
            out = out + wide(cp, x) * w.astype(wt).reshape(())
        return (out.astype(xs[0].dtype),)

    return run


@table.kernel("WeightedSumGradient", dtypes=FLOATS)
def weighted_sum_gradient(ctx: KernelContext) -> RunFn:
    on_w, cp = bool(ctx.args["grad_on_w"]), xp(ctx)

    def run(dy, *ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSumGradient", (dy, *xs))
        shared.check_weights("WeightedSumGradient", ws)
        dyw, wt = wide(cp, dy), shared.work_dtype(dy.dtype)
        dx = [(dyw * w.astype(wt).reshape(())).astype(dy.dtype) for w in ws]
        if not on_w:
            return tuple(dx)
        dw = [(dyw * wide(cp, x)).sum().astype(w.dtype).reshape(w.shape) for x, w in zip(xs, ws)]
        return (*dx, *dw)

    return run


@table.kernel("MatMul", dtypes=FLOATS)
def matmul(ctx: KernelContext) -> RunFn:
    a_ = ctx.args
    axis_a, axis_b, trans_a, trans_b = a_["axis_a"], a_["axis_b"], bool(a_["trans_a"]), bool(a_["trans_b"])
    cp = xp(ctx)

    def flat(x: Any, axis: int, what: str) -> Any:
        ax = norm_axis(axis, x.ndim, "MatMul", what)
        return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))

    def run(a, b):
        a2, b2 = flat(a, axis_a, "axis_a"), flat(b, axis_b, "axis_b")
        a2, b2 = (a2.T if trans_a else a2), (b2.T if trans_b else b2)
        check(
            a2.shape[1] == b2.shape[0],
            f"MatMul: A {list(a.shape)} gives K={a2.shape[1]} but B {list(b.shape)} gives K={b2.shape[0]}",
        )
        # cuBLAS: float16 GEMMs accumulate in float32 (CuPy's default compute type).
        return (cp.matmul(a2, b2),)

    return run


@table.kernel("BatchMatMul", dtypes=FLOATS)
def batch_matmul(ctx: KernelContext) -> RunFn:
    a_ = ctx.args
    trans_a, trans_b, broadcast = bool(a_["trans_a"]), bool(a_["trans_b"]), bool(a_["broadcast"])
    cp = xp(ctx)

    def run(a, b):
        check(
            a.ndim >= 2 and b.ndim >= 2,
            f"BatchMatMul: A {list(a.shape)} and B {list(b.shape)} must both be at least 2-D",
        )
        a2 = cp.swapaxes(a, -1, -2) if trans_a else a
        b2 = cp.swapaxes(b, -1, -2) if trans_b else b
        check(
            a2.shape[-1] == b2.shape[-2],
            f"BatchMatMul: A {list(a.shape)} gives K={a2.shape[-1]} but B {list(b.shape)} gives "
            f"K={b2.shape[-2]}",
        )
        if not broadcast:
            check(
                a.shape[:-2] == b.shape[:-2],
                f"BatchMatMul: A {list(a.shape)} and B {list(b.shape)} need equal batch dims without "
                "broadcast=1",
            )
        return (cp.matmul(a2, b2),)

    return run
