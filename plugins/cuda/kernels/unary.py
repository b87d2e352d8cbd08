"""Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient and their gradient ops
(AbsGradient, ClipGradient, PowGradient, CastGradient), as CuPy array code (CuPy fuses nothing
here: each is one or two elementwise kernels). float16 computes in float32 and rounds once."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES
from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.elementwise import check_pow_gradient, clip_bounds, exponent_shapes, same_shape
from kaffa.schema import check
from kaffa_cuda.kernels.common import FLOATS, NUMERIC, Table, wide, xp
from kaffa_cuda.kernels.math import sum_to

table = Table()

_MAPS = {"Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Sqr": "square"}


@table.kernel(*_MAPS, dtypes=FLOATS)
def elementwise(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    fn = getattr(cp, _MAPS[ctx.op_type])
    return lambda x: (fn(wide(cp, x)).astype(x.dtype, copy=False),)


@table.kernel("Abs", "Negative", dtypes=NUMERIC)
def sign_ops(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    fn = cp.abs if ctx.op_type == "Abs" else cp.negative
    return lambda x: (fn(x),)


@table.kernel("Scale", dtypes=FLOATS)
def scale(ctx: KernelContext) -> RunFn:
    s, cp = float(ctx.args["scale"]), xp(ctx)
    return lambda x: ((wide(cp, x) * s).astype(x.dtype, copy=False),)


@table.kernel("StopGradient", dtypes=ALL_TYPES)
def stop_gradient(ctx: KernelContext) -> RunFn:
    return lambda x: (x,)  # kernels never write into inputs, so sharing the array is safe


@table.kernel("AbsGradient", dtypes=FLOATS)
def abs_gradient(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(x, dy):
        same_shape("AbsGradient", x, dy, "X")
        return ((cp.sign(wide(cp, x)) * wide(cp, dy)).astype(dy.dtype, copy=False),)

    return run


def _bounds(cp: Any, dtype: np.dtype, lo: float, hi: float) -> tuple[Any, Any]:
    """Clip's bounds (kaffa.launch.elementwise.clip_bounds) as 0-d arrays of ``dtype``."""
    return tuple(cp.asarray(b, dtype=dtype) for b in clip_bounds(dtype, lo, hi))  # type: ignore[return-value]


@table.kernel("Clip", dtypes=NUMERIC)
def clip(ctx: KernelContext) -> RunFn:
    lo, hi, cp = ctx.args["min"], ctx.args["max"], xp(ctx)

    def run(x):
        b0, b1 = _bounds(cp, x.dtype, lo, hi)
        # max then min, as Caffe2: with min > max every element becomes max; NaN passes through.
        return (cp.minimum(cp.maximum(x, b0), b1),)

    return run


@table.kernel("ClipGradient", dtypes=FLOATS)
def clip_gradient(ctx: KernelContext) -> RunFn:
    lo, hi, cp = ctx.args["min"], ctx.args["max"], xp(ctx)

    def run(y, dy):
        same_shape("ClipGradient", y, dy, "Y")
        b0, b1 = _bounds(cp, y.dtype, lo, hi)
        return (cp.where((y > b0) & (y < b1), dy, cp.zeros((), dy.dtype)),)

    return run


@table.kernel("Pow", dtypes=FLOATS)
def pow_(ctx: KernelContext) -> RunFn:
    exponent = ctx.args["exponent"]
    legacy, axis, cp = bool(ctx.args["broadcast"]), int(ctx.args["axis"]), xp(ctx)

    def run(x, e=None):
        if e is None:
            check(exponent is not None, "Pow: give the exponent as the `exponent` argument or as input 1")
            with np.errstate(all="ignore"):  # numpy on cudasim: negative bases, zero to negative powers
                return (cp.power(wide(cp, x), float(exponent)).astype(x.dtype, copy=False),)
        check(exponent is None, "Pow: give the exponent either as the `exponent` argument or as input 1")
        es, _ = exponent_shapes("Pow", x, e, legacy, axis)
        with np.errstate(all="ignore"):
            return (cp.power(wide(cp, x), wide(cp, e).reshape(es)).astype(x.dtype, copy=False),)

    return run


@table.kernel("PowGradient", dtypes=FLOATS)
def pow_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis, cp = bool(ctx.args["broadcast"]), int(ctx.args["axis"]), xp(ctx)

    def run(x, e, y, dy):
        es, out = exponent_shapes("PowGradient", x, e, legacy, axis)
        check_pow_gradient(y, dy, out)
        xw, ew, yw, dw = wide(cp, x), wide(cp, e).reshape(es), wide(cp, y), wide(cp, dy)
        with np.errstate(all="ignore"):  # numpy on cudasim: dE is defined for X > 0 only
            dx = ew * cp.power(xw, ew - 1) * dw
            de = yw * cp.log(xw) * dw
        # float16 sums stay in float32 until rounded (sum_to sums the work type then casts)
        dx = sum_to(cp, dx, tuple(x.shape)).astype(dy.dtype, copy=False)
        de = sum_to(cp, de, tuple(es)).reshape(e.shape).astype(dy.dtype, copy=False)
        return dx, de

    return run


# Cast targets CuPy has: kaffa's types and the narrow ints (uint32/uint64 and ml_dtypes' narrow
# types such as bfloat16 and float8 run on cpu).
_CAST_TARGETS = frozenset([*ALL_TYPES, *(np.dtype(t) for t in (np.int8, np.int16, np.uint8, np.uint16))])


def _cast_target(ctx: KernelContext) -> str | None:
    to = np.dtype(ctx.args["to"])
    return (
        None if to in _CAST_TARGETS else f"Cast to {to.name} is not supported on cuda (CuPy has no such type)"
    )


@table.kernel("Cast", dtypes=ALL_TYPES, supports=_cast_target)
def cast(ctx: KernelContext) -> RunFn:
    to = np.dtype(ctx.args["to"])
    # float -> int truncates toward zero (C's conversion), non-zero -> True, as on cpu.
    return lambda x: (x.astype(to, copy=True),)


@table.kernel("CastGradient", dtypes=ALL_TYPES)
def cast_gradient(ctx: KernelContext) -> RunFn:
    def run(x, dy):
        same_shape("CastGradient", x, dy, "X")
        return (dy.astype(x.dtype, copy=True),)

    return run
