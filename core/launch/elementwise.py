"""Host-side checks and parameters of the elementwise families (activation, unary) shared by the
device backends: same-shape gradient checks, Softmax's row view, PRelu's channel layout, Clip's
bounds and Pow's broadcast shapes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kaffa.launch import split_at
from kaffa.ops.activation import prelu_channels
from kaffa.ops.math import legacy_b_shape
from kaffa.schema import check, norm_axis


def same_shape(op: str, a: Any, dy: Any, what: str = "Y") -> None:
    """A gradient op's ``what`` input and dY must have one shape."""
    check(a.shape == dy.shape, f"{op}: {what} {list(a.shape)} and dY {list(dy.shape)} must have one shape")


def softmax_rows(op: str, shape: tuple[int, ...], axis: int) -> tuple[int, int]:
    """Caffe2's coerced 2-D view (rows, cols) of ``shape`` at ``axis``: each row is normalized."""
    return split_at(shape, norm_axis(axis, len(shape), op))


def prelu_layout(
    op: str, x_shape: tuple[int, ...], slope_shape: tuple[int, ...], order: str
) -> tuple[int, int, int, tuple[int, ...]]:
    """(outer, C, inner, padded): X as (outer, C, inner) around its channel axis, and the slope's
    shape lined up with X's dims (1s elsewhere); a shared slope is C = 1 over everything."""
    n = int(np.prod(x_shape, dtype=np.int64))
    slope_size = int(np.prod(slope_shape, dtype=np.int64))
    ndim = len(x_shape)
    if slope_size == 1:
        return 1, 1, n, (1,) * ndim
    c = prelu_channels(op, x_shape, order)
    check(
        slope_size == c,
        f"{op}: slope {list(slope_shape)} must have 1 or C={c} elements for X {list(x_shape)} "
        f"(order {order})",
    )
    if order == "NCHW":
        return int(x_shape[0]), c, int(np.prod(x_shape[2:], dtype=np.int64)), (1, c) + (1,) * (ndim - 2)
    return int(np.prod(x_shape[:-1], dtype=np.int64)), c, 1, (1,) * (ndim - 1) + (c,)


def clip_bounds(dtype: np.dtype, lo: float, hi: float) -> tuple[int, int] | tuple[float, float]:
    """Clip's bounds as the cpu kernel applies them: integers clip to ceil(min) / floor(max), a bound
    beyond the dtype's range is no bound at all, and float bounds are rounded to the dtype first."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo_i = info.min if lo <= info.min else math.ceil(lo)
        hi_i = info.max if hi >= info.max else math.floor(hi)
        return min(max(lo_i, info.min), info.max), max(min(hi_i, info.max), info.min)
    finfo = np.finfo(dtype)
    return float(dtype.type(max(lo, float(finfo.min)))), float(dtype.type(min(hi, float(finfo.max))))


def exponent_shapes(
    op: str, x: Any, e: Any, legacy: bool, axis: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(E's shape lined up for numpy broadcasting, the broadcast shape) of Pow with a tensor
    exponent; legacy E lines up inside X at ``axis``."""
    es = tuple(legacy_b_shape(op, x.shape, e.shape, axis)) if legacy else tuple(e.shape)
    try:
        return es, tuple(np.broadcast_shapes(x.shape, es))
    except ValueError:
        check(False, f"{op}: shapes {list(x.shape)} and {list(es)} do not broadcast")
        raise  # unreachable: check raised


def check_pow_gradient(y: Any, dy: Any, out: tuple[int, ...]) -> None:
    """PowGradient's Y and dY have the broadcast shape of X^E."""
    check(
        y.shape == out and dy.shape == out,
        f"PowGradient: Y {list(y.shape)} and dY {list(dy.shape)} must have the shape of X^E, {list(out)}",
    )
