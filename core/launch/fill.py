"""Host-side argument parsing of the fill family (see kaffa.ops.fill), shared by the device
backends (cpu included): the output shape, the cast value of ConstantFill, GivenTensor*Fill's values, and the
float parameters of the random fillers (including the clamp bounds that keep rounded samples in
range). Launching the kernels and reading a shape back from the device stay in the plugins.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, RunFn
from kaffa.schema import check

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# shape(input or None) -> the output shape.
ShapeFn = Callable[[Any], tuple[int, ...]]
# params(shape) -> a random filler's float arguments after (seed, stream), for one output shape.
Params = Callable[[tuple[int, ...]], tuple[float, ...]]
# fill(shape) -> one output of GivenTensor*Fill.
FillFn = Callable[[tuple[int, ...]], Any]
# launch(shape, seed, stream, params) -> one output of a random filler.
LaunchFn = Callable[[tuple[int, ...], int, int, tuple[float, ...]], Any]


# GivenTensor*Fill's variants: (op, the dtype its values are, the dtypes a kernel claims).
GIVEN_FILLS: tuple[tuple[str, np.dtype, tuple[np.dtype, ...]], ...] = (
    ("GivenTensorFill", F32, FLOAT_TYPES),
    ("GivenTensorDoubleFill", F64, (F64,)),
    ("GivenTensorIntFill", np.dtype(np.int32), (np.dtype(np.int32),)),
    ("GivenTensorInt64Fill", np.dtype(np.int64), (np.dtype(np.int64),)),
    ("GivenTensorBoolFill", np.dtype(np.bool_), (np.dtype(np.bool_),)),
)


def out_dtype(ctx: KernelContext, fixed: np.dtype = F32) -> np.dtype:
    """The output dtype: the `dtype` argument, else ``fixed``."""
    return np.dtype(ctx.args.get("dtype") or fixed)


def shape_fn(ctx: KernelContext, read: Callable[[Any], Sequence[int]]) -> ShapeFn:
    """shape(input or None) -> the output shape, with the argument parsing done once here.
    ``read(x)`` brings a device tensor's values to the host (for input_as_shape)."""
    args: Mapping[str, Any] = ctx.args
    op, extra = ctx.op_type, tuple(int(d) for d in args["extra_shape"])
    check(all(d >= 0 for d in extra), f"{op}: extra_shape {list(extra)} has a negative dim")
    if ctx.num_inputs == 0:
        fixed = tuple(int(d) for d in args["shape"]) + extra
        check(all(d >= 0 for d in fixed), f"{op}: shape {list(fixed)} has a negative dim")
        return lambda _x: fixed
    if args["input_as_shape"]:

        def from_values(x: Any) -> tuple[int, ...]:
            check(
                x.ndim == 1 and x.dtype.kind in "iu",
                f"{op}: with input_as_shape the input must be a 1-D int tensor, got {x.dtype}{list(x.shape)}",
            )
            dims = tuple(int(d) for d in read(x))  # the shape must reach the host to allocate
            check(all(d >= 0 for d in dims), f"{op}: shape {list(dims)} (input 0) has a negative dim")
            return dims + extra

        return from_values
    return lambda x: tuple(x.shape) + extra


def constant_value(ctx: KernelContext, dtype: np.dtype) -> np.ndarray:
    """ConstantFill's `value` (a float argument) as a 0-d array of ``dtype``: cast through
    float64, so 1.7 -> 1 for ints, non-zero -> True."""
    return np.asarray(ctx.args["value"], dtype=F64).astype(dtype)


def given_values(ctx: KernelContext, fixed: np.dtype, dtype: np.dtype) -> np.ndarray:
    """GivenTensor*Fill's `values` as ``dtype``; integer values (``fixed`` an integer type) go
    through int64 so large int64 values stay exact."""
    via = np.int64 if fixed.kind in "iu" else F64
    return np.asarray(ctx.args["values"], dtype=via).astype(dtype)


def given_run(
    ctx: KernelContext, shape: ShapeFn, values: np.ndarray, fill: Callable[[tuple[int, ...]], Any]
) -> RunFn:
    """GivenTensor*Fill's run function: checks the value count against the output shape, then
    ``fill(dims)`` makes the output. Without inputs the shape is fixed and checked now, so a
    wrong count fails at net creation."""
    op = ctx.op_type

    def checked(dims: tuple[int, ...]) -> Any:
        check(
            values.size == math.prod(dims),
            f"{op}: {values.size} values for shape {list(dims)} ({math.prod(dims)} elements)",
        )
        return fill(dims)

    if ctx.num_inputs == 0:
        dims = shape(None)
        checked(dims)
        return lambda: (checked(dims),)
    return lambda x: (checked(shape(x)),)


def fold_seed(seed: int) -> int:
    """A 64-bit op seed folded into the RNG's 32 bits."""
    s = int(seed) % 2**64
    return (s ^ (s >> 32)) & 0xFFFFFFFF


def random_run(
    ctx: KernelContext,
    shape: ShapeFn,
    params: Params,
    launch: Callable[[tuple[int, ...], int, int, tuple[float, ...]], Any],
) -> RunFn:
    """A random filler's run function: ``launch(dims, seed, stream, params)`` makes one output.
    The RNG is keyed by (op seed, run number): every run draws new samples, and a seeded net
    recreated draws the same sequence."""
    seed = fold_seed(ctx.seed)
    runs = itertools.count()

    def run(x: Any = None) -> tuple[Any]:
        dims = shape(x)
        stream = next(runs) & 0xFFFFFFFF  # a new stream per run: new samples
        return (launch(dims, seed, stream, params(dims)),)

    return run


def work_items(name: str, n: int) -> int:
    """How many invocations the fill kernel ``name`` needs for ``n`` samples: ``gaussian_fill``
    makes two per invocation."""
    return (n + 1) // 2 if name == "gaussian_fill" else n


def inside(dtype: np.dtype, v: float, toward: float) -> float:
    """v rounded to dtype, stepped toward `toward` if rounding moved it past v: a clamp bound that
    storing to dtype cannot round across."""
    r = dtype.type(v)
    if (float(r) > v and toward < v) or (float(r) < v and toward > v):
        r = np.nextafter(r, dtype.type(toward))
    return float(r)


def fan(op: str, shape: tuple[int, ...], dim: int) -> int:
    """size / shape[dim], Caffe2's fan (0 for an empty output, which needs no scale)."""
    check(len(shape) > dim, f"{op} needs an output of rank >= {dim + 1}, got shape {list(shape)}")
    return math.prod(shape) // shape[dim] if shape[dim] else 0


def gaussian_params(ctx: KernelContext) -> Params:
    """GaussianFill's (mean, std) for the ``gaussian_fill`` kernel."""
    mean, std = float(ctx.args["mean"]), float(ctx.args["std"])
    return lambda _dims: (mean, std)


def msra_params(ctx: KernelContext) -> Params:
    """MSRAFill's (0, sqrt(2 / fan_out)) for the ``gaussian_fill`` kernel."""

    def params(dims: tuple[int, ...]) -> tuple[float, ...]:
        fan_out = fan("MSRAFill", dims, 1)
        return 0.0, math.sqrt(2.0 / fan_out) if fan_out else 0.0

    return params


def uniform_params(ctx: KernelContext) -> Params:
    """UniformFill's (min, max, clamp min, clamp max) for the ``uniform_fill`` kernel: [min, max),
    the upper clamp a dtype value below max (as on cpu)."""
    lo, hi = float(ctx.args["min"]), float(ctx.args["max"])
    check(lo <= hi, f"UniformFill: min {lo} is above max {hi}")
    dtype = out_dtype(ctx)
    cmin = inside(dtype, lo, hi)
    cmax = float(np.nextafter(dtype.type(hi), dtype.type(-np.inf)) if hi > lo else dtype.type(hi))
    return lambda _dims: (lo, hi, cmin, max(cmin, cmax))


def xavier_params(ctx: KernelContext) -> Params:
    """XavierFill's (-scale, scale, clamp bounds) for the ``uniform_fill`` kernel, scale =
    sqrt(3 / fan_in)."""
    dtype = out_dtype(ctx)

    def params(dims: tuple[int, ...]) -> tuple[float, ...]:
        fan_in = fan("XavierFill", dims, 0)
        scale = math.sqrt(3.0 / fan_in) if fan_in else 0.0
        bound = inside(dtype, scale, 0.0)  # keep samples inside [-scale, scale] after rounding
        return -scale, scale, -bound, bound

    return params


def random_fills(
    random_fill: Callable[[KernelContext, str, Params], RunFn],
) -> dict[str, Callable[[KernelContext], RunFn]]:
    """The random filler ops' kernel builders, as ``random_fill(ctx, kernel name, params)``: the
    Gaussian ones (GaussianFill, MSRAFill) run ``gaussian_fill``, the uniform ones (UniformFill,
    XavierFill) ``uniform_fill``."""
    ops: dict[str, tuple[str, Callable[[KernelContext], Params]]] = {
        "GaussianFill": ("gaussian_fill", gaussian_params),
        "MSRAFill": ("gaussian_fill", msra_params),
        "UniformFill": ("uniform_fill", uniform_params),
        "XavierFill": ("uniform_fill", xavier_params),
    }

    def builder(name: str, params: Callable[[KernelContext], Params]) -> Callable[[KernelContext], RunFn]:
        return lambda ctx: random_fill(ctx, name, params(ctx))

    return {op: builder(name, params) for op, (name, params) in ops.items()}
