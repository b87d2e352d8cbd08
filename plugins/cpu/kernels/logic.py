"""EQ, LT, GT, And, Or, Not."""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, BOOL
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.math import legacy_b_shape

table = KernelTable("cpu")

_BINARY = {
    "EQ": np.equal,
    "LT": np.less,
    "GT": np.greater,
    "And": np.logical_and,
    "Or": np.logical_or,
}


@table.kernel("EQ", dtypes=(*ALL_NUMERIC_TYPES, BOOL))
@table.kernel("LT", "GT", dtypes=ALL_NUMERIC_TYPES)
@table.kernel("And", "Or", dtypes=(BOOL,))
def binary(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    fn = _BINARY[op]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        if legacy:
            b = b.reshape(legacy_b_shape(op, a.shape, b.shape, axis))
        return (np.asarray(fn(a, b)),)  # ufuncs on 0-d arrays return numpy scalars

    return run


@table.kernel("Not", dtypes=(BOOL,))
def not_(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(np.logical_not(x)),)

    return run
