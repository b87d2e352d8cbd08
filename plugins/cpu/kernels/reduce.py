"""ReduceSum, ReduceMean, ReduceMax, ReduceProd, SumElements and their gradient ops."""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.reduce import reduced_axes, reduced_shape
from kaffa.schema import check
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")


def _acc_dtype(dtype: np.dtype) -> np.dtype:
    # float16 sums in float32; integer sums stay in their dtype (numpy would widen int32 to int64).
    return work_dtype(dtype) if dtype.kind == "f" else dtype


@table.kernel("ReduceMean", dtypes=FLOAT_TYPES)
@table.kernel("ReduceSum", "ReduceMax", "ReduceProd", dtypes=NUMERIC_TYPES)
def reduce_(ctx: KernelContext) -> RunFn:
    op, axes_arg, keepdims = ctx.op_type, ctx.args["axes"], bool(ctx.args["keepdims"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        axes = reduced_axes(op, axes_arg, x.ndim)
        if op == "ReduceMax":
            check(
                all(x.shape[k] for k in axes),
                f"ReduceMax: cannot reduce an empty axis of X {list(x.shape)} (axes {list(axes)})",
            )
            y = np.max(x, axis=axes, keepdims=keepdims)
        elif op == "ReduceSum":
            y = np.sum(x, axis=axes, keepdims=keepdims, dtype=_acc_dtype(x.dtype))
        elif op == "ReduceProd":
            y = np.prod(x, axis=axes, keepdims=keepdims, dtype=_acc_dtype(x.dtype))
        else:
            y = np.mean(x, axis=axes, keepdims=keepdims, dtype=_acc_dtype(x.dtype))
        return (np.asarray(y).astype(x.dtype, copy=False),)

    return run


def _kept(dy: np.ndarray, x_shape: tuple[int, ...], axes: tuple[int, ...], op: str) -> np.ndarray:
    """dY (or Y) with the reduced axes as size-1 dims, ready to broadcast against X."""
    kept = reduced_shape(x_shape, axes, True)
    check(
        dy.size == math.prod(kept),
        f"{op}: dY {list(dy.shape)} is not X {list(x_shape)} reduced over {list(axes)}",
    )
    return dy.reshape(kept)


def _others_product(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """For each element of x, the product of the other elements of its reduced group (exclusive
    prefix times suffix products, so zeros need no division)."""
    rest = [k for k in range(x.ndim) if k not in axes]
    moved = np.transpose(x, rest + list(axes))
    flat = moved.reshape(*moved.shape[: len(rest)], -1)
    if flat.shape[-1] == 0:  # an empty group: X has no elements to get a gradient
        return np.zeros(x.shape, dtype=x.dtype)
    ones = np.ones((*flat.shape[:-1], 1), dtype=flat.dtype)
    before = np.concatenate([ones, np.cumprod(flat, axis=-1)[..., :-1]], axis=-1)
    after = np.concatenate([np.cumprod(flat[..., ::-1], axis=-1)[..., -2::-1], ones], axis=-1)
    return np.transpose((before * after).reshape(moved.shape), np.argsort(rest + list(axes)))


@table.kernel("ReduceProdGradient", dtypes=FLOAT_TYPES)
def reduce_prod_gradient(ctx: KernelContext) -> RunFn:
    axes_arg = ctx.args["axes"]

    def run(dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
        axes = reduced_axes("ReduceProdGradient", axes_arg, x.ndim)
        g = _kept(dy, x.shape, axes, "ReduceProdGradient")
        others = _others_product(x.astype(work_dtype(x.dtype)), axes)
        return ((g * others).astype(dy.dtype),)

    return run


@table.kernel("ReduceSumGradient", "ReduceMeanGradient", "ReduceMaxGradient", dtypes=FLOAT_TYPES)
def reduce_gradient(ctx: KernelContext) -> RunFn:
    op, axes_arg = ctx.op_type, ctx.args["axes"]

    def run(dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
        axes = reduced_axes(op, axes_arg, x.ndim)
        g = _kept(dy, x.shape, axes, op)
        if op == "ReduceMaxGradient":
            return (np.where(x == _kept(y, x.shape, axes, op), g, dy.dtype.type(0)),)
        if op == "ReduceMeanGradient":
            # n may overflow float16: divide in the work dtype.
            n = math.prod(x.shape[k] for k in axes)
            g = np.divide(g, n, dtype=work_dtype(dy.dtype)).astype(dy.dtype)
        return (np.broadcast_to(g, x.shape).copy(),)

    return run


@table.kernel("SumElements", dtypes=FLOAT_TYPES)
def sum_elements(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        wt = work_dtype(x.dtype)
        y = np.mean(x, dtype=wt) if average else np.sum(x, dtype=wt)
        return (np.asarray(y, dtype=x.dtype),)

    return run


@table.kernel("SumElementsGradient", dtypes=FLOAT_TYPES)
def sum_elements_gradient(ctx: KernelContext) -> RunFn:
    average = bool(ctx.args["average"])

    def run(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        check(dy.size == 1, f"SumElementsGradient: dY must have one element, got shape {list(dy.shape)}")
        g = dy.reshape(())
        if average:
            g = np.divide(g, max(x.size, 1), dtype=work_dtype(dy.dtype))
        return (np.full(x.shape, g, dtype=dy.dtype),)

    return run
