"""Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum and the gradient ops SumReduceLike,
DivGradient, MaxGradient, MinGradient, MeanGradient, WeightedSumGradient (MatMul and BatchMatMul
live with the GEMM kernels).

Shared with other families: ``broadcast_binary`` (a launcher for any broadcasting binary kernel
with the signature ``(a, b, c, g, n)``). Device-independent geometry and checks: kaffa.launch.math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import math as shared
from kaffa_opencl.kernels.common import FLOATS, INTS, NUMERIC, Consts, acc_scalar, empty, kernel, work_dtype
from kaffa_opencl.kernels.reduce import RowReducer

table = KernelTable("opencl")

CHUNK = 4  # inputs per launch of the variadic kernels


def broadcast_binary(
    ctx: KernelContext, file: str, name: str, out_dtype: Any = None, dtype: Any = None, **extra: Any
) -> Callable[[Any, Any], Any]:
    """``run(a, b) -> c`` launching kernel ``name`` of cl/``file``.cl as ``(a, b, c, g, n)``: c is
    the broadcast shape (numpy or the op's legacy broadcast/axis args) of ``out_dtype`` (default:
    a's), g the broadcast_geometry table of (a, b)."""
    k = kernel(ctx, file, name, dtype, **extra)
    consts = Consts(k.dev)
    op, legacy, axis = ctx.op_type, bool(ctx.args.get("broadcast")), int(ctx.args.get("axis", -1))

    def run(a, b):
        shape, g = shared.binary_geometry(op, tuple(a.shape), tuple(b.shape), legacy, axis)
        c = empty(k.dev, shape, a.dtype if out_dtype is None else out_dtype)
        k(c.size, a, b, c, consts(g), np.int64(c.size))
        return c

    return run


@table.kernel("Add", "Sub", "Mul", "Div", dtypes=NUMERIC)
def binary(ctx: KernelContext) -> RunFn:
    intdiv = {"INTDIV": 1} if ctx.op_type == "Div" and np.dtype(ctx.dtype) in INTS else {}
    launch = broadcast_binary(ctx, "math", ctx.op_type.lower(), **intdiv)
    return lambda a, b: (launch(a, b),)


_VARIADIC = {"Sum": "sum_n", "Max": "max_n", "Min": "min_n", "Mean": "sum_n"}


@table.kernel("Mean", dtypes=FLOATS)
@table.kernel("Sum", "Max", "Min", dtypes=NUMERIC)
def variadic(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = kernel(ctx, "math", _VARIADIC[op])

    def run(*xs):
        shared.check_same_shapes(op, xs)
        x0, n = xs[0], xs[0].size
        y = empty(k.dev, x0.shape, x0.dtype)
        # More than CHUNK inputs: partial results in the arithmetic type, rounded once at the end.
        acc = y if len(xs) <= CHUNK else empty(k.dev, x0.shape, work_dtype(x0.dtype))
        div = acc_scalar(x0.dtype, len(xs) if op == "Mean" else 1)
        for s in range(0, len(xs), CHUNK):
            part = xs[s : s + CHUNK]
            ptrs = (*part, *(part[0],) * (CHUNK - len(part)))
            last = s + CHUNK >= len(xs)
            k(n, acc, np.int32(s > 0), *ptrs, np.int32(len(part)), acc, y, np.int32(last), div, np.int64(n))
        return (y,)

    return run


def _weight_kernels(ctx: KernelContext, name: str) -> Callable[[np.dtype], Any]:
    """Launchers of kernel ``name`` compiled per weight dtype W (float32 weights for float16 X)."""
    cache: dict[np.dtype, Any] = {}

    def get(wdt: np.dtype) -> Any:
        k = cache.get(wdt)
        if k is None:
            extra = {"W_HALF": 1} if wdt == np.float16 else {}
            k = cache[wdt] = kernel(ctx, "math", name, W=wdt, **extra)
        return k

    return get


@table.kernel("WeightedSum", dtypes=FLOATS)
def weighted_sum(ctx: KernelContext) -> RunFn:
    get = _weight_kernels(ctx, "weighted_sum_n")

    def run(*ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSum", xs)
        shared.check_weights("WeightedSum", ws)
        x0, n = xs[0], xs[0].size
        k = get(ws[0].dtype)
        y = empty(k.dev, x0.shape, x0.dtype)
        # Chunks of up to CHUNK consecutive pairs whose weights share a dtype.
        chunks = shared.weight_chunks(ws, CHUNK)
        acc = y if len(chunks) == 1 else empty(k.dev, x0.shape, work_dtype(x0.dtype))
        for c, (s, e) in enumerate(chunks):
            pairs = [p for i in range(s, e) for p in (xs[i], ws[i])]
            pairs += [xs[s], ws[s]] * (CHUNK - (e - s))
            last = c == len(chunks) - 1
            get(ws[s].dtype)(
                n, acc, np.int32(c > 0), *pairs, np.int32(e - s), acc, y, np.int32(last), np.int64(n)
            )
        return (y,)

    return run


# -- gradient ops ----------------------------------------------------------------------------------
@table.kernel("SumReduceLike", dtypes=FLOATS)
def sum_reduce_like(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])
    reducer = RowReducer(ctx, "sum")

    def run(a, b):
        shape = tuple(b.shape)
        return (reducer(a, shared.sum_to_axes(tuple(a.shape), shape, axis), shape),)

    return run


@table.kernel("DivGradient", dtypes=FLOATS)
def div_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])
    dt = np.dtype(ctx.dtype)
    wt = work_dtype(dt)
    direct = kernel(ctx, "math", "div_gradient", O=dt, **({"O_HALF": 1} if dt == np.float16 else {}))
    partial = kernel(ctx, "math", "div_gradient", O=wt)
    reducer = RowReducer(ctx, "sum", dtype=wt, out_dtype=dt)
    consts = Consts(direct.dev)

    def run(dc, a, b, c):
        shape, a_axes, b_axes, geo = shared.div_gradient_layout(dc, a, b, c, legacy, axis)
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        g, n = consts(geo), np.int64(dc.size)
        if not a_axes and not b_axes:  # no reduction: write the gradients in their own shapes
            da, db = empty(direct.dev, a_shape, dt), empty(direct.dev, b_shape, dt)
            direct(dc.size, dc, b, c, da, db, g, n)
            return da, db
        da, db = empty(direct.dev, shape, wt), empty(direct.dev, shape, wt)
        partial(dc.size, dc, b, c, da, db, g, n)
        return reducer(da, a_axes, a_shape), reducer(db, b_axes, b_shape)

    return run


@table.kernel("MaxGradient", "MinGradient", dtypes=FLOATS)
def extreme_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = kernel(ctx, "math", "select_equal")

    def run(y, dy, *xs):
        shared.check_same_shapes(op, (y, dy, *xs))
        outs = tuple(empty(k.dev, dy.shape, dy.dtype) for _ in xs)
        for x, dx in zip(xs, outs):
            k(dx.size, x, y, dy, dx, np.int64(dx.size))
        return outs

    return run


@table.kernel("MeanGradient", dtypes=FLOATS)
def mean_gradient(ctx: KernelContext) -> RunFn:
    n = ctx.num_outputs
    k = kernel(ctx, "math", "divide_by")

    def run(dy):
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dx.size, dy, dx, acc_scalar(dy.dtype, n), np.int64(dx.size))
        return (dx,) * n  # one array for all: kernels never write into their inputs

    return run


@table.kernel("WeightedSumGradient", dtypes=FLOATS)
def weighted_sum_gradient(ctx: KernelContext) -> RunFn:
    on_w = bool(ctx.args["grad_on_w"])
    get = _weight_kernels(ctx, "scale_by")
    dots: dict[np.dtype, RowReducer] = {}

    def run(dy, *ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSumGradient", (dy, *xs))
        shared.check_weights("WeightedSumGradient", ws)
        dx = []
        for w in ws:
            k = get(w.dtype)
            d = empty(k.dev, dy.shape, dy.dtype)
            k(d.size, dy, w, d, np.int64(d.size))
            dx.append(d)
        if not on_w:
            return tuple(dx)
        dw = []
        for x, w in zip(xs, ws):
            dot = dots.get(w.dtype)
            if dot is None:
                dot = dots[w.dtype] = RowReducer(ctx, "dot", out_dtype=w.dtype)
            dw.append(dot(dy, range(dy.ndim), w.shape, x2=x))
        return (*dx, *dw)

    return run
