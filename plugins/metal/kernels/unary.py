"""Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient and their gradient ops
(AbsGradient, ClipGradient, PowGradient, CastGradient).

Floats compute in float32 and round once on store (wgsl/unary.wgsl). Cast to a dtype metal cannot
hold (float64, int64, bool, ...) is refused at net creation with the allocator's reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.elementwise import check_pow_gradient, clip_bounds, exponent_shapes, same_shape
from kaffa.schema import check
from kaffa_metal.kernels.common import FLOATS, NUMERIC, empty, kernel
from kaffa_metal.kernels.elementwise import (
    SumTo,
    broadcast_table,
    grad_map,
    holds_outputs,
    unary_map,
)

table = KernelTable("metal")


def _u(ctx: KernelContext) -> dict[str, Any]:
    """wgsl/unary.wgsl names Cast's output type U in every build: default it to T."""
    return {"U": ctx.dtype or np.float32}


_MAPS = {"Exp": "exp_", "Log": "log_entry", "Sqrt": "sqrt_", "Sqr": "sqr"}


@table.kernel(*_MAPS, dtypes=FLOATS)
def elementwise(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", _MAPS[ctx.op_type], **_u(ctx))


@table.kernel("Abs", dtypes=NUMERIC)
def abs_(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "abs_", **_u(ctx))


@table.kernel("Negative", dtypes=NUMERIC)
def negative(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "negative", **_u(ctx))


@table.kernel("Scale", dtypes=FLOATS)
def scale(ctx: KernelContext) -> RunFn:
    return unary_map(ctx, "unary", "scale", float(ctx.args["scale"]), **_u(ctx))


@table.kernel("StopGradient", dtypes=NUMERIC)
def stop_gradient(ctx: KernelContext) -> RunFn:
    def run(x):
        return (x,)  # kernels never write into inputs, so sharing the array is safe

    return run


@table.kernel("AbsGradient", dtypes=FLOATS)
def abs_gradient(ctx: KernelContext) -> RunFn:
    return grad_map(ctx, "unary", "abs_gradient", what="X", **_u(ctx))


@table.kernel("Clip", dtypes=NUMERIC)
def clip(ctx: KernelContext) -> RunFn:
    lo, hi = clip_bounds(np.dtype(ctx.dtype), ctx.args["min"], ctx.args["max"])
    return unary_map(ctx, "unary", "clip", lo, hi, **_u(ctx))


@table.kernel("ClipGradient", dtypes=FLOATS)
def clip_gradient(ctx: KernelContext) -> RunFn:
    lo, hi = clip_bounds(np.dtype(ctx.dtype), ctx.args["min"], ctx.args["max"])
    return grad_map(ctx, "unary", "clip_gradient", lo, hi, **_u(ctx))


@table.kernel("Pow", dtypes=FLOATS)
def pow_(ctx: KernelContext) -> RunFn:
    scalar = kernel(ctx, "unary", "pow_scalar", **_u(ctx))
    tensor = kernel(ctx, "unary", "pow_tensor", **_u(ctx))
    exponent = ctx.args["exponent"]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(x, e=None):
        if e is None:
            check(exponent is not None, "Pow: give the exponent as the `exponent` argument or as input 1")
            y = empty(scalar.dev, x.shape, x.dtype)
            scalar(x.size, x, y, params=[x.size, float(exponent)])
            return (y,)
        check(exponent is None, "Pow: give the exponent either as the `exponent` argument or as input 1")
        ev, out = exponent_shapes("Pow", x, e, legacy, axis)
        y = empty(tensor.dev, out, x.dtype)
        tensor(y.size, x, e, y, params=broadcast_table(out, x.shape, ev))
        return (y,)

    return run


@table.kernel("PowGradient", dtypes=FLOATS)
def pow_gradient(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "unary", "pow_gradient", **_u(ctx))
    sum_to = SumTo(ctx)
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(x, e, y, dy):
        ev, out = exponent_shapes("PowGradient", x, e, legacy, axis)
        check_pow_gradient(y, dy, out)
        dx, de = empty(k.dev, out, np.float32), empty(k.dev, out, np.float32)
        k(dy.size, x, e, y, dy, dx, de, params=broadcast_table(out, x.shape, ev))
        pad = len(out) - len(x.shape)
        return (
            sum_to(dx, (1,) * pad + tuple(x.shape), x.shape),
            sum_to(de, (1,) * (len(out) - len(ev)) + tuple(ev), e.shape),
        )

    return run


class _Casts:
    """Cast kernels by (input, output) dtype, built on first use."""

    def __init__(self, ctx: KernelContext):
        self.ctx = ctx
        self.built: dict[tuple[np.dtype, np.dtype], Any] = {}

    def __call__(self, x: Any, to: np.dtype) -> Any:
        if x.dtype == to:
            return x  # nothing to convert; kernels never write into inputs, so sharing is safe
        k = self.built.get((x.dtype, to))
        if k is None:
            k = self.built[(x.dtype, to)] = kernel(self.ctx, "unary", "cast_", dtype=x.dtype, U=to)
        y = empty(k.dev, x.shape, to)
        k(x.size, x, y, params=[x.size])
        return y


@table.kernel("Cast", dtypes=NUMERIC, supports=holds_outputs)
def cast(ctx: KernelContext) -> RunFn:
    casts, to = _Casts(ctx), np.dtype(ctx.args["to"])
    return lambda x: (casts(x, to),)


@table.kernel("CastGradient", dtypes=NUMERIC, supports=holds_outputs)
def cast_gradient(ctx: KernelContext) -> RunFn:
    casts = _Casts(ctx)

    def run(x, dy):
        same_shape("CastGradient", x, dy, "X")
        return (casts(dy, x.dtype),)

    return run
