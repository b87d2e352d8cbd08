"""References for QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv and BitCast.

Quantized outputs are exact: integers are rounded half to even and clamped; the float8/float4
formats are rounded by ml_dtypes from the float64 value (one rounding). ml_dtypes inputs (int4,
float8, ...) arrive in their own dtype and are read here as float64; every other input arrives as
float64 / int64 (kaffa_conformance.reference), so what depends on an input's dtype comes from the
arguments: QuantizeLinear's cases give `to`, the QLinear* cases keep their results inside the
output type's range (the references do not clamp: they cannot know it) and use power-of-two scales,
so that the requantization multiplier is exact in any float dtype.
"""

from __future__ import annotations

import itertools

import numpy as np

from kaffa import dtypes
from kaffa_conformance.reference import reference

_FLOAT8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _layout(v: np.ndarray, shape: tuple[int, ...], axis: int, block: int) -> np.ndarray:
    """A scale / zero point as a full array of X's shape (element by element, for clarity)."""
    v = _f64(v)
    if v.size == 1:
        return np.full(shape, v.reshape(-1)[0])
    ax = axis % len(shape)
    out = np.empty(shape)
    for idx in itertools.product(*(range(d) for d in shape)):
        if block <= 0:
            out[idx] = v.reshape(-1)[idx[ax]]
        else:
            src = list(idx)
            src[ax] = idx[ax] // block
            out[idx] = v[tuple(src)]
    return out


def _round_to(v: np.ndarray, name: str, saturate: bool = True) -> np.ndarray:
    """v rounded to the ml_dtypes float type ``name``, back in float64."""
    dt = dtypes.extended(name)
    if saturate and name in _FLOAT8:
        big = float(dtypes.ml_dtypes().finfo(dt).max)
        v = np.clip(v, -big, big)
    return v.astype(dt).astype(np.float64)


def _out_dtype(args, zp) -> np.dtype:
    if args["to"] is not None:
        return np.dtype(args["to"])
    return np.dtype(np.uint8) if zp is None else np.asarray(zp).dtype  # ml_dtypes zero points only


@reference("QuantizeLinear")
def quantize_linear(args, x, scale, zp=None):
    to = _out_dtype(args, zp)
    shape = np.shape(x)
    q = _f64(x) / _layout(scale, shape, args["axis"], args["block_size"])
    z = 0.0 if zp is None else _layout(zp, shape, args["axis"], args["block_size"])
    if to.name in _FLOAT8:
        return (_round_to(q, to.name, args["saturate"]),)
    if to.name == "float4_e2m1fn":
        return (_round_to(q + z, to.name),)
    lo, hi = dtypes.int_range(to)
    return (np.clip(np.round(q) + z, lo, hi),)  # np.round: half to even


@reference("DequantizeLinear")
def dequantize_linear(args, x, scale, zp=None):
    shape = np.shape(x)
    v = _f64(x)
    if zp is not None and np.asarray(x).dtype.name not in (*_FLOAT8, "float4_e2m1fn"):
        v = v - _layout(zp, shape, args["axis"], args["block_size"])
    return (v * _layout(scale, shape, args["axis"], args["block_size"]),)


@reference("DynamicQuantizeLinear")
def dynamic_quantize_linear(args, x):
    x = _f64(x)
    hi, lo = max(0.0, float(x.max())), min(0.0, float(x.min()))
    scale = (hi - lo) / 255 if hi != lo else 1 / 255
    zp = np.round(np.clip(-lo / scale, 0, 255))
    return (np.clip(np.round(x / scale) + zp, 0, 255), np.float64(scale), np.float64(zp))


def _center(v, zp, vector_shape):
    v = np.asarray(v).astype(np.int64)
    if zp is None:
        return v
    z = np.asarray(zp).astype(np.int64)
    return v - (z.reshape(()) if z.size == 1 else z.reshape(vector_shape))


def _matmul(a, b, a_zp, b_zp):
    rows = (-1, 1) if np.ndim(a) > 1 else (-1,)
    return np.matmul(_center(a, a_zp, rows), _center(b, b_zp, (-1,)))


@reference("MatMulInteger")
def matmul_integer(args, a, b, a_zp=None, b_zp=None):
    return (_matmul(a, b, a_zp, b_zp),)


def _requantize(acc, mult, y_zp):
    return np.round(acc * mult) + float(np.asarray(y_zp).reshape(()))


@reference("QLinearMatMul")
def qlinear_matmul(args, a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    acc = _matmul(a, b, a_zp, b_zp).astype(np.float64)
    rows = (-1, 1) if np.ndim(a) > 1 else (-1,)
    # The multiplier as the op defines it: in the scales' own dtype.
    sa, sb, sy = (np.asarray(s) for s in (a_scale, b_scale, y_scale))
    sa = sa.reshape(()) if sa.size == 1 else sa.reshape(rows)
    sb = sb.reshape(()) if sb.size == 1 else sb.reshape(-1)
    return (_requantize(acc, np.asarray(sa * sb / sy.reshape(())).astype(np.float64), y_zp),)


def _per_dim(values, n):
    """A window argument per dim: one value stands for all of them."""
    values = list(values or [])
    return values * n if len(values) == 1 else (values or [0] * n)


def _conv(x, w, args):
    """Direct N-d convolution (NCHW), int64, loops over output positions."""
    n = x.shape[0]
    assert not args.get("legacy_pad"), "the quant references take explicit pads"
    m, cg = w.shape[:2]
    kern = w.shape[2:]
    nsp = len(kern)
    group = args["group"]
    strides, dil = _per_dim(args["strides"], nsp), _per_dim(args["dilations"], nsp)
    pads = _per_dim(args["pads"], 2 * nsp)  # [begins..., ends...]
    xp = np.pad(x, [(0, 0), (0, 0), *((pads[i], pads[i + nsp]) for i in range(nsp))])
    outs = [(xp.shape[2 + i] - dil[i] * (kern[i] - 1) - 1) // strides[i] + 1 for i in range(nsp)]
    y = np.zeros((n, m, *outs), np.int64)
    mg = m // group
    for o in itertools.product(*(range(s) for s in outs)):
        window = tuple(
            slice(o[i] * strides[i], o[i] * strides[i] + dil[i] * (kern[i] - 1) + 1, dil[i])
            for i in range(nsp)
        )
        for g in range(group):
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg), *window)]  # [N, C/g, *K]
            filt = w[g * mg : (g + 1) * mg]  # [M/g, C/g, *K]
            y[(slice(None), slice(g * mg, (g + 1) * mg), *o)] = np.tensordot(
                patch, filt, axes=(list(range(1, 2 + nsp)), list(range(1, 2 + nsp)))
            )
    return y


@reference("ConvInteger")
def conv_integer(args, x, w, x_zp=None, w_zp=None):
    wc = _center(w, w_zp, (-1,) + (1,) * (np.ndim(w) - 1))
    return (_conv(_center(x, x_zp, (-1,)), wc, args),)


@reference("QLinearConv")
def qlinear_conv(args, x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias=None):
    nsp = np.ndim(x) - 2
    wc = _center(w, w_zp, (-1,) + (1,) * (np.ndim(w) - 1))
    acc = _conv(_center(x, x_zp, (-1,)), wc, args).astype(np.float64)
    if bias is not None:
        acc = acc + _f64(bias).reshape(-1, *(1,) * nsp)
    ws = np.asarray(w_scale)
    ws = ws.reshape(()) if ws.size == 1 else ws.reshape(-1, *(1,) * nsp)
    mult = np.asarray(x_scale).reshape(()) * ws / np.asarray(y_scale).reshape(())
    return (_requantize(acc, np.asarray(mult).astype(np.float64), y_zp),)


@reference("BitCast")
def bitcast(args, x):
    to = np.dtype(args["to"])
    x = np.asarray(x)
    width = to.itemsize
    if x.dtype.kind == "f" and width > 1:  # a float of `to`'s width, widened exactly to float64
        src = x.astype(f"f{width}")
    elif x.dtype.kind == "b":
        src = x
    else:  # an integer (no float has 8 bits): wrapping to `to`'s width gives its bits, signed or not
        src = x.astype(np.int64).astype(f"i{width}")
    out = src.view(to)
    return (out if to.kind == "b" else out.astype(np.float64 if to.kind == "f" else np.int64),)
