"""float64 references for the pointwise family (see kaffa.ops.pointwise): Where, Mod, the
trigonometric and hyperbolic functions, Ceil, Floor, Round, Erf, Gelu, Reciprocal, BitShift, the
bitwise ops, and the gradient ops. Integer inputs arrive as int64 (the runner's reference view)."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _phi_cdf(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _tanh_inner(x):
    return math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)


_UNARY = {
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
    "Round": np.round,  # numpy rounds halves to even
    "Erf": _erf,
    "Reciprocal": lambda x: 1.0 / x,
}


def _unary_ref(fn):
    def ref(args, x):
        with np.errstate(all="ignore"):
            return (np.asarray(fn(x), dtype=np.float64),)

    return ref


for _op, _fn in _UNARY.items():
    reference(_op)(_unary_ref(_fn))


@reference("Gelu")
def gelu(args, x):
    if args["fast_gelu"]:
        return (0.5 * x * (1.0 + np.tanh(_tanh_inner(x))),)
    return (x * _phi_cdf(x),)


def _int(x):
    """Integer-valued float64 masters (the goldens' view) as int64; int64 and bool stay."""
    return x.astype(np.int64) if x.dtype.kind == "f" else x


@reference("BitwiseNot")
def bitwise_not(args, x):
    # ~x on int64 is -x - 1; cast to the unsigned dtype under test that is the complement there too.
    x = _int(x)
    return (np.logical_not(x) if x.dtype == np.bool_ else ~x,)


def _legacy(args, a, b):
    if args.get("broadcast"):
        axis = args["axis"] if args["axis"] != -1 else a.ndim - b.ndim
        return b.reshape((1,) * axis + b.shape + (1,) * (a.ndim - axis - b.ndim))
    return b


@reference("BitwiseAnd")
def bitwise_and(args, a, b):
    a, b = _int(a), _int(b)
    return (a & _legacy(args, a, b),)


@reference("BitwiseOr")
def bitwise_or(args, a, b):
    a, b = _int(a), _int(b)
    return (a | _legacy(args, a, b),)


@reference("BitwiseXor")
def bitwise_xor(args, a, b):
    a, b = _int(a), _int(b)
    return (a ^ _legacy(args, a, b),)


def _shift(a, s, left):
    # Shifts by the bit width or more fall out of Python's exact integers naturally (all bits shifted
    # out; right shifts of negatives floor to -1); negative shifts are ONNX's out-of-range case.
    if s < 0:
        return 0 if left or a >= 0 else -1
    return a << s if left else a >> s


@reference("BitShift")
def bit_shift(args, x, y):
    # Python integers: no overflow; the comparison casts back to the dtype under test (wrapping,
    # which is two's complement for the signed dtypes).
    xs, ys = np.broadcast_arrays(x, y)
    left = args["direction"] == "LEFT"
    out = [_shift(int(a), int(s), left) for a, s in zip(xs.ravel(), ys.ravel())]
    return (np.array([v % 2**64 for v in out], dtype=np.uint64).reshape(xs.shape),)


def _int_mod(a, b, follow_divisor):
    """Remainder of Python ints with the sign of b if follow_divisor, else of a; x % 0 is 0."""
    if b == 0:
        return 0
    t = abs(a) % abs(b)
    t = t if a >= 0 else -t  # truncated (C) remainder: the sign of a
    if follow_divisor and t != 0 and (t < 0) != (b < 0):
        t += b
    return t


@reference("Mod")
def mod(args, a, b=None):
    if b is None:
        follow = bool(args["sign_follow_divisor"])
        b = np.asarray(args["divisor"], dtype=np.int64)
    else:
        follow = not args["fmod"]
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        # Float remainders are exact (the sign of b, for the goldens' float64 view of integer cases).
        with np.errstate(all="ignore"):
            return (np.mod(a, b) if follow else np.fmod(a, b),)
    a_, b_ = np.broadcast_arrays(a, b)
    out = [_int_mod(int(p), int(q), follow) for p, q in zip(a_.ravel(), b_.ravel())]
    return (np.array(out, dtype=np.int64).reshape(a_.shape),)


def _where_cond(args, c, out_rank):
    if args["broadcast_on_rows"]:
        return c.reshape(c.shape + (1,) * (out_rank - 1))
    return c


@reference("Where")
def where(args, c, x, y):
    rank = max(x.ndim, y.ndim)
    return (np.where(_where_cond(args, c, rank), x, y),)


# -- gradient ops ----------------------------------------------------------------------------------
def _sum_to(g, shape):
    """Sum g over the dims where an operand of ``shape`` was broadcast (numpy alignment)."""
    pad = (1,) * (g.ndim - len(shape)) + tuple(shape)
    dims = tuple(k for k, (p, d) in enumerate(zip(pad, g.shape)) if p == 1 and d != 1)
    return np.sum(g, axis=dims, keepdims=True).reshape(shape)


@reference("WhereGradient")
def where_gradient(args, c, x, y, dz):
    cv = _where_cond(args, c, max(x.ndim, y.ndim))
    cv = np.broadcast_to(cv, dz.shape)
    return (_sum_to(np.where(cv, dz, 0.0), x.shape), _sum_to(np.where(cv, 0.0, dz), y.shape))


_GRADS = {
    "SinGradient": (0, np.cos),
    "CosGradient": (0, lambda x: -np.sin(x)),
    "TanGradient": (0, lambda x: 1.0 + np.tan(x) ** 2),
    "AsinGradient": (0, lambda x: 1.0 / np.sqrt(1.0 - x**2)),
    "AcosGradient": (0, lambda x: -1.0 / np.sqrt(1.0 - x**2)),
    "AtanGradient": (0, lambda x: 1.0 / (1.0 + x**2)),
    "SinhGradient": (1, np.cosh),
    "CoshGradient": (1, np.sinh),
    "AsinhGradient": (0, lambda x: 1.0 / np.sqrt(x**2 + 1.0)),
    "AcoshGradient": (0, lambda x: 1.0 / np.sqrt(x**2 - 1.0)),
    "AtanhGradient": (0, lambda x: 1.0 / (1.0 - x**2)),
    "ErfGradient": (0, lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-(x**2))),
    "ReciprocalGradient": (0, lambda y: -(y**2)),
}


def _grad_ref(pos, fn):
    def ref(args, p, q):
        a, dy = (p, q) if pos == 0 else (q, p)
        return (fn(a) * dy,)

    return ref


for _op, (_pos, _fn) in _GRADS.items():
    reference(_op)(_grad_ref(_pos, _fn))


@reference("GeluGradient")
def gelu_gradient(args, dy, x):
    if args["fast_gelu"]:
        k = math.sqrt(2.0 / math.pi)
        t = np.tanh(_tanh_inner(x))
        d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * k * (1.0 + 3 * 0.044715 * x**2)
    else:
        d = _phi_cdf(x) + x * np.exp(-(x**2) / 2.0) / math.sqrt(2.0 * math.pi)
    return (d * dy,)
