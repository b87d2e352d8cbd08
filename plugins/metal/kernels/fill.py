"""metal kernels for the fill family (see kaffa.ops.fill).

The output shape is the `shape` argument, input 0's shape, or (input_as_shape) input 0's values,
read back to the host, with `extra_shape` appended. ConstantFill writes the value's bits as whole
u32 words and GivenTensor{,Int}Fill uploads its values once at build time and copies them per
run, so one kernel serves every dtype. Random fillers draw from wgsl/fill.wgsl's counter-based
RNG keyed by (op seed, run number): every run draws new values, and a seeded net recreated draws
the same sequence (not numpy's: the statistics match, the samples do not). The float64, int64 and
bool variants (GivenTensorDoubleFill, ...) are not registered: metal cannot hold their outputs.
The argument parsing is kaffa.launch.fill's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.fill import (
    F32,
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
from kaffa_metal.kernels.common import FLOATS, NUMERIC, device, empty, kernel

table = KernelTable("metal")

WORD = np.dtype(np.uint32)


def _words(nbytes: int) -> int:
    return -(-nbytes // 4)  # buffers are padded to 4 bytes


def _shape_fn(ctx: KernelContext) -> ShapeFn:
    if ctx.num_inputs and ctx.args["input_as_shape"]:
        dev = device(ctx)
        return shape_fn(ctx, dev.allocator.copyout)  # the host allocates the output
    return shape_fn(ctx, lambda x: x)


@table.kernel("ConstantFill", dtypes=NUMERIC)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = out_dtype(ctx)
    # The kernel stores the value's bits, a 16-bit value twice per word.
    word = int(np.full(4 // dtype.itemsize, constant_value(ctx, dtype), dtype).view(WORD)[0])
    shape = _shape_fn(ctx)
    k = kernel(ctx, "fill", "value_fill", dtype=WORD)

    def run(x: Any = None) -> tuple[Any]:
        y = empty(k.dev, shape(x), dtype)
        n = _words(y.nbytes)
        k(n, y, params=[n, word])
        return (y,)

    return run


def _given_fill(fixed: np.dtype) -> Callable[[KernelContext], RunFn]:
    def build(ctx: KernelContext) -> RunFn:
        dtype = out_dtype(ctx, fixed)
        values = given_values(ctx, fixed, dtype)
        k = kernel(ctx, "tensor", "copy", dtype=WORD)
        buf = k.dev.allocator.copyin(values)  # uploaded once

        def fill(dims: tuple[int, ...]) -> Any:
            y = empty(k.dev, dims, dtype)  # a fresh copy per run: no two runs share a buffer
            n = _words(y.nbytes)
            k(n, buf, y, params=[n])
            return y

        return given_run(ctx, _shape_fn(ctx), values, fill)

    return build


table.kernel("GivenTensorFill", dtypes=FLOATS)(_given_fill(F32))
table.kernel("GivenTensorIntFill", dtypes=(np.int32,))(_given_fill(np.dtype(np.int32)))


def _random_fill(ctx: KernelContext, name: str, params: Params) -> RunFn:
    """A random filler running fill.wgsl's ``name``. Float arguments go as f32 (the arithmetic
    type, also for f16)."""
    dtype = out_dtype(ctx)
    shape = _shape_fn(ctx)
    k = kernel(ctx, "fill", name, dtype=dtype)

    def launch(dims: tuple[int, ...], seed: int, stream: int, ps: tuple[float, ...]) -> Any:
        y = empty(k.dev, dims, dtype)
        n = y.size
        k(work_items(name, n), y, params=[n, seed, stream, *(float(p) for p in ps)])
        return y

    return random_run(ctx, shape, params, launch)


for _op, _build in random_fills(_random_fill).items():
    table.kernel(_op, dtypes=FLOATS)(_build)
