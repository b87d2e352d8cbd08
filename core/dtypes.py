"""The mapping between Caffe2's TensorProto.DataType numbers and numpy dtypes."""

from __future__ import annotations

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
}
_FROM_NUMPY: dict[np.dtype, int] = {dt: code for code, dt in _TO_NUMPY.items() if code != TensorProto.BYTE}

FLOAT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
INT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.int32), np.dtype(np.int64))
NUMERIC_TYPES: tuple[np.dtype, ...] = FLOAT_TYPES + INT_TYPES
BOOL = np.dtype(np.bool_)
ALL_TYPES: tuple[np.dtype, ...] = (*NUMERIC_TYPES, BOOL)
# Every integer dtype numpy has, for ops ONNX defines on them (int8 ... uint64). uint32 and uint64 have
# no Caffe2 TensorProto.DataType: they live in workspaces but cannot be serialized.
SIGNED_INT_TYPES: tuple[np.dtype, ...] = (np.dtype(np.int8), np.dtype(np.int16), *INT_TYPES)
UNSIGNED_INT_TYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)
)
ALL_INT_TYPES: tuple[np.dtype, ...] = (*SIGNED_INT_TYPES, *UNSIGNED_INT_TYPES)
ALL_NUMERIC_TYPES: tuple[np.dtype, ...] = (*FLOAT_TYPES, *ALL_INT_TYPES)


def to_numpy(data_type: int) -> np.dtype:
    """numpy dtype for a TensorProto.DataType number."""
    try:
        return _TO_NUMPY[int(data_type)]
    except KeyError:
        raise ValueError(f"TensorProto.DataType {data_type} has no numpy equivalent") from None


def from_numpy(dtype: np.dtype | type | str) -> int:
    """TensorProto.DataType number for a numpy dtype (strings and bytes arrays map to STRING)."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O"):
        return TensorProto.STRING
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
    return np.dtype(dtype)
