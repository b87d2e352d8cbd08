"""References for Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient and the
gradient ops AbsGradient, ClipGradient, PowGradient, CastGradient."""

from __future__ import annotations

import math

import numpy as np

from kaffa import dtypes
from kaffa_conformance.reference import reference


@reference("Exp")
def exp(args, x):
    return (np.exp(x),)


@reference("Log")
def log(args, x):
    return (np.log(x),)


@reference("Sqrt")
def sqrt(args, x):
    return (np.sqrt(x),)


@reference("Sqr")
def sqr(args, x):
    return (x * x,)


@reference("Abs")
def abs_(args, x):
    return (np.abs(x),)


@reference("Negative")
def negative(args, x):
    return (-x,)


@reference("Scale")
def scale(args, x):
    return (x * args["scale"],)


@reference("Clip")
def clip(args, x):
    lo, hi = args["min"], args["max"]
    if x.dtype.kind in "iu":  # the integers in [min, max]
        lo, hi = math.ceil(max(lo, -(2.0**63))), math.floor(min(hi, 2.0**63 - 1))
    return (np.minimum(np.maximum(x, lo), hi),)


def _exponent(args, x, e):
    """The exponent as an array that broadcasts with X the numpy way."""
    if args["broadcast"]:
        axis = args["axis"] if args["axis"] != -1 else x.ndim - e.ndim
        return e.reshape((1,) * axis + e.shape + (1,) * (x.ndim - axis - e.ndim))
    return e


@reference("Pow")
def pow_(args, x, e=None):
    ev = args["exponent"] if e is None else _exponent(args, x, e)
    if x.dtype.kind in "iu":  # C's (int)pow(x, e): the real power truncated toward zero
        return (np.trunc(np.power(x.astype(np.float64), np.asarray(ev, dtype=np.float64))).astype(np.int64),)
    return (x**ev,)


def _sum_to(g, shape, leading_pad):
    """Sum g over the dims where an operand of ``shape`` was broadcast; ``leading_pad`` is that
    operand's shape padded with 1s to g's rank."""
    dims = tuple(k for k, (p, d) in enumerate(zip(leading_pad, g.shape)) if p == 1 and d != 1)
    return np.sum(g, axis=dims, keepdims=True).reshape(shape)


@reference("PowGradient")
def pow_gradient(args, x, e, y, dy):
    ev = _exponent(args, x, e)
    dx = ev * x ** (ev - 1) * dy
    de = y * np.log(x) * dy
    pad_x = (1,) * (dx.ndim - x.ndim) + x.shape
    pad_e = ev.shape if args["broadcast"] else (1,) * (de.ndim - e.ndim) + e.shape
    return (_sum_to(dx, x.shape, pad_x), _sum_to(de, e.shape, pad_e))


@reference("Cast")
def cast(args, x):
    to = np.dtype(args["to"])
    if dtypes.is_extended(np.asarray(x).dtype):  # ml_dtypes inputs arrive in their own dtype
        x = np.asarray(x).astype(np.float64)
    if dtypes.is_extended(to):
        return (_cast_extended(x, to, args["saturate"], args["round_mode"]),)
    if to.kind == "b":
        return (x != 0,)
    if to.kind == "f":
        # Not rounded to `to`: the dtype tolerance covers the rounding, and finite differences stay exact.
        return (x.astype(np.float64),)
    return ((np.trunc(x) if x.dtype.kind == "f" else x).astype(np.int64),)


def _cast_extended(x: np.ndarray, to: np.dtype, saturate: bool, round_mode: str) -> np.ndarray:
    """Cast to an ml_dtypes type, exactly: the rounded value, in float64 (integers as int64)."""
    if dtypes.is_int(to):  # truncate, then keep the low bits (two's complement for the signed ones)
        lo, hi = dtypes.int_range(to)
        return (np.mod(np.trunc(x).astype(np.int64) - lo, hi - lo + 1) + lo).astype(np.int64)
    if to.name == "float8_e8m0fnu":  # 2**e, e in [-127, 127]; the sign is dropped
        mag = np.abs(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.floor(np.log2(mag))
            frac = mag / np.exp2(e)  # in [1, 2)
        if round_mode == "up":
            e = e + (frac > 1)
        elif round_mode == "nearest":
            e = e + (frac >= 1.5)
        e = np.clip(e, -127, 127 if saturate else 128)
        return np.where(~np.isfinite(x) | (e > 127), np.nan, np.exp2(e))
    if saturate and to.name.startswith("float8"):
        big = float(dtypes.ml_dtypes().finfo(to).max)
        x = np.clip(x, -big, big)
    return x.astype(to).astype(np.float64)  # ml_dtypes rounds to nearest even (float4 saturates)


@reference("StopGradient")
def stop_gradient(args, x):
    return (x,)


# -- gradient ops ----------------------------------------------------------------------------------
@reference("AbsGradient")
def abs_gradient(args, x, dy):
    return (np.where(x > 0, dy, np.where(x < 0, -dy, 0.0)),)


@reference("ClipGradient")
def clip_gradient(args, y, dy):
    return (np.where((y > args["min"]) & (y < args["max"]), dy, 0.0),)


@reference("CastGradient")
def cast_gradient(args, x, dy):
    return (dy.astype(x.dtype),)
