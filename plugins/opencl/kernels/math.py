"""Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum and the gradient ops SumReduceLike,
DivGradient, MaxGradient, MinGradient, MeanGradient, WeightedSumGradient (MatMul and BatchMatMul
live with the GEMM kernels).

Shared with other families: ``broadcast_binary`` (a launcher for any broadcasting binary kernel
with the signature ``(a, b, c, g, n)``), ``binary_geometry`` and ``sum_to`` (SumReduceLike).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import broadcast_geometry
from kaffa.ops.math import broadcast_shapes, legacy_b_shape
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, INTS, NUMERIC, Consts, acc_scalar, empty, kernel, work_dtype
from kaffa_opencl.kernels.reduce import RowReducer

table = KernelTable("opencl")

CHUNK = 4  # inputs per launch of the variadic kernels


@functools.lru_cache(maxsize=256)
def binary_geometry(
    op: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], legacy: bool, axis: int
) -> tuple[tuple[int, ...], np.ndarray]:
    """(output shape, broadcast_geometry table) of a binary op with numpy broadcasting, or with
    Caffe2's legacy broadcast=1 (B matched inside A at ``axis``)."""
    if legacy:
        return a_shape, broadcast_geometry(a_shape, a_shape, legacy_b_shape(op, a_shape, b_shape, axis))
    out = tuple(int(d) for d in broadcast_shapes(op, a_shape, b_shape))
    return out, broadcast_geometry(out, a_shape, b_shape)


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
        shape, g = binary_geometry(op, tuple(a.shape), tuple(b.shape), legacy, axis)
        c = empty(k.dev, shape, a.dtype if out_dtype is None else out_dtype)
        k(c.size, a, b, c, consts(g), np.int64(c.size))
        return c

    return run


@table.kernel("Add", "Sub", "Mul", "Div", dtypes=NUMERIC)
def binary(ctx: KernelContext) -> RunFn:
    intdiv = {"INTDIV": 1} if ctx.op_type == "Div" and np.dtype(ctx.dtype) in INTS else {}
    launch = broadcast_binary(ctx, "math", ctx.op_type.lower(), **intdiv)
    return lambda a, b: (launch(a, b),)


def _same_shapes(op: str, xs: Sequence[Any]) -> None:
    first = xs[0].shape
    check(
        all(x.shape == first for x in xs[1:]),
        f"{op}: all inputs must have one shape, got {', '.join(str(list(x.shape)) for x in xs)}",
    )


_VARIADIC = {"Sum": "sum_n", "Max": "max_n", "Min": "min_n", "Mean": "sum_n"}


@table.kernel("Mean", dtypes=FLOATS)
@table.kernel("Sum", "Max", "Min", dtypes=NUMERIC)
def variadic(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = kernel(ctx, "math", _VARIADIC[op])

    def run(*xs):
        _same_shapes(op, xs)
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


def _check_weights(op: str, ws: Sequence[Any]) -> None:
    for i, w in enumerate(ws):
        check(w.size == 1, f"{op}: weight {i} must have one element, got shape {list(w.shape)}")


@table.kernel("WeightedSum", dtypes=FLOATS)
def weighted_sum(ctx: KernelContext) -> RunFn:
    get = _weight_kernels(ctx, "weighted_sum_n")

    def run(*ins):
        xs, ws = ins[0::2], ins[1::2]
        _same_shapes("WeightedSum", xs)
        _check_weights("WeightedSum", ws)
        x0, n = xs[0], xs[0].size
        k = get(ws[0].dtype)
        y = empty(k.dev, x0.shape, x0.dtype)
        # Chunks of up to CHUNK consecutive pairs whose weights share a dtype.
        chunks, s = [], 0
        while s < len(xs):
            e = s + 1
            while e < len(xs) and e - s < CHUNK and ws[e].dtype == ws[s].dtype:
                e += 1
            chunks.append((s, e))
            s = e
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
def _broadcast_axes(shape: Sequence[int], padded: Sequence[int]) -> tuple[int, ...]:
    """The dims of ``shape`` where ``padded`` (an operand's shape lined up with it) is broadcast."""
    return tuple(k for k, (p, d) in enumerate(zip(padded, shape)) if p == 1 and d != 1)


def sum_to(reducer: RowReducer, x: Any, shape: tuple[int, ...], axis: int = -1) -> Any:
    """Sum ``x`` over the dims where ``shape`` (lined up with x's dims at ``axis``; -1: trailing, as
    numpy broadcasting) is broadcast, giving ``shape``; ``reducer`` is a "sum" RowReducer."""
    padded = legacy_b_shape("SumReduceLike", tuple(x.shape), shape, axis)
    return reducer(x, _broadcast_axes(x.shape, padded), shape)


@table.kernel("SumReduceLike", dtypes=FLOATS)
def sum_reduce_like(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])
    reducer = RowReducer(ctx, "sum")
    return lambda a, b: (sum_to(reducer, a, tuple(b.shape), axis),)


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
        check(
            c.shape == dc.shape, f"DivGradient: dC {list(dc.shape)} and C {list(c.shape)} must have one shape"
        )
        shape, (a_shape, b_shape) = tuple(dc.shape), (tuple(a.shape), tuple(b.shape))
        if legacy:
            b_pad = legacy_b_shape("Div", shape, b_shape, axis)
        else:
            check(
                broadcast_shapes("Div", shape, b_shape) == shape,
                f"DivGradient: B {list(b_shape)} does not broadcast to dC {list(shape)}",
            )
            b_pad = b_shape
        a_axes = _broadcast_axes(shape, legacy_b_shape("Div", shape, a_shape, -1))
        b_axes = _broadcast_axes(shape, legacy_b_shape("Div", shape, b_shape, axis if legacy else -1))
        g, n = consts(broadcast_geometry(shape, b_pad)), np.int64(dc.size)
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
        _same_shapes(op, (y, dy, *xs))
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
        _same_shapes("WeightedSumGradient", (dy, *xs))
        _check_weights("WeightedSumGradient", ws)
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
