"""opencl kernels for the fill family (see kaffa.ops.fill).

The output shape is the `shape` argument, input 0's shape, or (input_as_shape) input 0's values,
read back to the host, with `extra_shape` appended. ConstantFill writes the value's raw bits, and
GivenTensor*Fill uploads its values once at build time and copies them per run, so both serve
every dtype of an item size with one kernel. Random fillers draw from the header's counter-based
RNG keyed by (op seed, run number): every run draws new values, and a seeded net recreated draws
the same sequence (not numpy's: the statistics match, the samples do not). The argument parsing
is kaffa.launch.fill's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.fill import (
    F64,
    GIVEN_FILLS,
    Params,
    ShapeFn,
    constant_value,
    given_run,
    given_values,
    out_dtype,
    random_fills,
    random_run,
    shape_fn,
    work_items,
)
from kaffa_opencl.kernels.common import device, empty, i64, kernel

table = KernelTable("opencl")

RAW = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _raw(dtype: np.dtype) -> Any:
    return RAW[dtype.itemsize]


def _shape_fn(ctx: KernelContext) -> ShapeFn:
    return shape_fn(ctx, lambda x: x.get())


@table.kernel("ConstantFill", dtypes=ALL_TYPES)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = out_dtype(ctx)
    value = constant_value(ctx, dtype).view(_raw(dtype))[()]  # the kernel stores its bits
    shape, dev = _shape_fn(ctx), device(ctx)
    k = kernel(ctx, "fill", "value_fill", dtype=_raw(dtype), RAW=1)

    def run(x: Any = None) -> tuple[Any]:
        y = empty(dev, shape(x), dtype)
        k(y.size, y, value, i64(y.size))
        return (y,)

    return run


def _given_fill(fixed: np.dtype) -> Callable[[KernelContext], RunFn]:
    def build(ctx: KernelContext) -> RunFn:
        dtype, dev = out_dtype(ctx, fixed), device(ctx)
        values = given_values(ctx, fixed, dtype)
        buf = dev.allocator.copyin(values) if values.size else None  # uploaded once
        k = kernel(ctx, "fill", "copy", dtype=_raw(dtype), RAW=1)

        def fill(dims: tuple[int, ...]) -> Any:
            y = empty(dev, dims, dtype)  # a fresh copy per run: no two runs share a buffer
            k(y.size, buf, y, i64(y.size))
            return y

        return given_run(ctx, _shape_fn(ctx), values, fill)

    return build


for _op, _dtype, _claims in GIVEN_FILLS:
    table.kernel(_op, dtypes=_claims)(_given_fill(_dtype))


def _random_fill(ctx: KernelContext, name: str, params: Params) -> RunFn:
    """A random filler running cl/fill.cl's ``name``. Float arguments are passed in the
    arithmetic type A (float for half)."""
    dtype, dev = out_dtype(ctx), device(ctx)
    a = np.float64 if dtype == F64 else np.float32
    shape = _shape_fn(ctx)
    k = kernel(ctx, "fill", name, dtype=dtype)

    def launch(dims: tuple[int, ...], seed: int, stream: int, ps: tuple[float, ...]) -> Any:
        y = empty(dev, dims, dtype)
        n = y.size
        k(work_items(name, n), y, np.uint32(seed), np.uint32(stream), *(a(p) for p in ps), i64(n))
        return y

    return random_run(ctx, shape, params, launch)


for _op, _build in random_fills(_random_fill).items():
    table.kernel(_op, dtypes=FLOAT_TYPES)(_build)
