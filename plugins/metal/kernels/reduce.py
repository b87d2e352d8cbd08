"""ReduceSum, ReduceMean, ReduceMax, SumElements and their gradient ops (wgsl/reduce.wgsl).

Shared with other families: ``RowReducer`` (sum / max / dot of X over any set of axes, read in
place through a geometry table: no transpose copy) and ``reduce_geometry``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import reduce as launch_reduce
from kaffa.launch.reduce import check_sum_elements_grad, kept_shape, reduce_count
from kaffa.ops.reduce import reduced_axes, reduced_shape
from kaffa_metal.kernels.common import FLOATS, NUMERIC, WG, empty, kernel, words

table = KernelTable("metal")

_KINDS = {"sum": 0, "max": 1, "dot": 2}


def reduce_geometry(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, np.ndarray]:
    """(kept, reduced, table) of kaffa.launch.reduce.reduce_geometry, the table as u32 words."""
    kept, red, geo = launch_reduce.reduce_geometry(shape, axes)
    return kept, red, geo.astype(np.int64).astype(np.uint32)


class RowReducer:
    """Reduce X over axes with kind "sum", "max" or "dot" (sum of X * X2, same shapes), dividing
    by ``div``; accumulates in A (f32 for f16) and stores ``out_dtype`` (default: the input's).
    Many rows: an invocation per row; few long rows: a workgroup per row."""

    def __init__(self, ctx: KernelContext, kind: str, dtype: Any = None, out_dtype: Any = None):
        self.dtype = np.dtype(dtype if dtype is not None else ctx.dtype)
        self.out_dtype = np.dtype(out_dtype if out_dtype is not None else self.dtype)
        extra = {"KIND": _KINDS[kind], "O": self.out_dtype}
        self.rows = kernel(ctx, "reduce", "rows", self.dtype, **extra)
        self.groups = kernel(ctx, "reduce", "groups", self.dtype, **extra)
        self.dev = self.rows.dev

    def __call__(
        self, x: Any, axes: Sequence[int], out_shape: Sequence[int], div: float = 1, x2: Any = None
    ) -> Any:
        kept, red, geo = reduce_geometry(tuple(x.shape), tuple(axes))
        y = empty(self.dev, out_shape, self.out_dtype)
        # red == 0 needs nothing special: the sum of no elements is 0 (a mean 0 / 0 = nan).
        params = np.concatenate([words(kept, red, float(div)), geo])
        x2 = x if x2 is None else x2
        if kept >= 1024 or red < 64:
            self.rows(kept, x, x2, y, params=params)
        else:
            self.groups(kept * WG, x, x2, y, params=params)
        return y


@table.kernel("ReduceMean", dtypes=FLOATS)
@table.kernel("ReduceSum", "ReduceMax", dtypes=NUMERIC)
def reduce_(ctx: KernelContext) -> RunFn:
    op, axes_arg, keepdims = ctx.op_type, ctx.args["axes"], bool(ctx.args["keepdims"])
    reducer = RowReducer(ctx, "max" if op == "ReduceMax" else "sum")

    def run(x):
        axes = reduced_axes(op, axes_arg, x.ndim)
        n = reduce_count(op, x.shape, axes)
        return (reducer(x, axes, reduced_shape(x.shape, axes, keepdims), n if op == "ReduceMean" else 1),)

    return run


@functools.lru_cache(maxsize=256)
def _expand_geometry(x_shape: tuple[int, ...], kept: tuple[int, ...]) -> np.ndarray:
    return launch_reduce.expand_geometry(x_shape, kept).astype(np.int64).astype(np.uint32)


def _expand(k: Any, dy: Any, x_shape: tuple[int, ...], kept: tuple[int, ...], div: float) -> Any:
    """dX of X's shape = dY (of the ``kept`` layout) / div broadcast back."""
    dx = empty(k.dev, x_shape, dy.dtype)
    n = dx.size
    k(n, dy, dx, params=np.concatenate([words(n, float(div)), _expand_geometry(x_shape, kept)]))
    return dx


@table.kernel("ReduceSumGradient", "ReduceMeanGradient", dtypes=FLOATS)
def reduce_gradient(ctx: KernelContext) -> RunFn:
    op, axes_arg = ctx.op_type, ctx.args["axes"]
    k = kernel(ctx, "reduce", "expand", KIND=0, O=ctx.dtype)

    def run(dy, x, y):
        axes = reduced_axes(op, axes_arg, x.ndim)
        kept = kept_shape(dy, tuple(x.shape), axes, op)
        n = math.prod(x.shape[a] for a in axes) if op == "ReduceMeanGradient" else 1
        return (_expand(k, dy, tuple(x.shape), kept, n),)

    return run


@table.kernel("ReduceMaxGradient", dtypes=FLOATS)
def reduce_max_gradient(ctx: KernelContext) -> RunFn:
    axes_arg = ctx.args["axes"]
    k = kernel(ctx, "reduce", "max_gradient", KIND=1, O=ctx.dtype)

    def run(dy, x, y):
        axes = reduced_axes("ReduceMaxGradient", axes_arg, x.ndim)
        kept = kept_shape(dy, tuple(x.shape), axes, "ReduceMaxGradient")
        kept_shape(y, tuple(x.shape), axes, "ReduceMaxGradient")
        dx = empty(k.dev, x.shape, dy.dtype)
        n = dx.size
        k(n, dy, x, y, dx, params=np.concatenate([words(n), _expand_geometry(tuple(x.shape), kept)]))
        return (dx,)

    return run


@table.kernel("SumElements", dtypes=FLOATS)
def sum_elements(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])
    reducer = RowReducer(ctx, "sum")
    return lambda x: (reducer(x, range(x.ndim), (), x.size if average else 1),)


@table.kernel("SumElementsGradient", dtypes=FLOATS)
def sum_elements_gradient(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])
    k = kernel(ctx, "reduce", "expand", KIND=0, O=ctx.dtype)

    def run(x, dy):
        check_sum_elements_grad(dy)
        return (_expand(k, dy, tuple(x.shape), (), max(x.size, 1) if average else 1),)

    return run
