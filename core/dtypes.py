"""The mapping between Caffe2's TensorProto.DataType numbers and numpy dtypes.

Besides numpy's own dtypes, kaffa holds the narrow *storage* types numpy lacks (bfloat16, the float8
and float4 formats, 4- and 2-bit integers) as the numpy dtypes of the optional ``ml_dtypes``
package (``pip install 'kaffa[onnx]'``). It is imported only when such a type is first asked for,
so kaffa imports and runs without it; kernels that take these types say so explicitly (see
``is_extended``), every other kernel keeps refusing them through its dtype claims.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from kaffa.proto import TensorProto

DT = TensorProto.DataType

# Every DataType numpy can hold. BYTE reads back as uint8, as in Caffe2.
_TO_NUMPY: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.BYTE: np.dtype(np.uint8),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.STRING: np.dtype(object),
    TensorProto.UINT32: np.dtype(np.uint32),  # kaffa extensions: Caffe2 has no unsigned 32/64-bit type
    TensorProto.UINT64: np.dtype(np.uint64),
}
_FROM_NUMPY: dict[np.dtype, int] = {dt: code for code, dt in _TO_NUMPY.items() if code != TensorProto.BYTE}

FLOAT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
INT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.int32), np.dtype(np.int64))
NUMERIC_TYPES: tuple[np.dtype, ...] = FLOAT_TYPES + INT_TYPES
BOOL = np.dtype(np.bool_)
ALL_TYPES: tuple[np.dtype, ...] = (*NUMERIC_TYPES, BOOL)
# Every integer dtype numpy has, for ops ONNX defines on them (int8 ... uint64). uint32 and uint64 have
# no Caffe2 TensorProto.DataType: kaffa numbers them UINT32 / UINT64 (extensions, see kaffa.proto).
SIGNED_INT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.int8), np.dtype(np.int16), *INT_TYPES)
UNSIGNED_INT_TYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)
)
ALL_INT_TYPES: tuple[np.dtype, ...] = (*SIGNED_INT_TYPES, *UNSIGNED_INT_TYPES)
ALL_NUMERIC_TYPES: tuple[np.dtype, ...] = (*FLOAT_TYPES, *ALL_INT_TYPES)


# -- ml_dtypes storage types ------------------------------------------------------------------------
# TensorProto.DataType -> the ml_dtypes type name (which is also the numpy dtype's name).
EXTENDED_NAMES: dict[int, str] = {
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT8E4M3FN: "float8_e4m3fn",
    TensorProto.FLOAT8E4M3FNUZ: "float8_e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8_e5m2",
    TensorProto.FLOAT8E5M2FNUZ: "float8_e5m2fnuz",
    TensorProto.FLOAT8E8M0: "float8_e8m0fnu",
    TensorProto.FLOAT4E2M1: "float4_e2m1fn",
    TensorProto.INT4: "int4",
    TensorProto.UINT4: "uint4",
    TensorProto.INT2: "int2",
    TensorProto.UINT2: "uint2",
}
_EXTENDED_CODES: dict[str, int] = {n: code for code, n in EXTENDED_NAMES.items()}
EXTENDED_INT_NAMES = frozenset({"int4", "uint4", "int2", "uint2"})
EXTENDED_FLOAT_NAMES = frozenset(_EXTENDED_CODES) - EXTENDED_INT_NAMES
# Bits per element of the sub-byte types (numpy stores each in one byte; raw_data packs them).
SUB_BYTE_BITS: dict[str, int] = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}


def ml_dtypes() -> ModuleType:
    """The ml_dtypes module; ValueError (naming the extra to install) when it is missing."""
    try:
        import ml_dtypes as mod
    except ImportError:
        raise ValueError(
            "bfloat16, float8, float4 and 2/4-bit integer tensors need the ml_dtypes package: "
            "pip install 'kaffa[onnx]'"
        ) from None
    return mod


def extended(name: str) -> np.dtype:
    """The numpy dtype of an ml_dtypes storage type, by name ("bfloat16", "int4", ...)."""
    if name not in _EXTENDED_CODES:
        raise ValueError(f"{name!r} is not an ml_dtypes storage type ({', '.join(_EXTENDED_CODES)})")
    return np.dtype(getattr(ml_dtypes(), name))


def extended_types() -> tuple[np.dtype, ...]:
    """Every ml_dtypes storage type, or () when ml_dtypes is not installed."""
    try:
        return tuple(extended(n) for n in _EXTENDED_CODES)
    except ValueError:
        return ()


def is_extended(dtype: np.dtype | type | str | None) -> bool:
    """True for an ml_dtypes storage type. Decided by name, so it never imports ml_dtypes: an array
    of such a type exists only once ml_dtypes has been imported."""
    if dtype is None:
        return False
    try:
        return np.dtype(dtype).name in _EXTENDED_CODES
    except TypeError:
        return False


def is_int(dtype: np.dtype | type | str) -> bool:
    """An integer dtype: numpy's (int8 ... uint64) or ml_dtypes' 2/4-bit ones."""
    dt = np.dtype(dtype)
    return dt.kind in "iu" or dt.name in EXTENDED_INT_NAMES


def is_float(dtype: np.dtype | type | str) -> bool:
    """A floating dtype: numpy's (float16/32/64) or ml_dtypes' (bfloat16, float8, float4)."""
    dt = np.dtype(dtype)
    return dt.name in EXTENDED_FLOAT_NAMES or (dt.kind == "f" and not is_extended(dt))


def int_range(dtype: np.dtype | type | str) -> tuple[int, int]:
    """(min, max) of an integer dtype, ml_dtypes' 2/4-bit ones included."""
    dt = np.dtype(dtype)
    if dt.name in EXTENDED_INT_NAMES:
        bits = SUB_BYTE_BITS[dt.name]
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dt.name[0] == "i" else (0, (1 << bits) - 1)
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def to_numpy(data_type: int) -> np.dtype:
    """numpy dtype for a TensorProto.DataType number (ml_dtypes' for the narrow storage types)."""
    code = int(data_type)
    if code in EXTENDED_NAMES:
        return extended(EXTENDED_NAMES[code])
    try:
        return _TO_NUMPY[code]
    except KeyError:
        raise ValueError(f"TensorProto.DataType {data_type} has no numpy equivalent") from None


def from_numpy(dtype: np.dtype | type | str) -> int:
    """TensorProto.DataType number for a numpy dtype (strings and bytes arrays map to STRING)."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return TensorProto.STRING
    if dt.name in _EXTENDED_CODES:
        return _EXTENDED_CODES[dt.name]
    if not dt.isnative:  # '>f4' on a little-endian host is still FLOAT
        dt = dt.newbyteorder("=")
    try:
        return _FROM_NUMPY[dt]
    except KeyError:
        raise ValueError(f"numpy dtype {dt} has no TensorProto.DataType") from None


def name(dtype: np.dtype | None) -> str:
    return "?" if dtype is None else np.dtype(dtype).name


def parse(dtype: np.dtype | type | str | int) -> np.dtype:
    """Accept a numpy dtype, a dtype name, or a TensorProto.DataType number / name."""
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        return to_numpy(int(dtype))
    if isinstance(dtype, str) and dtype.upper() in DT.keys():  # noqa: SIM118 (an enum wrapper, not a dict)
        return to_numpy(DT.Value(dtype.upper()))
    if isinstance(dtype, str) and dtype in _EXTENDED_CODES:  # "float8_e4m3fn": ml_dtypes' own name
        return extended(dtype)
    return np.dtype(dtype)
