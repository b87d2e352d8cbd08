"""Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient and their gradient ops
(AbsGradient, ClipGradient, PowGradient, CastGradient).

Every kernel computes in A (float for float16) and rounds once on store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.elementwise import check_pow_gradient, clip_bounds, exponent_shapes, same_shape
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, NUMERIC, acc_scalar, device, empty, kernel, work_dtype
from kaffa_opencl.kernels.elementwise import Geometry, SumTo, grad_map, unary_map

table = KernelTable("opencl")


def _int(dtype: Any) -> dict[str, int]:
    """INT_T for integer and bool builds: cl/unary.cl then leaves out its float-only math."""
    return {"INT_T": 1} if np.dtype(dtype).kind in "iub" else {}


_MAPS = {"Exp": "exp_", "Log": "log_", "Sqrt": "sqrt_", "Sqr": "sqr"}


@table.kernel(*_MAPS, dtypes=FLOATS)
def elementwise(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", _MAPS[ctx.op_type])


@table.kernel("Abs", dtypes=NUMERIC)
def abs_(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "abs_", **_int(ctx.dtype))


@table.kernel("Negative", dtypes=NUMERIC)
def negative(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "negative", **_int(ctx.dtype))


@table.kernel("Scale", dtypes=FLOATS)
def scale(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "scale", ctx.args["scale"])


@table.kernel("StopGradient", dtypes=ALL_TYPES)
def stop_gradient(ctx: KernelContext) -> RunFn:
    def run(x):
        return (x,)  # kernels never write into inputs, so sharing the array is safe

    return run


@table.kernel("AbsGradient", dtypes=FLOATS)
def abs_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "unary", "abs_gradient", what="X")


def _bounds(dtype: np.dtype, lo: float, hi: float) -> tuple[Any, ...]:
    """Clip's bounds (see kaffa.launch.elementwise.clip_bounds) as kernel arguments of type A."""
    return tuple(acc_scalar(dtype, b) for b in clip_bounds(dtype, lo, hi))


@table.kernel("Clip", dtypes=NUMERIC)
def clip(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "unary", "clip", **_int(ctx.dtype))
    lo, hi = _bounds(np.dtype(ctx.dtype), ctx.args["min"], ctx.args["max"])

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, np.int64(x.size), lo, hi)
        return (y,)

    return run


@table.kernel("ClipGradient", dtypes=FLOATS)
def clip_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(
        ctx, "unary", "clip_gradient", *_bounds(np.dtype(ctx.dtype), ctx.args["min"], ctx.args["max"])
    )


@table.kernel("Pow", dtypes=FLOATS)
def pow_(ctx: KernelContext) -> RunFn:
    exponent = ctx.args["exponent"]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])
    ks = kernel(ctx, "unary", "pow_scalar")
    kt = kernel(ctx, "unary", "pow_tensor")
    geometry = Geometry(ks.dev)

    def run(x, e=None):
        if e is None:
            check(exponent is not None, "Pow: give the exponent as the `exponent` argument or as input 1")
            y = empty(ks.dev, x.shape, x.dtype)
            ks(x.size, x, y, np.int64(x.size), acc_scalar(x.dtype, exponent))
            return (y,)
        check(exponent is None, "Pow: give the exponent either as the `exponent` argument or as input 1")
        es, out = exponent_shapes("Pow", x, e, legacy, axis)
        y = empty(kt.dev, out, x.dtype)
        kt(y.size, geometry.broadcast(out, x.shape, es), x, e, y, np.int64(y.size))
        return (y,)

    return run


@table.kernel("PowGradient", dtypes=FLOATS)
def pow_gradient(ctx: KernelContext) -> RunFn:
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])
    w = work_dtype(ctx.dtype)
    k = kernel(ctx, "unary", "pow_gradient", W=w)
    geometry = Geometry(k.dev)
    sum_to = SumTo(ctx, ctx.dtype, geometry)

    def run(x, e, y, dy):
        es, out = exponent_shapes("PowGradient", x, e, legacy, axis)
        check_pow_gradient(y, dy, out)
        dxf, def_ = empty(k.dev, out, w), empty(k.dev, out, w)
        k(dy.size, geometry.broadcast(out, x.shape, es), x, e, y, dy, dxf, def_, np.int64(dy.size))
        return sum_to(dxf, x.shape), sum_to(def_, es).reshape(e.shape)

    return run


def _caster(ctx: KernelContext) -> Any:
    """Cast launchers built on first use per (source, target) dtype: the pair is known only at run time."""
    built: dict[tuple[np.dtype, np.dtype], Any] = {}

    def get(src: np.dtype, dst: np.dtype) -> Any:
        k = built.get((src, dst))
        if k is None:
            flags = {"U_HALF": 1} if dst == np.float16 else {"U_BOOL": 1} if dst == np.bool_ else {}
            k = built[(src, dst)] = kernel(ctx, "unary", "cast", dtype=src, U=dst, **flags, **_int(src))
        return k

    return get


# The targets the cast kernels are built for; kaffa's Cast also goes to uint32/uint64 and ml_dtypes'
# narrow types (bfloat16, float8, int4, ...), which these refuse (the cpu fallback takes them).
_CAST_TARGETS = frozenset([*ALL_TYPES, *(np.dtype(t) for t in (np.int8, np.int16, np.uint8, np.uint16))])


def _cast_target(ctx: KernelContext) -> str | None:
    to = np.dtype(ctx.args["to"])
    return None if to in _CAST_TARGETS else f"Cast to {to.name} is not supported on opencl"


@table.kernel("Cast", dtypes=ALL_TYPES, supports=_cast_target)
def cast(ctx: KernelContext) -> RunFn:
    to = np.dtype(ctx.args["to"])
    get = _caster(ctx)
    dev = device(ctx)

    def run(x):
        y = empty(dev, x.shape, to)
        get(x.dtype, to)(x.size, x, y, np.int64(x.size))
        return (y,)

    return run


@table.kernel("CastGradient", dtypes=ALL_TYPES)
def cast_gradient(ctx: KernelContext) -> RunFn:
    get = _caster(ctx)
    dev = device(ctx)

    def run(x, dy):
        same_shape("CastGradient", x, dy, "X")
        dx = empty(dev, dy.shape, x.dtype)
        get(dy.dtype, x.dtype)(dy.size, dy, dx, np.int64(dy.size))
        return (dx,)

    return run
