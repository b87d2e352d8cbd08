"""Cases for QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv, BitCast.

Scales and the dtype-setting inputs keep their own dtypes (``fixed_dtype_inputs``); the dtype under
test is the op's type T (X, or A). QuantizeLinear's cases give ``to`` (the reference sees zero points
as int64 and could not tell uint8 from int8). The QLinear* cases use power-of-two scales (an exact
multiplier in every float dtype, as the reference computes it in float64) and data whose results
stay inside both int8 and uint8, so the same case runs for both. The ml_dtypes cases (int4, float8,
...) exist only when ml_dtypes is installed.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, GEMM, Case, cases, ints, uniform

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
U8, I8 = np.dtype(np.uint8), np.dtype(np.int8)
I32 = np.dtype(np.int32)
QUANT_INTS = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32))


def _ext(*names: str) -> list[np.dtype]:
    """The ml_dtypes types named, or [] without ml_dtypes."""
    return [dtypes.extended(n) for n in names] if dtypes.extended_types() else []


@cases("QuantizeLinear")
def quantize_linear(rng):
    def q(name, x, scale, zp=None, to="UINT8", types=dtypes.FLOAT_TYPES, zp_dtype=None, **kw):
        inputs = [x, np.asarray(scale, np.float64)] + ([np.asarray(zp, np.float64)] if zp is not None else [])
        fixed = {1: F32} | ({2: zp_dtype or np.dtype(dtypes.parse(to))} if zp is not None else {})
        return Case("QuantizeLinear", name, inputs, {"to": to, **kw}, dtypes=types, fixed_dtype_inputs=fixed)

    out = [
        q("per_tensor_uint8", uniform(rng, (2, 3, 4), -3, 3), 0.05, 128),
        q("saturates_uint8", uniform(rng, (5, 6), -20, 20), 0.05, 100),
        q("no_zero_point", uniform(rng, (7,), 0, 10), 0.1),
        q("scalar_x", np.float64(1.7), 0.25, 3),
        q("per_axis_int8", uniform(rng, (2, 3, 4), -2, 2), [0.02, 0.05, 0.1], [-3, 0, 4], "INT8", axis=1),
        q(
            "negative_axis",
            uniform(rng, (3, 4), -2, 2),
            [0.02, 0.05, 0.1, 0.2],
            [1, 2, 3, 4],
            "INT8",
            axis=-1,
        ),
        q(
            "blocked_int16",
            uniform(rng, (3, 4), -50, 50),
            rng.uniform(0.001, 0.01, (3, 2)),
            ints(rng, (3, 2), -100, 100),
            "INT16",
            axis=1,
            block_size=2,
        ),
        q(
            "blocked_ragged_uint16",
            uniform(rng, (2, 5), 0, 50),
            rng.uniform(0.001, 0.01, (2, 3)),
            ints(rng, (2, 3), 0, 100),
            "UINT16",
            axis=1,
            block_size=2,
        ),
        q("int32_input", ints(rng, (4, 4), -300, 300), 2.0, 7, types=[I32]),
    ]
    if dtypes.extended_types():
        out += [
            q(
                "to_int4_per_axis",
                uniform(rng, (3, 4), -4, 4),
                [0.5, 1.0, 0.25],
                [0, 1, -1],
                "INT4",
                axis=0,
                zp_dtype=I8,
            ),
            q("to_uint4_saturates", uniform(rng, (3, 4), -4, 20), 1.0, 2, "UINT4", zp_dtype=U8),
            q("to_int2", uniform(rng, (6,), -3, 3), 1.0, 0, "INT2", zp_dtype=I8),
            q("to_float8e4m3fn", uniform(rng, (4, 5), -600, 600), 1.0, types=[F32, F64], to="FLOAT8E4M3FN"),
            q(
                "to_float8e4m3fn_no_saturate",
                uniform(rng, (4, 5), -600, 600),
                1.0,
                types=[F32, F64],
                to="FLOAT8E4M3FN",
                saturate=False,
            ),
            q("to_float8e5m2", uniform(rng, (4, 5), -1000, 1000), 0.5, to="FLOAT8E5M2"),
            q("to_float8e4m3fnuz", uniform(rng, (9,), -3, 3), 0.01, to="FLOAT8E4M3FNUZ"),
            q("to_float4e2m1", uniform(rng, (3, 4), -8, 8), 1.0, to="FLOAT4E2M1"),
        ]
    return out


@cases("DequantizeLinear")
def dequantize_linear(rng):
    def dq(name, x, scale, zp=None, types=QUANT_INTS, **kw):
        inputs = [x, np.asarray(scale, np.float64)] + ([np.asarray(zp, np.float64)] if zp is not None else [])
        return Case("DequantizeLinear", name, inputs, kw, dtypes=types, fixed_dtype_inputs={1: F32})

    out = [
        dq("per_tensor", ints(rng, (2, 3, 4), 0, 100), 0.1, 3),
        dq("no_zero_point", ints(rng, (6,), 0, 100), 0.5),
        dq("per_axis", ints(rng, (2, 3, 4), 0, 100), [0.1, 0.2, 0.3], [1, 2, 3], axis=1),
        dq(
            "blocked",
            ints(rng, (2, 4, 3), 0, 100),
            rng.uniform(0.01, 1, (2, 2, 3)),
            ints(rng, (2, 2, 3), 0, 9),
            axis=1,
            block_size=2,
        ),
        dq("to_float16", ints(rng, (3, 3), 0, 100), 0.01, 5, to="FLOAT16"),
        dq("to_double", ints(rng, (3, 3), 0, 100), 0.01, 5, to="DOUBLE"),
        dq("signed", ints(rng, (4, 4), -100, 100), 0.25, -7, types=[I8, np.dtype(np.int16), I32]),
    ]
    ext_int = _ext("int4", "uint4")
    if ext_int:
        out += [
            dq("int4_per_axis", ints(rng, (3, 4), 0, 8), [0.5, 1.0, 2.0], [0, 1, 7], types=ext_int, axis=0),
            dq("int2", ints(rng, (5,), 0, 2), 1.5, 1, types=_ext("int2", "uint2")),
            dq(
                "float8",
                np.array([0.0, 0.5, -1.5, 3.0, 448.0]),
                2.0,
                types=_ext("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"),
            ),
            dq("float4", np.array([0.0, 0.5, -1.5, 3.0, 6.0]), 2.0, types=_ext("float4_e2m1fn")),
        ]
    return out


@cases("DynamicQuantizeLinear")
def dynamic_quantize_linear(rng):
    def dy(name, x):
        return Case("DynamicQuantizeLinear", name, [x], num_outputs=3)

    return [
        dy("mixed_signs", uniform(rng, (3, 4), -2, 5)),
        dy("all_positive", uniform(rng, (6,), 0.5, 3)),  # lo is 0: the zero point is 0
        dy("all_negative", uniform(rng, (2, 5), -4, -1)),  # hi is 0: the zero point is 255
        dy("all_zero", np.zeros((4,))),  # hi == lo: scale 1/255
    ]


@cases("MatMulInteger")
def matmul_integer(rng):
    types = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16))

    def mm(name, a_shape, b_shape, zps=(), k=None):
        inputs = [ints(rng, a_shape, 0, 50), ints(rng, b_shape, 0, 50), *zps]
        red = k or a_shape[-1]
        return Case("MatMulInteger", name, inputs, op_class=GEMM, reduction=red, dtypes=types)

    return [
        mm("2d", (4, 3), (3, 2)),
        mm("scalar_zero_points", (4, 3), (3, 5), (np.array(7.0), np.array(12.0))),
        mm("per_row_col_zero_points", (3, 4), (4, 2), (ints(rng, (3,), 0, 20), ints(rng, (2,), 0, 20))),
        mm("a_zero_point_only", (2, 6), (6, 3), (np.array([9.0]),)),
        mm("batched", (2, 3, 4), (4, 5), (np.array(3.0), np.array(1.0))),
        mm("broadcast_batch", (2, 1, 3, 4), (3, 4, 2)),
        mm("vector_matrix", (4,), (4, 3)),
    ]


@cases("ConvInteger")
def conv_integer(rng):
    def cv(name, x_shape, w_shape, zps=(), **kw):
        inputs = [ints(rng, x_shape, 0, 30), ints(rng, w_shape, 0, 10), *zps]
        red = int(np.prod(w_shape[1:]))
        return Case("ConvInteger", name, inputs, kw, op_class=GEMM, reduction=red, dtypes=(I8, U8))

    return [
        cv("plain", (1, 1, 3, 3), (1, 1, 2, 2), (np.array(1.0),)),
        cv(
            "pads_per_channel_zp",
            (1, 2, 4, 4),
            (3, 2, 2, 2),
            (np.array(2.0), ints(rng, (3,), 0, 5)),
            pads=[1, 1, 1, 1],
        ),
        cv("strides_dilation", (2, 1, 6, 7), (2, 1, 3, 2), strides=[2, 1], dilations=[1, 2]),
        cv("group", (1, 4, 5, 5), (4, 2, 3, 3), (np.array(3.0), np.array(4.0)), group=2, pads=[1, 0, 1, 0]),
        cv("1d", (2, 3, 9), (2, 3, 3), (np.array(5.0),), strides=[2]),
    ]


def _qlinear(rng, op, a, b, b_scale, extra=(), types=(I8, U8), scale_dtype=F32, **kw):
    """(A, a_scale, a_zp, B, b_scale, b_zp, y_scale, y_zp[, bias]): centred data in [0, 15]."""
    inputs = [
        a,
        np.array(0.5),
        np.array(5.0),
        b,
        np.asarray(b_scale),
        np.array(5.0),
        np.array(2.0),
        np.array(10.0),
        *extra,
    ]
    fixed = {1: scale_dtype, 4: scale_dtype, 6: scale_dtype} | ({8: I32} if extra else {})
    return Case(op, kw.pop("name"), inputs, kw, op_class=EXACT, dtypes=types, fixed_dtype_inputs=fixed)


@cases("QLinearMatMul")
def qlinear_matmul(rng):
    def mm(name, a_shape, b_shape, b_scale=0.25, **kw):
        return _qlinear(
            rng,
            "QLinearMatMul",
            ints(rng, a_shape, 5, 21),
            ints(rng, b_shape, 5, 21),
            b_scale,
            name=name,
            **kw,
        )

    return [
        mm("2d", (2, 4), (4, 3)),
        mm("3d", (2, 2, 4), (2, 4, 3)),
        mm("float16_scales", (3, 4), (4, 2), scale_dtype=F16),
        mm("per_column_b_scale", (2, 4), (4, 3), b_scale=[0.25, 0.125, 0.0625]),
    ]


@cases("QLinearConv")
def qlinear_conv(rng):
    def cv(name, x_shape, w_shape, w_scale=0.25, bias=False, **kw):
        extra = (ints(rng, (w_shape[0],), -20, 20),) if bias else ()
        x, w = ints(rng, x_shape, 5, 21), ints(rng, w_shape, 5, 9)
        return _qlinear(rng, "QLinearConv", x, w, w_scale, extra, name=name, **kw)

    return [
        cv("1x1", (1, 1, 7, 7), (1, 1, 1, 1)),
        cv("3x3_pads_bias", (1, 2, 5, 5), (3, 2, 3, 3), w_scale=0.125, bias=True, pads=[1, 1, 1, 1]),
        cv("per_channel_scale", (2, 2, 4, 4), (2, 2, 2, 2), w_scale=[0.125, 0.0625], strides=[2, 2]),
    ]


@cases("BitCast")
def bitcast(rng):
    def bc(name, x, to, dtype):
        return Case("BitCast", name, [x], {"to": to}, op_class=EXACT, dtypes=[dtype], grad=False)

    return [
        bc("float32_to_int32", uniform(rng, (3, 4), -10, 10), "INT32", F32),
        bc("int32_to_float32", ints(rng, (5,), 0, 2**30), "FLOAT", I32),
        bc("float64_to_int64", uniform(rng, (2, 3), -1e6, 1e6), "INT64", F64),
        bc("float16_to_uint16", uniform(rng, (4,), -2, 2), "UINT16", F16),
        bc("int8_to_uint8", ints(rng, (2, 4), -128, 128), "UINT8", I8),
        bc("uint16_to_int16", ints(rng, (6,), 0, 65536), "INT16", np.dtype(np.uint16)),
        bc("uint32_to_float32", ints(rng, (3,), 0, 2**31), "FLOAT", np.dtype(np.uint32)),
        bc("bool_to_uint8", ints(rng, (5,), 0, 2), "UINT8", dtypes.BOOL),
        bc("scalar", np.float64(1.5), "INT32", F32),
    ]
