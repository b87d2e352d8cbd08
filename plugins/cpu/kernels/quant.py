"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv, BitCast, and ``cast_array``: Cast's conversion, shared with the quantizers (the float8
saturation, the float8_e8m0fnu exponent rounding, casts between two ml_dtypes types).

Integer products accumulate in int64 (exact for any input kaffa takes); QLinear* requantize in
float64 and round half to even, as numpy's rint does.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.nn import conv_filter, filter_window
from kaffa.ops.quant import (
    DEQUANT_NAMES,
    bitcastable,
    block_view,
    check_scale_shape,
    matmul_shape,
    quant_out_dtype,
)
from kaffa.ops.unary import castable
from kaffa.schema import TensorInfo, check
from kaffa_cpu.kernels.nn import _conv_cf, _resolve

table = KernelTable("cpu")

_FLOAT8 = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"})
F32 = np.dtype(np.float32)


# -- Cast --------------------------------------------------------------------------------------------
def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """float8_e8m0fnu (2**(e - 127), no sign): the exponent of x as float32, rounded by ``round_mode``."""
    bits = np.asarray(x, F32).view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.uint16)
    mant = bits & 0x7FFFFF
    special = exp == 0xFF  # NaN and inf: e8m0's only special value is NaN
    if round_mode == "up":
        up = mant > 0
    elif round_mode == "down":
        up = np.zeros(exp.shape, bool)
    else:  # nearest: halfway (1.5 * 2**e) rounds up, except between subnormals
        up = (mant > 0x400000) | ((mant == 0x400000) & (exp > 0))
    if saturate:
        up &= exp != 0xFE  # 2**127 is the largest; without saturate it rounds up into NaN
    out = np.where(special, 0xFF, exp + up).astype(np.uint8)
    return out.view(dtypes.extended("float8_e8m0fnu"))


def cast_array(x: np.ndarray, to: np.dtype, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` as dtype ``to`` with Cast's semantics (see the Cast schema)."""
    to = np.dtype(to)
    if x.dtype == to:
        return x.copy()
    if to.name in _FLOAT8 and saturate:
        big = float(dtypes.ml_dtypes().finfo(to).max)
        wide = x if dtypes.is_float(x.dtype) and not dtypes.is_extended(x.dtype) else x.astype(F32)
        return np.clip(wide, -big, big).astype(to)
    if to.name == "float8_e8m0fnu":
        return _to_e8m0(x, saturate, round_mode)
    if to.kind == "b" or x.dtype.kind == "b":
        return x.astype(to)
    if dtypes.is_extended(x.dtype) and dtypes.is_extended(to):
        # ml_dtypes casts only some pairs directly: go through a type that holds every value of x.
        x = x.astype(np.int32 if dtypes.is_int(x.dtype) and dtypes.is_int(to) else F32)
    # numpy's float -> int conversion truncates toward zero, as C's does; ml_dtypes' 2/4-bit
    # integers then keep the low bits.
    return x.astype(to)


def cast_supports(ctx: KernelContext) -> str | None:
    if not castable(ctx.dtype):
        return f"cannot cast from {np.dtype(ctx.dtype).name}"
    return None


# -- QuantizeLinear / DequantizeLinear -------------------------------------------------------------
def _work(*arrays: np.ndarray) -> np.dtype:
    """float64 if any operand is float64, else float32 (float16 and bfloat16 compute in float32)."""
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else F32


def quantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    to: np.dtype,
    axis: int = 1,
    block_size: int = 0,
    saturate: bool = True,
) -> np.ndarray:
    """QuantizeLinear on arrays (also DynamicQuantizeLinear's last step)."""
    wt = _work(x, scale)
    s = block_view(scale.astype(wt), x.shape, axis, block_size)
    q = x.astype(wt) / s
    if to.name in _FLOAT8:
        return cast_array(q, to, saturate)
    zp = None if zero_point is None else block_view(zero_point.astype(wt), x.shape, axis, block_size)
    if to.name == "float4_e2m1fn":
        return cast_array(q if zp is None else q + zp, to)
    q = np.rint(q)
    if zp is not None:
        q = q + zp
    lo, hi = dtypes.int_range(to)
    return np.clip(q, lo, hi).astype(to)


def _quant_supports(ctx: KernelContext) -> str | None:
    x = ctx.dtype
    if x is not None and np.dtype(x).name not in ("float16", "float32", "float64", "bfloat16", "int32"):
        return f"QuantizeLinear: X of dtype {np.dtype(x).name}"
    return None


@table.kernel("QuantizeLinear", supports=_quant_supports)
def quantize_linear(ctx: KernelContext) -> RunFn:
    args = ctx.args
    zp_info = ctx.inputs[2] if ctx.num_inputs > 2 else None
    axis, block, saturate = int(args["axis"]), int(args["block_size"]), bool(args["saturate"])

    def run(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        to = quant_out_dtype("QuantizeLinear", args, zp_info if zp is None else _info(zp))
        _check_layout("QuantizeLinear", x, scale, zp, axis, block)
        return (quantize(x, scale, zp, to, axis, block, saturate),)

    return run


def _info(a: np.ndarray) -> TensorInfo:  # a run-time array as the schema's helpers see it
    return TensorInfo.of(a)


def _check_layout(
    op: str, x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, block: int
) -> None:
    check_scale_shape(op, x.shape, scale.shape, axis, block, "scale")
    if zp is not None:
        check_scale_shape(op, x.shape, zp.shape, axis, block, "zero point")
        check(
            scale.size == zp.size == 1 or scale.shape == zp.shape,
            f"{op}: scale {list(scale.shape)} and zero point {list(zp.shape)} must have one shape",
        )


def dequantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, to: np.dtype, axis: int, block: int
) -> np.ndarray:
    f64 = np.dtype(np.float64)
    s = block_view(scale.astype(f64), x.shape, axis, block)
    v = x.astype(f64)
    if zero_point is not None and x.dtype.name not in _FLOAT8 | {"float4_e2m1fn"}:
        v = v - block_view(zero_point.astype(f64), x.shape, axis, block)
    return (v * s).astype(to)


def _dequant_supports(ctx: KernelContext) -> str | None:
    if ctx.dtype is not None and np.dtype(ctx.dtype).name not in DEQUANT_NAMES:
        return f"DequantizeLinear: X of dtype {np.dtype(ctx.dtype).name}"
    return None


@table.kernel("DequantizeLinear", supports=_dequant_supports)
def dequantize_linear(ctx: KernelContext) -> RunFn:
    args = ctx.args
    axis, block = int(args["axis"]), int(args["block_size"])

    def run(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        _check_layout("DequantizeLinear", x, scale, zp, axis, block)
        to = np.dtype(args["to"]) if args["to"] is not None else scale.dtype
        return (dequantize(x, scale, zp, to, axis, block),)

    return run


@table.kernel("DynamicQuantizeLinear", dtypes=dtypes.FLOAT_TYPES)
def dynamic_quantize_linear(ctx: KernelContext) -> RunFn:
    u8 = np.dtype(np.uint8)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wt = _work(x)
        xw = x.astype(wt)
        hi = max(wt.type(0), xw.max()) if xw.size else wt.type(0)
        lo = min(wt.type(0), xw.min()) if xw.size else wt.type(0)
        scale = wt.type((hi - lo) if hi != lo else 1.0) / wt.type(255)
        zp = np.rint(np.clip(-lo / scale, 0, 255))
        y = np.clip(np.rint(xw / scale) + zp, 0, 255).astype(u8)
        return y, np.asarray(scale, x.dtype), np.asarray(zp, u8)

    return run


# -- integer products ------------------------------------------------------------------------------
_I64 = np.dtype(np.int64)


def _centered(a: np.ndarray, zp: np.ndarray | None, shape_for_vector: tuple[int, ...]) -> np.ndarray:
    """a - zp in int64; a vector zp is reshaped to ``shape_for_vector`` to broadcast."""
    out = a.astype(_I64)
    if zp is None:
        return out
    z = zp.astype(_I64)
    return out - (z.reshape(()) if z.size == 1 else z.reshape(shape_for_vector))


def _rows_cols(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes that lay a per-row vector along A's rows and a per-column one along B's columns."""
    return ((-1, 1) if a.ndim > 1 else (-1,)), (-1,)


def integer_matmul(
    a: np.ndarray, b: np.ndarray, a_zp: np.ndarray | None, b_zp: np.ndarray | None
) -> np.ndarray:
    """(A - a_zp) @ (B - b_zp), exact in int64."""
    rows, cols = _rows_cols(a, b)
    return np.matmul(_centered(a, a_zp, rows), _centered(b, b_zp, cols))


def _matmul_checks(op: str, a: np.ndarray, b: np.ndarray) -> None:
    matmul_shape(op, a.shape, b.shape)


@table.kernel("MatMulInteger", dtypes=(np.int8, np.uint8, np.int16, np.uint16))
def matmul_integer(ctx: KernelContext) -> RunFn:
    def run(a: np.ndarray, b: np.ndarray, a_zp=None, b_zp=None) -> tuple[np.ndarray]:
        _matmul_checks("MatMulInteger", a, b)
        return (integer_matmul(a, b, a_zp, b_zp).astype(np.int32),)

    return run


def requantize(acc: np.ndarray, multiplier: np.ndarray, y_zp: np.ndarray) -> np.ndarray:
    """saturate(round(acc * multiplier) + y_zp) in y_zp's dtype, rounding half to even."""
    y = np.rint(acc.astype(np.float64) * multiplier.astype(np.float64)) + y_zp.astype(np.float64).reshape(())
    lo, hi = dtypes.int_range(y_zp.dtype)
    return np.clip(y, lo, hi).astype(y_zp.dtype)


def _per(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return v.reshape(()) if v.size == 1 else v.reshape(shape)


@table.kernel("QLinearMatMul", dtypes=(np.int8, np.uint8))
def qlinear_matmul(ctx: KernelContext) -> RunFn:
    def run(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp) -> tuple[np.ndarray]:
        _matmul_checks("QLinearMatMul", a, b)
        check(y_scale.size == 1 and y_zp.size == 1, "QLinearMatMul: y_scale and y_zero_point must be scalars")
        acc = integer_matmul(a, b, a_zp, b_zp)
        rows, cols = _rows_cols(a, b)
        # The multiplier in the scales' dtype, as ONNX computes it.
        mult = _per(a_scale, rows) * _per(b_scale, cols) / y_scale.reshape(())
        return (requantize(acc, np.asarray(mult), y_zp),)

    return run


def integer_conv(ctx: KernelContext, x: np.ndarray, w: np.ndarray, windows: dict) -> np.ndarray:
    """Conv of two int64 arrays (NCHW), exact: kaffa's im2col convolution run in int64."""
    group = int(ctx.args["group"])
    _, _, kern = conv_filter(ctx.op_type, x, w, True, group)
    win = filter_window(ctx.op_type, ctx.args, kern, windows)
    outs, begins, ends = _resolve(win, tuple(x.shape[2:]))
    return _conv_cf(x, w, group, win, outs, begins, ends, _I64)


@table.kernel("ConvInteger", dtypes=(np.int8, np.uint8))
def conv_integer(ctx: KernelContext) -> RunFn:
    windows: dict = {}

    def run(x: np.ndarray, w: np.ndarray, x_zp=None, w_zp=None) -> tuple[np.ndarray]:
        check(x_zp is None or x_zp.size == 1, "ConvInteger: x_zero_point must be a scalar")
        xc = _centered(x, x_zp, (-1,))
        wc = _centered(w, w_zp, (-1,) + (1,) * (w.ndim - 1))
        return (integer_conv(ctx, xc, wc, windows).astype(np.int32),)

    return run


@table.kernel("QLinearConv", dtypes=(np.int8, np.uint8))
def qlinear_conv(ctx: KernelContext) -> RunFn:
    windows: dict = {}

    def run(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias=None) -> tuple[np.ndarray]:
        check(
            x_scale.size == x_zp.size == y_scale.size == y_zp.size == 1,
            "QLinearConv: x_scale, x_zero_point, y_scale and y_zero_point must be scalars",
        )
        per_channel = (-1,) + (1,) * (w.ndim - 1)
        acc = integer_conv(ctx, _centered(x, x_zp, (-1,)), _centered(w, w_zp, per_channel), windows)
        nsp = x.ndim - 2
        if bias is not None:
            check(
                bias.size == acc.shape[1],
                f"QLinearConv: bias has {bias.size} elements for {acc.shape[1]} channels",
            )
            acc = acc + bias.astype(_I64).reshape(-1, *(1,) * nsp)
        mult = x_scale.reshape(()) * _per(w_scale, (-1, *(1,) * nsp)) / y_scale.reshape(())
        return (requantize(acc, np.asarray(mult), y_zp),)

    return run


# -- BitCast ---------------------------------------------------------------------------------------
def _bitcast_supports(ctx: KernelContext) -> str | None:
    return None if bitcastable(ctx.dtype) else f"BitCast: X of dtype {np.dtype(ctx.dtype).name}"


@table.kernel("BitCast", supports=_bitcast_supports)
def bitcast(ctx: KernelContext) -> RunFn:
    to = np.dtype(ctx.args["to"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        # A copy: blobs never share buffers with their inputs' other views.
        return (np.array(x, order="C").view(to),)

    return run
