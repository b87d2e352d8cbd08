"""EQ, LT, GT, And, Or, Not: bool outputs, stored as uchar 0/1."""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import ALL_TYPES, BOOL
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa_opencl.kernels.common import NUMERIC, empty, kernel
from kaffa_opencl.kernels.math import broadcast_binary

table = KernelTable("opencl")

_NAMES = {"EQ": "eq", "LT": "lt", "GT": "gt", "And": "and_", "Or": "or_"}


@table.kernel("EQ", dtypes=ALL_TYPES)
@table.kernel("LT", "GT", dtypes=NUMERIC)
@table.kernel("And", "Or", dtypes=(BOOL,))
def binary(ctx: KernelContext) -> RunFn:
    launch = broadcast_binary(ctx, "logic", _NAMES[ctx.op_type], out_dtype=BOOL)
    return lambda a, b: (launch(a, b),)


@table.kernel("Not", dtypes=(BOOL,))
def not_(ctx: KernelContext) -> RunFn:
    k = kernel(ctx, "logic", "not_")

    def run(x):
        y = empty(k.dev, x.shape, BOOL)
        k(x.size, x, y, np.int64(x.size))
        return (y,)

    return run
