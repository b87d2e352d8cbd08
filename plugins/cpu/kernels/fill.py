"""ConstantFill, GaussianFill, UniformFill, XavierFill, MSRAFill, GivenTensor{,Double,Int,Int64,Bool}Fill.

The output shape is the `shape` argument, input 0's shape, or (input_as_shape) input 0's values,
with `extra_shape` appended. Without an input the shape is fixed, so the constant fillers build
their tensor once and hand out a copy per run (a copy, so that no two runs share a buffer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check

table = KernelTable("cpu")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


def _out_dtype(ctx: KernelContext, fixed: np.dtype = F32) -> np.dtype:
    """The `dtype` argument (already parsed to a numpy dtype) or the variant's own dtype."""
    return np.dtype(ctx.args.get("dtype") or fixed)


def _shape_fn(ctx: KernelContext) -> Callable[[np.ndarray | None], tuple[int, ...]]:
    """shape(input or None) -> the output shape, with the argument parsing done once here."""
    args: Mapping[str, Any] = ctx.args
    op, extra = ctx.op_type, tuple(int(d) for d in args["extra_shape"])
    check(all(d >= 0 for d in extra), f"{op}: extra_shape {list(extra)} has a negative dim")
    if ctx.num_inputs == 0:
        fixed = tuple(int(d) for d in args["shape"]) + extra
        check(all(d >= 0 for d in fixed), f"{op}: shape {list(fixed)} has a negative dim")
        return lambda _x: fixed
    if args["input_as_shape"]:

        def from_values(x: np.ndarray | None) -> tuple[int, ...]:
            assert x is not None
            check(
                x.ndim == 1 and x.dtype.kind in "iu",
                f"{op}: with input_as_shape the input must be a 1-D int tensor, got {x.dtype}{list(x.shape)}",
            )
            dims = tuple(int(d) for d in x)
            check(all(d >= 0 for d in dims), f"{op}: shape {list(dims)} (input 0) has a negative dim")
            return dims + extra

        return from_values
    return lambda x: x.shape + extra  # type: ignore[union-attr]


@table.kernel("ConstantFill", dtypes=ALL_TYPES)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = _out_dtype(ctx)
    # `value` is a float argument: cast through float64, so 1.7 -> 1 for ints, non-zero -> True.
    value = np.asarray(ctx.args["value"], dtype=F64).astype(dtype)
    shape = _shape_fn(ctx)
    if ctx.num_inputs == 0:
        full = np.full(shape(None), value, dtype)
        return lambda: (full.copy(),)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.full(shape(x), value, dtype),)

    return run


def _given_fill(fixed: np.dtype) -> Callable[[KernelContext], RunFn]:
    def build(ctx: KernelContext) -> RunFn:
        op, dtype = ctx.op_type, _out_dtype(ctx, fixed)
        # Integer values go through int64 so large int64 values stay exact.
        via = np.int64 if fixed.kind in "iu" else F64
        values = np.asarray(ctx.args["values"], dtype=via).astype(dtype)
        values.setflags(write=False)
        shape = _shape_fn(ctx)

        def fill(dims: tuple[int, ...]) -> np.ndarray:
            check(
                values.size == math.prod(dims),
                f"{op}: {values.size} values for shape {list(dims)} ({math.prod(dims)} elements)",
            )
            return values.reshape(dims)

        if ctx.num_inputs == 0:
            full = fill(shape(None))  # a wrong count fails at net creation
            return lambda: (full.copy(),)

        def run(x: np.ndarray) -> tuple[np.ndarray]:
            return (fill(shape(x)).copy(),)

        return run

    return build


for _op, _dtype, _claims in (
    ("GivenTensorFill", F32, FLOAT_TYPES),
    ("GivenTensorDoubleFill", F64, (F64,)),
    ("GivenTensorIntFill", np.dtype(np.int32), (np.dtype(np.int32),)),
    ("GivenTensorInt64Fill", np.dtype(np.int64), (np.dtype(np.int64),)),
    ("GivenTensorBoolFill", np.dtype(np.bool_), (np.dtype(np.bool_),)),
):
    table.kernel(_op, dtypes=_claims)(_given_fill(_dtype))


Draw = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


def _random_fill(draw: Draw) -> Callable[[KernelContext], RunFn]:
    """A random filler: ``draw(rng, shape, sample_dtype)`` gives float samples, cast to the output
    dtype. The generator is made once per built op: every run draws new values, and an op with a
    random_seed draws the same sequence every time the net is created."""

    def build(ctx: KernelContext) -> RunFn:
        dtype = _out_dtype(ctx)
        # float64 outputs get float64 samples; float16/float32 get float32 (faster, as precise).
        sample = F64 if dtype == F64 else F32
        rng = np.random.default_rng(ctx.seed)
        shape = _shape_fn(ctx)

        def run(x: np.ndarray | None = None) -> tuple[np.ndarray]:
            return (draw(rng, shape(x), sample).astype(dtype, copy=False),)

        return run

    return build


@table.kernel("GaussianFill", dtypes=FLOAT_TYPES)
def gaussian_fill(ctx: KernelContext) -> RunFn:
    mean, std = float(ctx.args["mean"]), float(ctx.args["std"])

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        out = rng.standard_normal(shape, dtype=dt)
        out *= std
        out += mean
        return out

    return _random_fill(draw)(ctx)


@table.kernel("UniformFill", dtypes=FLOAT_TYPES)
def uniform_fill(ctx: KernelContext) -> RunFn:
    lo, hi = float(ctx.args["min"]), float(ctx.args["max"])
    check(lo <= hi, f"UniformFill: min {lo} is above max {hi}")
    dtype = _out_dtype(ctx)
    # min + (max - min) * u can round up to max itself in a narrow dtype; [min, max) excludes it.
    below_hi = np.nextafter(dtype.type(hi), dtype.type(-np.inf)) if hi > lo else dtype.type(hi)

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        out = rng.random(shape, dtype=dt)
        out *= hi - lo
        out += lo
        out = out.astype(dtype, copy=False)
        return np.minimum(out, below_hi, out=out)

    return _random_fill(draw)(ctx)


def _fan(op: str, shape: tuple[int, ...], dim: int) -> int:
    """size / shape[dim], Caffe2's fan (0 for an empty output, which needs no scale)."""
    check(len(shape) > dim, f"{op} needs an output of rank >= {dim + 1}, got shape {list(shape)}")
    return math.prod(shape) // shape[dim] if shape[dim] else 0


@table.kernel("XavierFill", dtypes=FLOAT_TYPES)
def xavier_fill(ctx: KernelContext) -> RunFn:
    dtype = _out_dtype(ctx)

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        fan_in = _fan("XavierFill", shape, 0)
        scale = math.sqrt(3.0 / fan_in) if fan_in else 0.0
        out = rng.random(shape, dtype=dt)
        out *= 2 * scale
        out -= scale
        out = out.astype(dtype, copy=False)
        # Rounding to a narrow dtype can step past ±scale; keep the samples inside [-scale, scale].
        bound = dtype.type(scale)
        if float(bound) > scale:  # float(): numpy would round `scale` to the narrow dtype first
            bound = np.nextafter(bound, dtype.type(0))
        return np.clip(out, -bound, bound, out=out)

    return _random_fill(draw)(ctx)


@table.kernel("MSRAFill", dtypes=FLOAT_TYPES)
def msra_fill(ctx: KernelContext) -> RunFn:
    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        fan_out = _fan("MSRAFill", shape, 1)
        out = rng.standard_normal(shape, dtype=dt)
        out *= math.sqrt(2.0 / fan_out) if fan_out else 0.0
        return out

    return _random_fill(draw)(ctx)
