"""Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient and their gradient ops
(AbsGradient, ClipGradient, PowGradient, CastGradient).

float16 is computed in float32 and rounded once where numpy would round more than once.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, ALL_TYPES, FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.math import legacy_b_shape
from kaffa.schema import check
from kaffa_cpu.kernels.math import reduce_to
from kaffa_cpu.kernels.nn import work_dtype
from kaffa_cpu.kernels.quant import cast_array, cast_supports

table = KernelTable("cpu")


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


def _same_shape(op: str, a: np.ndarray, dy: np.ndarray, what: str) -> None:
    check(a.shape == dy.shape, f"{op}: {what} {list(a.shape)} and dY {list(dy.shape)} must have one shape")


_UFUNCS = {"Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Sqr": np.square}


@table.kernel(*_UFUNCS, dtypes=FLOAT_TYPES)
def elementwise(ctx: KernelContext) -> RunFn:
    fn = _UFUNCS[ctx.op_type]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(fn(x)),)

    return run


@table.kernel("Abs", dtypes=NUMERIC_TYPES)
def abs_(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(np.abs(x)),)

    return run


@table.kernel("Negative", dtypes=NUMERIC_TYPES)
def negative(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(np.negative(x)),)

    return run


@table.kernel("Scale", dtypes=FLOAT_TYPES)
def scale(ctx: KernelContext) -> RunFn:
    s = ctx.args["scale"]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(_wide(x) * s).astype(x.dtype, copy=False),)

    return run


def _bounds(dtype: np.dtype, lo: float, hi: float) -> tuple[np.generic, np.generic]:
    """Clip's float bounds in ``dtype``: integers clip to ceil(min) / floor(max), and a bound beyond
    the dtype's range is no bound at all."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo_i = info.min if lo <= info.min else math.ceil(lo)
        hi_i = info.max if hi >= info.max else math.floor(hi)
        return dtype.type(min(max(lo_i, info.min), info.max)), dtype.type(max(min(hi_i, info.max), info.min))
    finfo = np.finfo(dtype)
    return dtype.type(max(lo, float(finfo.min))), dtype.type(min(hi, float(finfo.max)))


@table.kernel("Clip", dtypes=ALL_NUMERIC_TYPES)
def clip(ctx: KernelContext) -> RunFn:
    lo, hi = ctx.args["min"], ctx.args["max"]
    bounds: dict[np.dtype, tuple[np.generic, np.generic]] = {}

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        b = bounds.get(x.dtype)
        if b is None:
            b = bounds[x.dtype] = _bounds(x.dtype, lo, hi)
        # min then max, as Caffe2 does: with min > max every element becomes max. The second pass
        # writes into the first's result (one new array, not two).
        y = np.asarray(np.maximum(x, b[0]))
        return (np.minimum(y, b[1], out=y) if y.ndim else np.asarray(np.minimum(y, b[1])),)

    return run


def _legacy_view(op: str, x: np.ndarray, e: np.ndarray, legacy: bool, axis: int) -> np.ndarray:
    """The exponent shaped for numpy broadcasting (legacy: lined up inside X at ``axis``)."""
    return e.reshape(legacy_b_shape(op, x.shape, e.shape, axis)) if legacy else e


def _check_broadcast(op: str, x: np.ndarray, e: np.ndarray) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(x.shape, e.shape)
    except ValueError:
        check(False, f"{op}: shapes {list(x.shape)} and {list(e.shape)} do not broadcast")
        raise  # unreachable: check raised


def _int_power(x: np.ndarray, e: np.ndarray | float) -> np.ndarray:
    """Integer X: exact integer powers for integral exponents >= 0 (wrapping on overflow, as C's
    integer arithmetic does); otherwise the float64 power truncated toward zero ((int)pow(x, e))."""
    ea = np.asarray(e)
    integral = ea.dtype.kind in "iu" or bool(np.all(ea == np.trunc(ea)))
    if integral and bool(np.all(ea >= 0)):
        return np.power(x, ea.astype(x.dtype))
    with np.errstate(all="ignore"):
        y = np.trunc(np.power(x.astype(np.float64), ea.astype(np.float64)))
        # Out-of-range results (x = 0 to a negative power: inf) have no integer value; 0 like numpy.
        y = np.where(np.isfinite(y), y, 0)
    return y.astype(x.dtype)


@table.kernel("Pow", dtypes=NUMERIC_TYPES)
def pow_(ctx: KernelContext) -> RunFn:
    exponent = ctx.args["exponent"]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(x: np.ndarray, e: np.ndarray | None = None) -> tuple[np.ndarray]:
        if e is None:
            check(exponent is not None, "Pow: give the exponent as the `exponent` argument or as input 1")
            ev = exponent
        else:
            check(exponent is None, "Pow: give the exponent either as the `exponent` argument or as input 1")
            ev = _legacy_view("Pow", x, e, legacy, axis)
            _check_broadcast("Pow", x, ev)
        if x.dtype.kind in "iu":
            return (np.asarray(_int_power(x, ev)),)
        y = np.power(_wide(x), ev if e is None else _wide(ev))
        return (np.asarray(y).astype(x.dtype, copy=False),)

    return run


# Any dtype Cast is defined for, ml_dtypes' storage types included (the predicate refuses the rest).
@table.kernel("Cast", supports=cast_supports)
def cast(ctx: KernelContext) -> RunFn:
    to = np.dtype(ctx.args["to"])
    saturate, round_mode = bool(ctx.args["saturate"]), ctx.args["round_mode"]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (cast_array(x, to, saturate, round_mode),)

    return run


@table.kernel("StopGradient", dtypes=ALL_TYPES)
def stop_gradient(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (x,)  # blobs are never written in place by kernels, so sharing the array is safe

    return run


# -- gradient ops ----------------------------------------------------------------------------------
@table.kernel("AbsGradient", dtypes=FLOAT_TYPES)
def abs_gradient(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _same_shape("AbsGradient", x, dy, "X")
        return (np.asarray(np.sign(x).astype(dy.dtype, copy=False) * dy),)

    return run


@table.kernel("ClipGradient", dtypes=FLOAT_TYPES)
def clip_gradient(ctx: KernelContext) -> RunFn:
    lo, hi = ctx.args["min"], ctx.args["max"]
    bounds: dict[np.dtype, tuple[np.generic, np.generic]] = {}

    def run(y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _same_shape("ClipGradient", y, dy, "Y")
        b = bounds.get(y.dtype)
        if b is None:
            b = bounds[y.dtype] = _bounds(y.dtype, lo, hi)
        inside = (y > b[0]) & (y < b[1])
        return (np.where(inside, dy, dy.dtype.type(0)),)

    return run


@table.kernel("PowGradient", dtypes=FLOAT_TYPES)
def pow_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(x: np.ndarray, e: np.ndarray, y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ev = _legacy_view("PowGradient", x, e, legacy, axis)
        out = _check_broadcast("PowGradient", x, ev)
        check(
            y.shape == out and dy.shape == out,
            f"PowGradient: Y {list(y.shape)} and dY {list(dy.shape)} must have the shape of X^E, {list(out)}",
        )
        xw, ew, yw, dw = _wide(x), _wide(ev), _wide(y), _wide(dy)
        dx = ew * np.power(xw, ew - 1) * dw
        with np.errstate(divide="ignore", invalid="ignore"):  # log(X <= 0): dE is defined for X > 0 only
            de = yw * np.log(xw) * dw
        return (
            reduce_to(np.asarray(dx), x.shape).astype(dy.dtype, copy=False),
            reduce_to(np.asarray(de), e.shape, axis if legacy else -1).astype(dy.dtype, copy=False),
        )

    return run


@table.kernel("CastGradient", dtypes=ALL_TYPES)
def cast_gradient(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _same_shape("CastGradient", x, dy, "X")
        return (dy.astype(x.dtype),)

    return run
