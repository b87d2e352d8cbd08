"""ConstantFill, GaussianFill, UniformFill, XavierFill, MSRAFill, GivenTensor{,Double,Int,Int64,Bool}Fill.

The output shape is the `shape` argument, input 0's shape, or (input_as_shape) input 0's values,
with `extra_shape` appended. Without an input the shape is fixed, so the constant fillers build
their tensor once and hand out a copy per run (a copy, so that no two runs share a buffer).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kaffa.dtypes import ALL_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.fill import GIVEN_FILLS, constant_value, fan, given_run, given_values, out_dtype, shape_fn
from kaffa.schema import check

table = KernelTable("cpu")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


def _host(x: np.ndarray) -> np.ndarray:
    return x  # input_as_shape: the values are already on the host


@table.kernel("ConstantFill", dtypes=ALL_TYPES)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = out_dtype(ctx)
    value = constant_value(ctx, dtype)
    shape = shape_fn(ctx, _host)
    if ctx.num_inputs == 0:
        full = np.full(shape(None), value, dtype)
        return lambda: (full.copy(),)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.full(shape(x), value, dtype),)

    return run


def _given_fill(fixed: np.dtype) -> Callable[[KernelContext], RunFn]:
    def build(ctx: KernelContext) -> RunFn:
        values = given_values(ctx, fixed, out_dtype(ctx, fixed))
        values.setflags(write=False)
        # A copy per run, so that no two runs share a buffer.
        return given_run(ctx, shape_fn(ctx, _host), values, lambda dims: values.reshape(dims).copy())

    return build


for _op, _dtype, _claims in GIVEN_FILLS:
    table.kernel(_op, dtypes=_claims)(_given_fill(_dtype))


Draw = Callable[[np.random.Generator, tuple[int, ...], np.dtype], np.ndarray]


def _random_fill(draw: Draw) -> Callable[[KernelContext], RunFn]:
    """A random filler: ``draw(rng, shape, sample_dtype)`` gives float samples, cast to the output
    dtype. The generator is made once per built op: every run draws new values, and an op with a
    random_seed draws the same sequence every time the net is created."""

    def build(ctx: KernelContext) -> RunFn:
        dtype = out_dtype(ctx)
        # float64 outputs get float64 samples; float16/float32 get float32 (faster, as precise).
        sample = F64 if dtype == F64 else F32
        rng = np.random.default_rng(ctx.seed)
        shape = shape_fn(ctx, _host)

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
    dtype = out_dtype(ctx)
    # min + (max - min) * u can round up to max itself in a narrow dtype; [min, max) excludes it.
    below_hi = np.nextafter(dtype.type(hi), dtype.type(-np.inf)) if hi > lo else dtype.type(hi)

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        out = rng.random(shape, dtype=dt)
        out *= hi - lo
        out += lo
        out = out.astype(dtype, copy=False)
        return np.minimum(out, below_hi, out=out)

    return _random_fill(draw)(ctx)


@table.kernel("XavierFill", dtypes=FLOAT_TYPES)
def xavier_fill(ctx: KernelContext) -> RunFn:
    dtype = out_dtype(ctx)

    def draw(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        fan_in = fan("XavierFill", shape, 0)
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
        fan_out = fan("MSRAFill", shape, 1)
        out = rng.standard_normal(shape, dtype=dt)
        out *= math.sqrt(2.0 / fan_out) if fan_out else 0.0
        return out

    return _random_fill(draw)(ctx)
