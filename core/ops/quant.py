"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv, and BitCast (schemas and shape inference). None is differentiable.

Quantized tensors are integers (int8 ... uint16, int32, and ml_dtypes' int4/uint4/int2/uint2) or
narrow floats (ml_dtypes' float8 formats and float4_e2m1fn). A scale and zero point apply per
tensor (a scalar or a 1-element tensor), per slice along ``axis`` (a 1-D tensor of X.shape[axis]
elements) or, with ``block_size`` B > 0, per block of B consecutive elements along ``axis`` (a tensor
of X's rank whose ``axis`` dim is ceil(X.shape[axis] / B), the others X's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.ops.geometry import WINDOW_ARGS, canonicalize_window
from kaffa.schema import REQUIRED, SCHEMAS, Arg, ArgType, TensorInfo, check, define, norm_axis

F32 = np.dtype(np.float32)
INT32 = np.dtype(np.int32)
_NUMPY_QUANT = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16))
# Quantized types by name: numpy's and ml_dtypes' (the latter are only ever compared by name).
QUANT_INT_NAMES = frozenset({"int8", "uint8", "int16", "uint16", "int4", "uint4", "int2", "uint2"})
QUANT_FLOAT_NAMES = frozenset(
    {"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float4_e2m1fn"}
)
# DequantizeLinear also reads int32 (the accumulators of integer GEMMs).
DEQUANT_NAMES = QUANT_INT_NAMES | QUANT_FLOAT_NAMES | {"int32"}
EIGHT_BIT = (np.dtype(np.int8), np.dtype(np.uint8))


def is_quant_type(dtype: np.dtype | None) -> bool:
    return dtype is not None and np.dtype(dtype).name in (QUANT_INT_NAMES | QUANT_FLOAT_NAMES)


def _quant_float_input(dtype: np.dtype | None) -> bool:
    """What QuantizeLinear quantizes and DequantizeLinear produces: float16/32/64 or bfloat16."""
    return dtype is None or np.dtype(dtype).name in ("float16", "float32", "float64", "bfloat16")


# -- scale / zero-point layout ------------------------------------------------------------------------
def check_scale_shape(
    op: str,
    x_shape: Sequence[int | None],
    s_shape: Sequence[int | None],
    axis: int,
    block_size: int,
    what: str,
) -> None:
    """A scale (or zero point) shape is per tensor, per axis or blocked (see the module doc)."""
    if math.prod(d or 0 for d in s_shape) == 1 or len(s_shape) == 0:
        return
    rank = len(x_shape)
    ax = norm_axis(axis, rank, op)
    if block_size <= 0:
        check(
            len(s_shape) == 1 and s_shape[0] in (None, x_shape[ax]),
            f"{op}: {what} of shape {list(s_shape)} is neither per tensor nor per axis {ax} of X "
            f"{list(x_shape)} (which needs [{x_shape[ax]}])",
        )
        return
    want = [d if k != ax or d is None else -(-d // block_size) for k, d in enumerate(x_shape)]
    check(
        len(s_shape) == rank and all(a is None or b is None or a == b for a, b in zip(s_shape, want)),
        f"{op}: blocked {what} must have shape {want} for X {list(x_shape)}, axis {ax} and "
        f"block_size {block_size}, got {list(s_shape)}",
    )


def block_view(value: np.ndarray, x_shape: Sequence[int], axis: int, block_size: int) -> np.ndarray:
    """``value`` (a scale or zero point) laid out to broadcast against X of ``x_shape``."""
    if value.size == 1:
        return value.reshape(())
    ax = axis % len(x_shape)
    if block_size <= 0:
        shape = [1] * len(x_shape)
        shape[ax] = value.size
        return value.reshape(shape)
    return np.repeat(value, block_size, axis=ax).take(np.arange(x_shape[ax]), axis=ax)


def quant_out_dtype(op: str, args: Mapping[str, Any], zero_point: TensorInfo | None) -> np.dtype | None:
    """QuantizeLinear's output: ``to``, else the zero point's dtype, else uint8."""
    if args["to"] is not None:
        to = np.dtype(args["to"])
    elif zero_point is not None:
        if zero_point.dtype is None:
            return None
        to = zero_point.dtype
    else:
        to = np.dtype(np.uint8)
    check(
        is_quant_type(to),
        f"{op}: cannot quantize to {dtypes.name(to)} (int8, uint8, int16, uint16, int4, uint4, int2, uint2, "
        "float8_e4m3fn, float8_e4m3fnuz, float8_e5m2, float8_e5m2fnuz, float4_e2m1fn)",
    )
    return to


_AXIS_ARGS = [
    Arg("axis", ArgType.INT, 1, "the axis of per-axis and blocked scales (negative counts from the end)"),
    Arg("block_size", ArgType.INT, 0, "elements per block along axis (0: per tensor or per axis)"),
]


def _scale_checks(op: str, args: Mapping[str, Any], ins: list[TensorInfo]) -> None:
    check(args["block_size"] >= 0, f"{op}: block_size must be >= 0, got {args['block_size']}")
    x = ins[0]
    for i, what in ((1, "scale"), (2, "zero point")):
        if i < len(ins) and x.shape is not None and ins[i].shape is not None:
            check_scale_shape(op, x.shape, ins[i].shape, args["axis"], args["block_size"], what)
    if len(ins) > 2 and ins[1].shape is not None and ins[2].shape is not None:
        check(
            math.prod(ins[1].shape) == math.prod(ins[2].shape) == 1 or ins[1].shape == ins[2].shape,
            f"{op}: scale {list(ins[1].shape)} and zero point {list(ins[2].shape)} must have one shape",
        )


# -- QuantizeLinear / DequantizeLinear -------------------------------------------------------------
def _infer_quantize(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, scale = ins[0], ins[1]
    check(
        x.dtype is None or _quant_float_input(x.dtype) or x.dtype == INT32,
        f"QuantizeLinear: X must be a float or int32 tensor, got {dtypes.name(x.dtype)}",
    )
    check(
        scale.dtype is None or _quant_float_input(scale.dtype),
        f"QuantizeLinear: scale must be a float tensor, got {dtypes.name(scale.dtype)}",
    )
    _scale_checks("QuantizeLinear", args, ins)
    to = quant_out_dtype("QuantizeLinear", args, ins[2] if len(ins) > 2 else None)
    return [TensorInfo(x.shape, to)]


define(
    "QuantizeLinear",
    family="quant",
    doc="Y = saturate(round(X / scale) + zero_point): round half to even, then clamp to the output "
    "type's range. To the float8 formats Y = Cast(X / scale, saturate) (the zero point must be 0); to "
    "float4_e2m1fn Y = Cast(X / scale + zero_point). The output dtype is `to`, else the zero point's, "
    "else uint8. X / scale is computed in float32, or float64 when X or scale is float64.",
    inputs=(2, 3),
    input_docs=[("X", "float input"), ("scale", "scale(s)"), ("zero_point", "zero point(s) (optional)")],
    output_docs=[("Y", "quantized X")],
    args=[
        *_AXIS_ARGS,
        Arg("saturate", ArgType.BOOL, True, "to float8: clamp to the largest finite value"),
        Arg("to", ArgType.DTYPE, None, "the output dtype (default: the zero point's, else uint8)"),
    ],
    infer=_infer_quantize,
    dtypes=(*dtypes.FLOAT_TYPES, INT32),
    differentiable=False,
)


def _infer_dequantize(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, scale = ins[0], ins[1]
    check(
        x.dtype is None or x.dtype.name in DEQUANT_NAMES,
        f"DequantizeLinear: X must be a quantized type (int8 ... uint16, int32, int4, uint4, int2, uint2, "
        f"float8, float4), got {dtypes.name(x.dtype)}",
    )
    check(
        scale.dtype is None or _quant_float_input(scale.dtype),
        f"DequantizeLinear: scale must be a float tensor, got {dtypes.name(scale.dtype)}",
    )
    _scale_checks("DequantizeLinear", args, ins)
    to = np.dtype(args["to"]) if args["to"] is not None else scale.dtype
    check(
        to is None or _quant_float_input(to),
        f"DequantizeLinear: the output must be a float type, got {dtypes.name(to)}",
    )
    return [TensorInfo(x.shape, to)]


define(
    "DequantizeLinear",
    family="quant",
    doc="Y = (X - zero_point) * scale, computed in float64 and rounded once to the output dtype "
    "(`to`, else the scale's). For float8/float4 X the zero point is ignored (it must be 0).",
    inputs=(2, 3),
    input_docs=[("X", "quantized input"), ("scale", "scale(s)"), ("zero_point", "zero point(s) (optional)")],
    output_docs=[("Y", "dequantized X")],
    args=[*_AXIS_ARGS, Arg("to", ArgType.DTYPE, None, "the output dtype (default: the scale's)")],
    infer=_infer_dequantize,
    dtypes=(*_NUMPY_QUANT, INT32),
    differentiable=False,
)


def _infer_dynamic(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    check(
        x.dtype is None or x.dtype in dtypes.FLOAT_TYPES,
        f"DynamicQuantizeLinear: X must be float16/32/64, got {dtypes.name(x.dtype)}",
    )
    u8 = np.dtype(np.uint8)
    return [TensorInfo(x.shape, u8), TensorInfo((), x.dtype), TensorInfo((), u8)]


define(
    "DynamicQuantizeLinear",
    family="quant",
    doc="Quantizes X to uint8 with a scale and zero point from its range: lo = min(0, min X), "
    "hi = max(0, max X), scale = (hi - lo) / 255 (1 / 255 when hi == lo), zero_point = "
    "round(clamp(-lo / scale, 0, 255)), Y = clamp(round(X / scale) + zero_point, 0, 255); rounding "
    "half to even, in float32 (float64 for float64 X). The scale has X's dtype.",
    inputs=1,
    outputs=3,
    input_docs=[("X", "float input")],
    output_docs=[("Y", "uint8 X"), ("scale", "0-d scale"), ("zero_point", "0-d uint8 zero point")],
    infer=_infer_dynamic,
    dtypes=dtypes.FLOAT_TYPES,
    differentiable=False,
)


# -- integer matrix products -----------------------------------------------------------------------
def matmul_shape(op: str, a: Sequence[int | None], b: Sequence[int | None]) -> tuple[int | None, ...]:
    """numpy.matmul's output shape (1-D operands promoted and the added axis dropped)."""
    check(len(a) >= 1 and len(b) >= 1, f"{op}: A {list(a)} and B {list(b)} must have rank >= 1")
    a2 = list(a) if len(a) > 1 else [1, a[0]]
    b2 = list(b) if len(b) > 1 else [b[0], 1]
    check(
        a2[-1] is None or b2[-2] is None or a2[-1] == b2[-2],
        f"{op}: A {list(a)} and B {list(b)} do not match for a matrix product",
    )
    ba, bb = a2[:-2], b2[:-2]
    rank = max(len(ba), len(bb))
    ba, bb = [1] * (rank - len(ba)) + ba, [1] * (rank - len(bb)) + bb
    batch: list[int | None] = []
    for x, y in zip(ba, bb):
        check(x in (1, None) or y in (1, None) or x == y, f"{op}: batch dims of A {list(a)} and B {list(b)}")
        batch.append(y if x == 1 else x)
    out = [*batch, a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return tuple(out)


def _check_row_col(op: str, what: str, zp: TensorInfo, size: int | None) -> None:
    if zp.shape is None or math.prod(d or 0 for d in zp.shape) == 1:
        return
    check(
        (len(zp.shape) == 1 and zp.shape[0] in (None, size)) or size is None,
        f"{op}: {what} of shape {list(zp.shape)} must be a scalar or have {size} elements",
    )


def _infer_matmul_integer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    a, b = ins[0], ins[1]
    for k, t in enumerate(ins):
        check(
            t.dtype is None or t.dtype in _NUMPY_QUANT,
            f"MatMulInteger: input {k} must be int8, uint8, int16 or uint16, got {dtypes.name(t.dtype)}",
        )
    if a.shape is None or b.shape is None:
        return [TensorInfo(None, INT32)]
    out = matmul_shape("MatMulInteger", a.shape, b.shape)
    if len(ins) > 2:
        _check_row_col("MatMulInteger", "a_zero_point", ins[2], a.shape[-2] if len(a.shape) > 1 else 1)
    if len(ins) > 3:
        _check_row_col("MatMulInteger", "b_zero_point", ins[3], b.shape[-1] if len(b.shape) > 1 else 1)
    return [TensorInfo(out, INT32)]


define(
    "MatMulInteger",
    family="quant",
    doc="Y = (A - a_zero_point) @ (B - b_zero_point) as int32, numpy.matmul's shapes. a_zero_point is "
    "a scalar or one per row of A, b_zero_point a scalar or one per column of B.",
    inputs=(2, 4),
    input_docs=[
        ("A", "int8/uint8"),
        ("B", "int8/uint8"),
        ("a_zero_point", "optional"),
        ("b_zero_point", "optional"),
    ],
    output_docs=[("Y", "int32 product")],
    infer=_infer_matmul_integer,
    dtypes=_NUMPY_QUANT,
    differentiable=False,
)


def _scalar_or(op: str, what: str, t: TensorInfo, size: int | None) -> None:
    _check_row_col(op, what, t, size)


def qlinear_out_dtype(op: str, ins: list[TensorInfo]) -> np.dtype | None:
    """QLinear*: A / X, their zero points and the output share one 8-bit dtype."""
    quant = [ins[i] for i in (0, 2, 3, 5, 7)]
    known = [t.dtype for t in quant if t.dtype is not None]
    for d in known:
        check(d in EIGHT_BIT, f"{op}: quantized inputs must be int8 or uint8, got {dtypes.name(d)}")
    for i in (1, 4, 6):
        d = ins[i].dtype
        check(d is None or d in dtypes.FLOAT_TYPES, f"{op}: scales must be float, got {dtypes.name(d)}")
    return ins[7].dtype


def _infer_qlinear_matmul(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    to = qlinear_out_dtype("QLinearMatMul", ins)
    a, b = ins[0], ins[3]
    if a.shape is None or b.shape is None:
        return [TensorInfo(None, to)]
    rows = a.shape[-2] if len(a.shape) > 1 else 1
    cols = b.shape[-1] if len(b.shape) > 1 else 1
    for i, what, size in ((1, "a_scale", rows), (2, "a_zero_point", rows), (4, "b_scale", cols),
                          (5, "b_zero_point", cols), (6, "y_scale", 1), (7, "y_zero_point", 1)):  # fmt: skip
        _scalar_or("QLinearMatMul", what, ins[i], size)
    return [TensorInfo(matmul_shape("QLinearMatMul", a.shape, b.shape), to)]


define(
    "QLinearMatMul",
    family="quant",
    doc="Quantized matrix product: Y = saturate(round(((A - a_zp) @ (B - b_zp)) * (a_scale * b_scale / "
    "y_scale)) + y_zp), the integer product exact, the multiplier computed in the scales' dtype (as "
    "ONNX does), the rest in float64, rounding half to even. a_scale/a_zp: scalar or per row of A; "
    "b_scale/b_zp: scalar or per column of B; Y has y_zp's dtype.",
    inputs=8,
    input_docs=[
        ("A", "int8/uint8"),
        ("a_scale", ""),
        ("a_zero_point", ""),
        ("B", "int8/uint8"),
        ("b_scale", ""),
        ("b_zero_point", ""),
        ("y_scale", ""),
        ("y_zero_point", "sets Y's dtype"),
    ],
    output_docs=[("Y", "quantized product")],
    infer=_infer_qlinear_matmul,
    dtypes=EIGHT_BIT,
    differentiable=False,
)


# -- integer convolutions --------------------------------------------------------------------------
def conv_integer_geometry(
    op: str, args: Mapping[str, Any], x: TensorInfo, w: TensorInfo
) -> tuple[int | None, ...] | None:
    """The output shape of Conv on these shapes (Conv's own inference: one geometry everywhere)."""
    check(args["order"] == "NCHW", f"{op}: only NCHW is supported, got order {args['order']}")
    conv = SCHEMAS.get("Conv")
    out = conv.infer(args, [TensorInfo(x.shape, F32), TensorInfo(w.shape, F32)], 1)  # type: ignore[misc]
    return out[0].shape


_CONV_ARGS = [*WINDOW_ARGS, Arg("group", ArgType.INT, 1, "number of channel groups")]


def _infer_conv_integer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    for k, t in enumerate(ins):
        check(
            t.dtype is None or t.dtype in EIGHT_BIT,
            f"ConvInteger: input {k} must be int8 or uint8, got {dtypes.name(t.dtype)}",
        )
    shape = conv_integer_geometry("ConvInteger", args, ins[0], ins[1])
    m = ins[1].shape[0] if ins[1].shape is not None else None
    if len(ins) > 2:
        _check_row_col("ConvInteger", "x_zero_point", ins[2], 1)
    if len(ins) > 3:
        _check_row_col("ConvInteger", "w_zero_point", ins[3], m)
    return [TensorInfo(shape, INT32)]


define(
    "ConvInteger",
    family="quant",
    doc="Y = Conv(X - x_zero_point, W - w_zero_point) as int32 (exact), NCHW, with Conv's window "
    "arguments. x_zero_point is a scalar, w_zero_point a scalar or one per output channel.",
    inputs=(2, 4),
    input_docs=[
        ("X", "int8/uint8"),
        ("W", "int8/uint8 filter"),
        ("x_zero_point", "optional"),
        ("w_zero_point", "optional"),
    ],
    output_docs=[("Y", "int32 output")],
    args=_CONV_ARGS,
    canonicalize=canonicalize_window,
    infer=_infer_conv_integer,
    dtypes=EIGHT_BIT,
    differentiable=False,
)


def _infer_qlinear_conv(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    to = qlinear_out_dtype("QLinearConv", ins)
    shape = conv_integer_geometry("QLinearConv", args, ins[0], ins[3])
    m = ins[3].shape[0] if ins[3].shape is not None else None
    for i, what, size in ((1, "x_scale", 1), (2, "x_zero_point", 1), (4, "w_scale", m),
                          (5, "w_zero_point", m), (6, "y_scale", 1), (7, "y_zero_point", 1)):  # fmt: skip
        _scalar_or("QLinearConv", what, ins[i], size)
    if len(ins) > 8:
        b = ins[8]
        check(
            b.dtype is None or b.dtype == INT32,
            f"QLinearConv: bias must be int32, got {dtypes.name(b.dtype)}",
        )
        check(
            b.shape is None or m is None or (len(b.shape) == 1 and b.shape[0] in (None, m)),
            f"QLinearConv: bias has shape {list(b.shape or [])} for {m} output channels",
        )
    return [TensorInfo(shape, to)]


define(
    "QLinearConv",
    family="quant",
    doc="Quantized convolution: Y = saturate(round((Conv(X - x_zp, W - w_zp) + B) * (x_scale * w_scale / "
    "y_scale)) + y_zp), the integer part exact, the multiplier computed in the scales' dtype, rounding "
    "half to even; NCHW with Conv's window arguments. w_scale and w_zp: scalar or per output channel; "
    "B: optional int32 bias [M]; Y has y_zp's dtype.",
    inputs=(8, 9),
    input_docs=[
        ("X", "int8/uint8"),
        ("x_scale", ""),
        ("x_zero_point", ""),
        ("W", "int8/uint8 filter"),
        ("w_scale", ""),
        ("w_zero_point", ""),
        ("y_scale", ""),
        ("y_zero_point", "sets Y's dtype"),
        ("B", "int32 bias (optional)"),
    ],
    output_docs=[("Y", "quantized output")],
    args=_CONV_ARGS,
    canonicalize=canonicalize_window,
    infer=_infer_qlinear_conv,
    dtypes=EIGHT_BIT,
    differentiable=False,
)


# -- BitCast ---------------------------------------------------------------------------------------
def bit_width(dtype: np.dtype) -> int:
    dt = np.dtype(dtype)
    return dtypes.SUB_BYTE_BITS.get(dt.name, dt.itemsize * 8)


def bitcastable(dtype: np.dtype | None) -> bool:
    if dtype is None:
        return True
    return np.dtype(dtype).kind in "biuf" or dtypes.is_extended(dtype)


def _infer_bitcast(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, to = ins[0], np.dtype(args["to"])
    check(bitcastable(to), f"BitCast: cannot reinterpret as {dtypes.name(to)}")
    check(bitcastable(x.dtype), f"BitCast: cannot reinterpret {dtypes.name(x.dtype)}")
    if x.dtype is not None:
        check(
            bit_width(x.dtype) == bit_width(to),
            f"BitCast: {dtypes.name(x.dtype)} ({bit_width(x.dtype)} bits) and {dtypes.name(to)} "
            f"({bit_width(to)} bits) differ in width",
        )
    return [TensorInfo(x.shape, to)]


define(
    "BitCast",
    family="quant",
    doc="Reinterprets the bits of each element as dtype `to` of the same width (float32 <-> int32, "
    "int8 <-> uint8, bool -> uint8, bfloat16 <-> int16, ...). Little-endian bit patterns.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "X's bits as `to`, same shape")],
    args=[Arg("to", ArgType.DTYPE, REQUIRED, "the output dtype")],
    infer=_infer_bitcast,
    dtypes=(*dtypes.ALL_NUMERIC_TYPES, dtypes.BOOL),
    differentiable=False,
)
