"""ConstantFill, GivenTensor*Fill and the random fillers (GaussianFill, UniformFill, XavierFill,
MSRAFill) as CuPy array code. The argument parsing (output shape, cast value, given values, the
random fillers' parameters and clamp bounds) is kaffa.launch.fill's, as on the other backends.

Random fillers draw from one cuRAND generator per op (common.Rng; numpy's Generator on cudasim)
seeded from the op's seed: every run draws new values, and a seeded net recreated draws the same
sequence (cuRAND's, not numpy's: the statistics match, the samples do not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.fill import (
    F32,
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
)
from kaffa_cuda.kernels.common import Rng, Table, on_device, to_host, xp

table = Table()


def _shape_fn(ctx: KernelContext) -> ShapeFn:
    return shape_fn(ctx, to_host)


@table.kernel("ConstantFill", dtypes=ALL_TYPES)
def constant_fill(ctx: KernelContext) -> RunFn:
    dtype = out_dtype(ctx)
    value = constant_value(ctx, dtype)[()]
    shape, cp = _shape_fn(ctx), xp(ctx)
    return lambda x=None: (cp.full(shape(x), value, dtype=dtype),)


def _given_fill(fixed: np.dtype) -> Callable[[KernelContext], RunFn]:
    def build(ctx: KernelContext) -> RunFn:
        dtype, cp = out_dtype(ctx, fixed), xp(ctx)
        values = given_values(ctx, fixed, dtype)
        with on_device(ctx):
            dev_values = cp.asarray(values)  # uploaded once, to the op's device

        def fill(dims: tuple[int, ...]) -> Any:
            with on_device(ctx):  # given_run checks a fixed shape at build time, outside a run
                return dev_values.reshape(dims).copy()  # a fresh copy per run: no two runs share a buffer

        return given_run(ctx, _shape_fn(ctx), values, fill)

    return build


for _op, _dtype, _claims in GIVEN_FILLS:
    table.kernel(_op, dtypes=_claims)(_given_fill(_dtype))


def _random_fill(ctx: KernelContext, name: str, params: Params) -> RunFn:
    """A random filler: ``gaussian_fill`` draws mean + std * N(0, 1) from params (mean, std);
    ``uniform_fill`` draws lo + (hi - lo) * U[0, 1) clamped to [cmin, cmax] from params (lo, hi,
    cmin, cmax). Samples are float32 (float64 for a float64 output), rounded once to the output."""
    dtype, cp, rng = out_dtype(ctx), xp(ctx), Rng(ctx)
    sample = F64 if dtype == F64 else F32
    shape = _shape_fn(ctx)

    def launch(dims: tuple[int, ...], seed: int, stream: int, ps: tuple[float, ...]) -> Any:
        # (seed, stream) key opencl's counter-based RNG; the op's generator here advances per run.
        if name == "gaussian_fill":
            mean, std = ps
            out = rng.normal(dims, sample) * sample.type(std) + sample.type(mean)
            return out.astype(dtype, copy=False)
        lo, hi, cmin, cmax = ps
        out = (rng.uniform(dims, sample) * sample.type(hi - lo) + sample.type(lo)).astype(dtype, copy=False)
        return cp.clip(out, dtype.type(cmin), dtype.type(cmax))

    return random_run(ctx, shape, params, launch)


for _op, _build in random_fills(_random_fill).items():
    table.kernel(_op, dtypes=FLOAT_TYPES)(_build)
