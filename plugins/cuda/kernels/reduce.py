"""ReduceSum, ReduceMean, ReduceMax, SumElements and their gradient ops, as CuPy reductions
(CuPy's reduction kernels read any set of axes in place). float16 sums accumulate in float32;
integer sums stay in their dtype (wrapping, as the other backends)."""

from __future__ import annotations

import math

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.math import work_dtype
from kaffa.launch.reduce import check_sum_elements_grad, kept_shape, reduce_count
from kaffa.ops.reduce import reduced_axes
from kaffa_cuda.kernels.common import FLOATS, NUMERIC, Table, xp

table = Table()


def _acc(dtype) -> object:
    return work_dtype(dtype) if dtype.kind == "f" else dtype


@table.kernel("ReduceMean", dtypes=FLOATS)
@table.kernel("ReduceSum", "ReduceMax", dtypes=NUMERIC)
def reduce_(ctx: KernelContext) -> RunFn:
    op, axes_arg, keepdims, cp = ctx.op_type, ctx.args["axes"], bool(ctx.args["keepdims"]), xp(ctx)

    def run(x):
        axes = reduced_axes(op, axes_arg, x.ndim)
        n = reduce_count(op, x.shape, axes)  # ReduceMax refuses an empty axis
        if op == "ReduceMax":
            y = cp.max(x, axis=axes, keepdims=keepdims)
        else:
            y = cp.sum(x, axis=axes, keepdims=keepdims, dtype=_acc(x.dtype))
            if op == "ReduceMean":
                y = y / n if n else y * float("nan")  # 0/0 without numpy's warning on cudasim
        return (cp.asarray(y).astype(x.dtype, copy=False),)

    return run


@table.kernel("ReduceSumGradient", "ReduceMeanGradient", "ReduceMaxGradient", dtypes=FLOATS)
def reduce_gradient(ctx: KernelContext) -> RunFn:
    op, axes_arg, cp = ctx.op_type, ctx.args["axes"], xp(ctx)

    def run(dy, x, y):
        axes = reduced_axes(op, axes_arg, x.ndim)
        g = dy.reshape(kept_shape(dy, x.shape, axes, op))
        if op == "ReduceMaxGradient":
            yk = y.reshape(kept_shape(y, x.shape, axes, op))
            return (cp.where(x == yk, g, cp.zeros((), dy.dtype)),)
        if op == "ReduceMeanGradient":
            n = math.prod(x.shape[k] for k in axes)  # may overflow float16: divide in float32
            g = (g.astype(work_dtype(dy.dtype)) / n).astype(dy.dtype)
        return (cp.broadcast_to(g, x.shape).copy(),)

    return run


@table.kernel("SumElements", dtypes=FLOATS)
def sum_elements(ctx: KernelContext) -> RunFn:
    average, cp = bool(ctx.args["average"]), xp(ctx)

    def run(x):
        y = cp.sum(x, dtype=work_dtype(x.dtype))
        if average:
            y = y / x.size if x.size else y * float("nan")
        return (cp.asarray(y).astype(x.dtype),)

    return run


@table.kernel("SumElementsGradient", dtypes=FLOATS)
def sum_elements_gradient(ctx: KernelContext) -> RunFn:
    average, cp = bool(ctx.args["average"]), xp(ctx)

    def run(x, dy):
        check_sum_elements_grad(dy)
        g = dy.reshape(()).astype(work_dtype(dy.dtype))
        if average:
            g = g / max(x.size, 1)
        return (cp.broadcast_to(g.astype(dy.dtype), x.shape).copy(),)

    return run
