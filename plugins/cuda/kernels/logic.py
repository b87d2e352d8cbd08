"""EQ, LT, GT, And, Or (numpy or Caffe2's legacy broadcasting) and Not: bool outputs, as CuPy
array code."""

from __future__ import annotations

from kaffa.dtypes import ALL_TYPES, BOOL
from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import math as shared
from kaffa.ops.math import legacy_b_shape
from kaffa_cuda.kernels.common import NUMERIC, Table, xp

table = Table()

_UFUNCS = {"EQ": "equal", "LT": "less", "GT": "greater", "And": "logical_and", "Or": "logical_or"}


@table.kernel("EQ", dtypes=ALL_TYPES)
@table.kernel("LT", "GT", dtypes=NUMERIC)
@table.kernel("And", "Or", dtypes=(BOOL,))
def binary(ctx: KernelContext) -> RunFn:
    op, cp = ctx.op_type, xp(ctx)
    fn = getattr(cp, _UFUNCS[op])
    legacy, axis = bool(ctx.args.get("broadcast")), int(ctx.args.get("axis", -1))

    def run(a, b):
        shape, _ = shared.binary_geometry(op, tuple(a.shape), tuple(b.shape), legacy, axis)
        if legacy:
            b = b.reshape(legacy_b_shape(op, tuple(a.shape), tuple(b.shape), axis))
        return (cp.asarray(fn(a, b)).reshape(shape),)

    return run


@table.kernel("Not", dtypes=(BOOL,))
def not_(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    return lambda x: (cp.logical_not(x),)
