"""metal kernels for the fill family (see kaffa.ops.fill).

The output shape is the `shape` argument, input 0's shape, or (input_as_shape) input 0's values,
read back to the host, with `extra_shape` appended. ConstantFill writes the value's bits as whole
u32 words and GivenTensor{,Int}Fill uploads its values once at build time and copies them per
run, so one kernel serves every dtype. Random fillers draw from wgsl/fill.wgsl's counter-based
RNG keyed by (op seed, run number): every run draws new values, and a seeded net recreated draws
the same sequence (not numpy's: the statistics match, the samples do not). The float64, int64 and
bool variants (GivenTensorDoubleFill, ...) are not registered: metal cannot hold their outputs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check
from kaffa_metal.kernels.common import FLOATS, NUMERIC, device, empty, kernel

table = KernelTable("metal")

F32, F64, WORD = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint32)


def _out_dtype(ctx: KernelContext, fixed: np.dtype = F32) -> np.dtype:
    return np.dtype(ctx.args.get("dtype") or fixed)


def _words(nbytes: int) -> int:
    return -(-nbytes // 4)  # buffers are padded to 4 bytes


def _shape_fn(ctx: KernelContext) -> Callable[[Any], tuple[int, ...]]:
    """shape(input or None) -> the output shape, with the argument parsing done once here."""
    args: Mapping[str, Any] = ctx.args
    op, extra = ctx.op_type, tuple(int(d) for d in args["extra_shape"])
    check(all(d >= 0 for d in extra), f"{op}: extra_shape {list(extra)} has a negative dim")
    if ctx.num_inputs == 0:
        fixed = tuple(int(d) for d in args["shape"]) + extra
        check(all(d >= 0 for d in fixed), f"{op}: shape {list(fixed)} has a negative dim")
        return lambda _x: fixed
    if args["input_as_shape"]:
        dev = device(ctx)

        def from_values(x: Any) -> tuple[int, ...]:
            check(
                x.ndim == 1 and x.dtype.kind in "iu",
                f"{op}: with input_as_shape the input must be a 1-D int tensor, got {x.dtype}{list(x.shape)}",
            )
            dims = tuple(int(d) for d in dev.allocator.copyout(x))  # the host allocates the output
            check(all(d >= 0 for d in dims), f"{op}: shape {list(dims)} (input 0) has a negative dim")
            return dims + extra

        return from_values
    return lambda x: tuple(x.shape) + extra


@table.kernel("ConstantFill", dtypes=NUMERIC)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = _out_dtype(ctx)
    # `value` is a float argument: cast through float64 (1.7 -> 1 for ints); the kernel stores
    # its bits, a 16-bit value twice per word.
    value = np.asarray(ctx.args["value"], dtype=F64).astype(dtype)
    word = int(np.full(4 // dtype.itemsize, value, dtype).view(WORD)[0])
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
        op, dtype = ctx.op_type, _out_dtype(ctx, fixed)
        via = np.int64 if fixed.kind in "iu" else F64
        values = np.asarray(ctx.args["values"], dtype=via).astype(dtype)
        k = kernel(ctx, "tensor", "copy", dtype=WORD)
        buf = k.dev.allocator.copyin(values)  # uploaded once
        shape = _shape_fn(ctx)

        def fill(dims: tuple[int, ...]) -> Any:
            check(
                values.size == math.prod(dims),
                f"{op}: {values.size} values for shape {list(dims)} ({math.prod(dims)} elements)",
            )
            y = empty(k.dev, dims, dtype)  # a fresh copy per run: no two runs share a buffer
            n = _words(y.nbytes)
            k(n, buf, y, params=[n])
            return y

        if ctx.num_inputs == 0:
            dims = shape(None)
            fill(dims)  # a wrong count fails at net creation
            return lambda: (fill(dims),)
        return lambda x: (fill(shape(x)),)

    return build


table.kernel("GivenTensorFill", dtypes=FLOATS)(_given_fill(F32))
table.kernel("GivenTensorIntFill", dtypes=(np.int32,))(_given_fill(np.dtype(np.int32)))


# params(shape) -> the kernel's float arguments after (seed, stream), for one output shape.
Params = Callable[[tuple[int, ...]], tuple[float, ...]]


def _random_fill(ctx: KernelContext, name: str, params: Params) -> RunFn:
    """A random filler running fill.wgsl's ``name``; ``gaussian_fill`` makes two samples per
    invocation. Float arguments go as f32 (the arithmetic type, also for f16)."""
    dtype = _out_dtype(ctx)
    s = int(ctx.seed) % 2**64
    seed = (s ^ (s >> 32)) & 0xFFFFFFFF  # fold a 64-bit seed into the RNG's 32 bits
    runs = itertools.count()
    shape = _shape_fn(ctx)
    k = kernel(ctx, "fill", name, dtype=dtype)
    pairs = name == "gaussian_fill"

    def run(x: Any = None) -> tuple[Any]:
        dims = shape(x)
        y = empty(k.dev, dims, dtype)
        stream = next(runs) & 0xFFFFFFFF  # a new stream per run: new samples
        n = y.size
        k((n + 1) // 2 if pairs else n, y, params=[n, seed, stream, *(float(p) for p in params(dims))])
        return (y,)

    return run


def _inside(dtype: np.dtype, v: float, toward: float) -> float:
    """v rounded to dtype, stepped toward `toward` if rounding moved it past v: a clamp bound that
    storing to dtype cannot round across."""
    r = dtype.type(v)
    if (float(r) > v and toward < v) or (float(r) < v and toward > v):
        r = np.nextafter(r, dtype.type(toward))
    return float(r)


def _fan(op: str, shape: tuple[int, ...], dim: int) -> int:
    """size / shape[dim], Caffe2's fan (0 for an empty output, which needs no scale)."""
    check(len(shape) > dim, f"{op} needs an output of rank >= {dim + 1}, got shape {list(shape)}")
    return math.prod(shape) // shape[dim] if shape[dim] else 0


@table.kernel("GaussianFill", dtypes=FLOATS)
def gaussian_fill(ctx: KernelContext) -> RunFn:
    mean, std = float(ctx.args["mean"]), float(ctx.args["std"])
    return _random_fill(ctx, "gaussian_fill", lambda _dims: (mean, std))


@table.kernel("MSRAFill", dtypes=FLOATS)
def msra_fill(ctx: KernelContext) -> RunFn:
    def params(dims: tuple[int, ...]) -> tuple[float, ...]:
        fan_out = _fan("MSRAFill", dims, 1)
        return 0.0, math.sqrt(2.0 / fan_out) if fan_out else 0.0

    return _random_fill(ctx, "gaussian_fill", params)


@table.kernel("UniformFill", dtypes=FLOATS)
def uniform_fill(ctx: KernelContext) -> RunFn:
    lo, hi = float(ctx.args["min"]), float(ctx.args["max"])
    check(lo <= hi, f"UniformFill: min {lo} is above max {hi}")
    dtype = _out_dtype(ctx)
    # [min, max): the upper clamp is a dtype value below max (as on cpu).
    cmin = _inside(dtype, lo, hi)
    cmax = float(np.nextafter(dtype.type(hi), dtype.type(-np.inf)) if hi > lo else dtype.type(hi))
    return _random_fill(ctx, "uniform_fill", lambda _dims: (lo, hi, cmin, max(cmin, cmax)))


@table.kernel("XavierFill", dtypes=FLOATS)
def xavier_fill(ctx: KernelContext) -> RunFn:
    dtype = _out_dtype(ctx)

    def params(dims: tuple[int, ...]) -> tuple[float, ...]:
        fan_in = _fan("XavierFill", dims, 0)
        scale = math.sqrt(3.0 / fan_in) if fan_in else 0.0
        bound = _inside(dtype, scale, 0.0)  # keep samples inside [-scale, scale] after rounding
        return -scale, scale, -bound, bound

    return _random_fill(ctx, "uniform_fill", params)
