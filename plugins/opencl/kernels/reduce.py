"""ReduceSum, ReduceMean, ReduceMax, SumElements and their gradient ops.

Shared with other families: ``RowReducer`` (sum / max / dot of X over any set of axes, read in
place through a geometry table, no transpose copy; see kaffa.launch.reduce.reduce_geometry).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.reduce import (
    check_sum_elements_grad,
    expand_geometry,
    kept_shape,
    reduce_count,
    reduce_geometry,
)
from kaffa.ops.reduce import reduced_axes, reduced_shape
from kaffa_opencl.kernels.common import FLOATS, NUMERIC, Consts, acc_scalar, empty, kernel, work_dtype

table = KernelTable("opencl")

GROUP = 256  # local size of the one-work-group-per-row kernels


class RowReducer:
    """Reduce X over axes with kind "sum", "max" or "dot" (sum of X * X2, same shapes), dividing
    the result by ``div``. Accumulates in A (float for float16); stores ``out_dtype`` (default T).
    Many rows: one work-item per row; few long rows: one work-group per row."""

    def __init__(self, ctx: KernelContext, kind: str, dtype: Any = None, out_dtype: Any = None):
        self.dtype = np.dtype(dtype if dtype is not None else ctx.dtype)
        self.out_dtype = np.dtype(out_dtype if out_dtype is not None else self.dtype)
        extra: dict[str, Any] = {"O": self.out_dtype}
        if self.out_dtype == np.float16:
            extra["O_HALF"] = 1
        self.rows = kernel(ctx, "reduce", f"{kind}_rows", self.dtype, **extra)
        self.groups = kernel(ctx, "reduce", f"{kind}_groups", self.dtype, **extra)
        self.dev = self.rows.dev
        self.consts = Consts(self.dev)
        self.local = min(GROUP, self.dev.cl_device.max_work_group_size)
        self.scratch = self.dev.cl.LocalMemory(self.local * work_dtype(self.dtype).itemsize)

    def __call__(
        self, x: Any, axes: Sequence[int], out_shape: Sequence[int], div: float = 1, x2: Any = None
    ) -> Any:
        kept, red, geo = reduce_geometry(tuple(x.shape), tuple(axes))
        y = empty(self.dev, out_shape, self.out_dtype)
        if red == 0 or kept == 0:  # an empty X has no buffer to pass: the sum is 0, a mean 0/0
            if y.size:
                y.fill(np.nan if div == 0 and y.dtype.kind == "f" else 0)
            return y
        args = (x, x if x2 is None else x2, y, self.consts(geo), np.int64(kept), np.int64(red))
        div = acc_scalar(self.dtype, div)
        if kept >= 1024 or red < 64:
            self.rows(kept, *args, div)
        else:
            self.groups(kept * self.local, *args, div, self.scratch, local=(self.local,))
        return y


@table.kernel("ReduceMean", dtypes=FLOATS)
@table.kernel("ReduceSum", "ReduceMax", dtypes=NUMERIC)
def reduce_(ctx: KernelContext) -> RunFn:
    op, axes_arg, keepdims = ctx.op_type, ctx.args["axes"], bool(ctx.args["keepdims"])
    reducer = RowReducer(ctx, "max" if op == "ReduceMax" else "sum")

    def run(x):
        axes = reduced_axes(op, axes_arg, x.ndim)
        n = reduce_count(op, x.shape, axes)
        out = reduced_shape(x.shape, axes, keepdims)
        return (reducer(x, axes, out, n if op == "ReduceMean" else 1),)

    return run


@table.kernel("ReduceSumGradient", "ReduceMeanGradient", "ReduceMaxGradient", dtypes=FLOATS)
def reduce_gradient(ctx: KernelContext) -> RunFn:
    op, axes_arg = ctx.op_type, ctx.args["axes"]
    is_max = op == "ReduceMaxGradient"
    k = kernel(ctx, "reduce", "max_gradient" if is_max else "expand")
    consts = Consts(k.dev)

    def run(dy, x, y):
        axes = reduced_axes(op, axes_arg, x.ndim)
        kept = kept_shape(dy, x.shape, axes, op)
        g = consts(expand_geometry(tuple(x.shape), kept))
        dx = empty(k.dev, x.shape, dy.dtype)
        if is_max:
            kept_shape(y, x.shape, axes, op)
            k(dx.size, dy, x, y, dx, g, np.int64(dx.size))
        else:
            n = math.prod(x.shape[a] for a in axes) if op == "ReduceMeanGradient" else 1
            k(dx.size, dy, dx, g, acc_scalar(dy.dtype, n), np.int64(dx.size))
        return (dx,)

    return run


@table.kernel("SumElements", dtypes=FLOATS)
def sum_elements(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])
    reducer = RowReducer(ctx, "sum")

    def run(x):
        return (reducer(x, range(x.ndim), (), x.size if average else 1),)

    return run


@table.kernel("SumElementsGradient", dtypes=FLOATS)
def sum_elements_gradient(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])
    k = kernel(ctx, "reduce", "expand")
    consts = Consts(k.dev)

    def run(x, dy):
        check_sum_elements_grad(dy)
        dx = empty(k.dev, x.shape, dy.dtype)
        div = acc_scalar(dy.dtype, max(x.size, 1) if average else 1)
        k(dx.size, dy, dx, consts(expand_geometry(tuple(x.shape), ())), div, np.int64(dx.size))
        return (dx,)

    return run
