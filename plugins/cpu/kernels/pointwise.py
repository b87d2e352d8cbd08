"""cpu kernels for the pointwise family (see kaffa.ops.pointwise): Where, Mod, trigonometric and
hyperbolic functions, Ceil, Floor, Round, Erf, Gelu, Reciprocal, BitShift, the bitwise ops, and the
gradient ops.

numpy computes float16 transcendentals in float32 and rounds once. erf has no numpy ufunc: it is
``math.erf`` per element (correctly rounded to about 1 ulp of float64), computed in float64.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_INT_TYPES, FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.math import legacy_b_shape
from kaffa.ops.pointwise import BITWISE_TYPES, MOD_TYPES, WHERE_TYPES
from kaffa.schema import check
from kaffa_cpu.kernels.math import reduce_to
from kaffa_cpu.kernels.nn import work_dtype

table = KernelTable("cpu")

_erf64 = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """erf elementwise, in float64."""
    return np.asarray(_erf64(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


def _broadcast(op: str, *arrays: np.ndarray) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = " and ".join(str(list(a.shape)) for a in arrays)
        check(False, f"{op}: shapes {shapes} do not broadcast")
        raise  # unreachable: check raised


# -- unary -----------------------------------------------------------------------------------------
_UFUNCS = {
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
    "Ceil": np.ceil,
    "Floor": np.floor,
    "Round": np.rint,  # halves to even
}


@table.kernel(*_UFUNCS, dtypes=FLOAT_TYPES)
def elementwise(ctx: KernelContext) -> RunFn:
    fn = _UFUNCS[ctx.op_type]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN / inf outside the domain
            return (np.asarray(fn(_wide(x))).astype(x.dtype, copy=False),)

    return run


@table.kernel("Reciprocal", dtypes=FLOAT_TYPES)
def reciprocal(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        with np.errstate(divide="ignore"):
            return (np.asarray(np.reciprocal(_wide(x))).astype(x.dtype, copy=False),)

    return run


@table.kernel("Erf", dtypes=FLOAT_TYPES)
def erf_(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (erf(x).astype(x.dtype, copy=False),)

    return run


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def _gelu_tanh_inner(x: np.ndarray) -> np.ndarray:
    return _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)


@table.kernel("Gelu", dtypes=FLOAT_TYPES)
def gelu(ctx: KernelContext) -> RunFn:
    fast = bool(ctx.args["fast_gelu"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if fast:
            # 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)): no cancellation for x << 0.
            xw = _wide(x)
            with np.errstate(over="ignore"):
                y = xw / (1.0 + np.exp(-2.0 * _gelu_tanh_inner(xw)))
        else:
            xd = x.astype(np.float64)
            y = 0.5 * xd * (1.0 + erf(xd * math.sqrt(0.5)))
        return (np.asarray(y).astype(x.dtype, copy=False),)

    return run


@table.kernel("BitwiseNot", dtypes=BITWISE_TYPES)
def bitwise_not(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(np.invert(x)),)

    return run


# -- binary ----------------------------------------------------------------------------------------
_BITWISE = {"BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor}


@table.kernel(*_BITWISE, dtypes=BITWISE_TYPES)
def bitwise(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    fn = _BITWISE[op]
    legacy, axis = bool(ctx.args["broadcast"]), int(ctx.args["axis"])

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        check(a.dtype == b.dtype, f"{op}: inputs must share one dtype, got {a.dtype}, {b.dtype}")
        if legacy:
            b = b.reshape(legacy_b_shape(op, a.shape, b.shape, axis))
        _broadcast(op, a, b)
        return (np.asarray(fn(a, b)),)

    return run


@table.kernel("BitShift", dtypes=ALL_INT_TYPES)
def bit_shift(ctx: KernelContext) -> RunFn:
    left = ctx.args["direction"] == "LEFT"

    def run(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
        check(x.dtype == y.dtype, f"BitShift: inputs must share one dtype, got {x.dtype}, {y.dtype}")
        _broadcast("BitShift", x, y)
        signed = x.dtype.kind == "i"
        # numpy (as C) leaves shifts outside [0, bit width) to the hardware: ONNX defines them.
        bad = y >= x.dtype.itemsize * 8
        if signed:
            bad |= y < 0
        ys = np.where(bad, 0, y).astype(y.dtype, copy=False)
        if left:
            if signed:  # wrap: shift the two's-complement bits
                u = np.dtype(f"u{x.dtype.itemsize}")
                out = np.left_shift(x.view(u), ys.view(u)).view(x.dtype)
            else:
                out = np.left_shift(x, ys)
            fill = x.dtype.type(0)
        else:
            out = np.right_shift(x, ys)
            fill = np.where(x < 0, x.dtype.type(-1), x.dtype.type(0)) if signed else x.dtype.type(0)
        return (np.asarray(np.where(bad, fill, out)).astype(x.dtype, copy=False),)

    return run


@table.kernel("Mod", dtypes=MOD_TYPES)
def mod(ctx: KernelContext) -> RunFn:
    divisor, follow, fmod = ctx.args["divisor"], bool(ctx.args["sign_follow_divisor"]), ctx.args["fmod"]

    def run(a: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        if b is None:
            check(divisor is not None, "Mod: give the divisor as the `divisor` argument or as input 1")
            check(a.dtype.kind in "iu", f"Mod: the `divisor` form takes integers, got {a.dtype}")
            d = np.asarray(divisor).astype(a.dtype)
            fn = np.mod if follow else np.fmod
        else:
            check(divisor is None, "Mod: give the divisor either as the `divisor` argument or as input 1")
            check(a.dtype == b.dtype, f"Mod: inputs must share one dtype, got {a.dtype}, {b.dtype}")
            _broadcast("Mod", a, b)
            d, fn = b, (np.fmod if fmod else np.mod)
        with np.errstate(divide="ignore", invalid="ignore"):  # integer x % 0 is 0, float fmod(x, 0) NaN
            if a.dtype.kind == "f":
                y = fn(_wide(a), _wide(d))
            else:
                y = fn(a, d)
        return (np.asarray(y).astype(a.dtype, copy=False),)

    return run


def _where_cond(op: str, c: np.ndarray, on_rows: bool, out_rank: int, rows: int | None) -> np.ndarray:
    check(c.dtype == np.bool_, f"{op}: condition C must be bool, got {c.dtype}")
    if not on_rows:
        return c
    check(
        c.ndim == 1 and out_rank >= 1 and c.shape[0] == rows,
        f"{op}: with broadcast_on_rows=1, C {list(c.shape)} must be 1-D with one entry per row of X and Y",
    )
    return c.reshape(c.shape + (1,) * (out_rank - 1))


@table.kernel("Where", dtypes=WHERE_TYPES)
def where(ctx: KernelContext) -> RunFn:
    on_rows = bool(ctx.args["broadcast_on_rows"])

    def run(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
        check(x.dtype == y.dtype, f"Where: X and Y must share one dtype, got {x.dtype}, {y.dtype}")
        xy = _broadcast("Where", x, y)
        cv = _where_cond("Where", c, on_rows, len(xy), xy[0] if xy else None)
        _broadcast("Where", cv, x, y)
        return (np.asarray(np.where(cv, x, y)),)

    return run


# -- gradient ops ----------------------------------------------------------------------------------
def _same_shape(op: str, a: np.ndarray, dy: np.ndarray, what: str) -> None:
    check(a.shape == dy.shape, f"{op}: {what} {list(a.shape)} and dY {list(dy.shape)} must have one shape")


def _gelu_grad(x: np.ndarray, fast: bool) -> np.ndarray:
    if fast:
        # s = 0.5 * (1 + tanh(u)), 1 - s = e * s and 0.5 * (1 - tanh(u)^2) = 2 * s * (1 - s).
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(-2.0 * _gelu_tanh_inner(x))
            s = 1.0 / (1.0 + e)
            one_minus_s = np.where(np.isinf(e), 1.0, e * s)
        return s + 2.0 * x * s * one_minus_s * _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
    xd = x.astype(np.float64)
    cdf = 0.5 * (1.0 + erf(xd * math.sqrt(0.5)))
    pdf = np.exp(-0.5 * xd * xd) / math.sqrt(2.0 * math.pi)
    return cdf + xd * pdf


# op -> (X's / Y's position among the two inputs, dX / dY as a function of it)
_GRADS = {
    "SinGradient": (0, np.cos),
    "CosGradient": (0, lambda x: -np.sin(x)),
    "TanGradient": (0, lambda x: 1.0 / np.square(np.cos(x))),
    "AsinGradient": (0, lambda x: 1.0 / np.sqrt(1.0 - x * x)),
    "AcosGradient": (0, lambda x: -1.0 / np.sqrt(1.0 - x * x)),
    "AtanGradient": (0, lambda x: 1.0 / (1.0 + x * x)),
    "SinhGradient": (1, np.cosh),
    "CoshGradient": (1, np.sinh),
    "AsinhGradient": (0, lambda x: 1.0 / np.sqrt(x * x + 1.0)),
    "AcoshGradient": (0, lambda x: 1.0 / np.sqrt(x * x - 1.0)),
    "AtanhGradient": (0, lambda x: 1.0 / (1.0 - x * x)),
    "ErfGradient": (0, lambda x: (2.0 / math.sqrt(math.pi)) * np.exp(-x * x)),
    "ReciprocalGradient": (0, lambda y: -y * y),
}


@table.kernel(*_GRADS, dtypes=FLOAT_TYPES)
def unary_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    pos, fn = _GRADS[op]
    what = "Y" if op == "ReciprocalGradient" else "X"

    def run(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray]:
        a, dy = (p, q) if pos == 0 else (q, p)
        _same_shape(op, a, dy, what)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            dx = fn(_wide(a)) * _wide(dy)
        return (np.asarray(dx).astype(dy.dtype, copy=False),)

    return run


@table.kernel("GeluGradient", dtypes=FLOAT_TYPES)
def gelu_gradient(ctx: KernelContext) -> RunFn:
    fast = bool(ctx.args["fast_gelu"])

    def run(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
        _same_shape("GeluGradient", x, dy, "X")
        dx = _gelu_grad(_wide(x), fast) * _wide(dy)
        return (np.asarray(dx).astype(dy.dtype, copy=False),)

    return run


@table.kernel("WhereGradient", dtypes=FLOAT_TYPES)
def where_gradient(ctx: KernelContext) -> RunFn:
    on_rows = bool(ctx.args["broadcast_on_rows"])

    def run(c: np.ndarray, x: np.ndarray, y: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = _broadcast("WhereGradient", x, y)
        cv = _where_cond("WhereGradient", c, on_rows, len(xy), xy[0] if xy else None)
        out = _broadcast("WhereGradient", cv, x, y)
        check(
            dz.shape == out,
            f"WhereGradient: dZ {list(dz.shape)} must have Where's output shape {list(out)}",
        )
        zero = dz.dtype.type(0)
        dx = np.where(cv, dz, zero)
        dy = np.where(cv, zero, dz)
        return (
            reduce_to(np.asarray(dx), x.shape).astype(dz.dtype, copy=False),
            reduce_to(np.asarray(dy), y.shape).astype(dz.dtype, copy=False),
        )

    return run
