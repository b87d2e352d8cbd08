"""Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum and the gradient ops SumReduceLike,
DivGradient, MaxGradient, MinGradient, MeanGradient, WeightedSumGradient (wgsl/math.wgsl).
MatMul and BatchMatMul live with the GEMM in blas.py.

Shared with other families: ``binary_params`` (output shape and parameter table of a numpy or
legacy broadcasting binary op). Device-independent geometry and checks: kaffa.launch.math.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import math as shared
from kaffa_metal.kernels.common import FLOATS, NUMERIC, Launcher, empty, kernel, words
from kaffa_metal.kernels.reduce import RowReducer

table = KernelTable("metal")

CHUNK = 4  # inputs per launch of Sum/Max/Min/Mean (bindings: 8 storage buffers per stage at most)
PAIRS = 2  # (X, w) pairs per launch of WeightedSum
_OPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Sum": 0, "Mean": 0, "Max": 1, "Min": 2}


def _kernel(ctx: KernelContext, entry: str, dtype: Any = None, **extra: Any) -> Launcher:
    """An entry of wgsl/math.wgsl: every pipeline of the file needs OP, INTDIV, W and O."""
    dt = np.dtype(ctx.dtype if dtype is None else dtype)
    consts = {"OP": 0, "INTDIV": dt.kind == "i", "W": dt, "O": dt}
    return kernel(ctx, "math", entry, dt, **{**consts, **extra})


def _params(n: int, geometry: np.ndarray) -> np.ndarray:
    return np.concatenate([words(n), geometry.astype(np.int64).astype(np.uint32)])


@functools.lru_cache(maxsize=256)
def binary_params(
    op: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], legacy: bool, axis: int
) -> tuple[tuple[int, ...], np.ndarray]:
    """(output shape, parameter table [n, broadcast_geometry(A, B)...]) of a binary op with numpy
    broadcasting, or with Caffe2's legacy broadcast=1 (see kaffa.launch.math.binary_geometry)."""
    out, geo = shared.binary_geometry(op, a_shape, b_shape, legacy, axis)
    return out, _params(int(np.prod(out, dtype=np.int64)), geo)


@table.kernel("Add", "Sub", "Mul", "Div", dtypes=NUMERIC)
def binary(ctx: KernelContext) -> RunFn:
    op, legacy, axis = ctx.op_type, bool(ctx.args["broadcast"]), int(ctx.args["axis"])
    k = _kernel(ctx, "binary", OP=_OPS[op])

    def run(a, b):
        shape, params = binary_params(op, tuple(a.shape), tuple(b.shape), legacy, axis)
        c = empty(k.dev, shape, a.dtype)
        k(c.size, a, b, c, params=params)
        return (c,)

    return run


@table.kernel("Mean", dtypes=FLOATS)
@table.kernel("Sum", "Max", "Min", dtypes=NUMERIC)
def variadic(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = _kernel(ctx, "variadic", OP=_OPS[op])

    def run(*xs):
        shared.check_same_shapes(op, xs)
        x0, n = xs[0], xs[0].size
        y = empty(k.dev, x0.shape, x0.dtype)
        # Over CHUNK inputs: partial results in the arithmetic type (f16 rounds once at the end).
        acc = y if len(xs) <= CHUNK else empty(k.dev, x0.shape, shared.work_dtype(x0.dtype))
        div = float(len(xs) if op == "Mean" else 1)
        for s in range(0, len(xs), CHUNK):
            part = xs[s : s + CHUNK]
            last = s + CHUNK >= len(xs)
            k(n, acc, *part, *(part[0],) * (CHUNK - len(part)), y, params=[n, len(part), s > 0, last, div])
        return (y,)

    return run


def _by_weight_dtype(ctx: KernelContext, entry: str) -> Callable[[np.dtype], Launcher]:
    """Launchers of ``entry`` per weight dtype W (Caffe2 keeps float32 weights for float16 X)."""
    cache: dict[np.dtype, Launcher] = {}

    def get(wdt: np.dtype) -> Launcher:
        if wdt not in cache:
            cache[wdt] = _kernel(ctx, entry, W=wdt)
        return cache[wdt]

    return get


@table.kernel("WeightedSum", dtypes=FLOATS)
def weighted_sum(ctx: KernelContext) -> RunFn:
    get = _by_weight_dtype(ctx, "weighted_sum")

    def run(*ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSum", xs)
        shared.check_weights("WeightedSum", ws)
        x0, n = xs[0], xs[0].size
        # Chunks of up to PAIRS consecutive pairs whose weights share a dtype.
        chunks = shared.weight_chunks(ws, PAIRS)
        dev = get(ws[0].dtype).dev
        y = empty(dev, x0.shape, x0.dtype)
        acc = y if len(chunks) == 1 else empty(dev, x0.shape, shared.work_dtype(x0.dtype))
        for c, (s, e) in enumerate(chunks):
            pairs = [p for i in range(s, e) for p in (xs[i], ws[i])]
            pairs += [xs[s], ws[s]] * (PAIRS - (e - s))
            get(ws[s].dtype)(n, acc, *pairs, y, params=[n, e - s, c > 0, c == len(chunks) - 1])
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
    direct = _kernel(ctx, "div_gradient")  # gradients stored as T
    partial = _kernel(ctx, "div_gradient", O=np.float32)  # f32, for a reduction to round once
    reducer = RowReducer(ctx, "sum", dtype=np.float32, out_dtype=dt)

    def run(dc, a, b, c):
        shape, a_axes, b_axes, geo = shared.div_gradient_layout(dc, a, b, c, legacy, axis)
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        params = _params(dc.size, geo)
        if not a_axes and not b_axes:  # no reduction: write the gradients in their own shapes
            da, db = empty(direct.dev, a_shape, dt), empty(direct.dev, b_shape, dt)
            direct(dc.size, dc, b, c, da, db, params=params)
            return da, db
        da, db = empty(partial.dev, shape, np.float32), empty(partial.dev, shape, np.float32)
        partial(dc.size, dc, b, c, da, db, params=params)
        return reducer(da, a_axes, a_shape), reducer(db, b_axes, b_shape)

    return run


@table.kernel("MaxGradient", "MinGradient", dtypes=FLOATS)
def extreme_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    k = _kernel(ctx, "select_equal")

    def run(y, dy, *xs):
        shared.check_same_shapes(op, (y, dy, *xs))
        outs = tuple(empty(k.dev, dy.shape, dy.dtype) for _ in xs)
        for x, dx in zip(xs, outs):
            k(dx.size, x, y, dy, dx, params=[dx.size])
        return outs

    return run


@table.kernel("MeanGradient", dtypes=FLOATS)
def mean_gradient(ctx: KernelContext) -> RunFn:
    n = ctx.num_outputs
    k = _kernel(ctx, "divide_by")

    def run(dy):
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dx.size, dy, dx, params=[dx.size, float(n)])
        return (dx,) * n  # one array for all: kernels never write into their inputs

    return run


@table.kernel("WeightedSumGradient", dtypes=FLOATS)
def weighted_sum_gradient(ctx: KernelContext) -> RunFn:
    on_w = bool(ctx.args["grad_on_w"])
    get = _by_weight_dtype(ctx, "scale_by")
    dots: dict[np.dtype, RowReducer] = {}

    def run(dy, *ins):
        xs, ws = ins[0::2], ins[1::2]
        shared.check_same_shapes("WeightedSumGradient", (dy, *xs))
        shared.check_weights("WeightedSumGradient", ws)
        dx = []
        for w in ws:
            k = get(w.dtype)
            d = empty(k.dev, dy.shape, dy.dtype)
            k(d.size, dy, w, d, params=[d.size])
            dx.append(d)
        if not on_w:
            return tuple(dx)
        dw = []
        for x, w in zip(xs, ws):
            if w.dtype not in dots:
                dots[w.dtype] = RowReducer(ctx, "dot", out_dtype=w.dtype)
            dw.append(dots[w.dtype](dy, range(dy.ndim), w.shape, x2=x))
        return (*dx, *dw)

    return run
