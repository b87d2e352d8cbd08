"""TensorProto <-> numpy, following Caffe2's field conventions.

Writing uses the typed fields Caffe2 reads (float_data, int32_data, ...), so our files load in
Caffe2. Reading accepts the typed fields and ``raw_data`` (little-endian), which newer Caffe2
and ONNX-derived tools write.

kaffa's extension types (numbers 112+, see kaffa.proto) follow ONNX's conventions: UINT32 values and
UINT64 bit patterns in int64_data; the ml_dtypes types' values (2/4-bit integers) or bit patterns
(bfloat16, float8, float4) in int32_data, one element each; in raw_data the 2/4-bit types are packed
several to a byte, lowest bits first, as ONNX packs them.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa import dtypes
from kaffa.errors import ModelFormatError
from kaffa.proto import TensorProto

_INT32_FIELD = {
    TensorProto.INT32,
    TensorProto.UINT8,
    TensorProto.INT8,
    TensorProto.UINT16,
    TensorProto.INT16,
    TensorProto.BOOL,
    TensorProto.FLOAT16,
}


def from_numpy(array: np.ndarray | object, name: str | None = None, raw: bool = False) -> TensorProto:
    """Serialize an array. ``raw=True`` writes ``raw_data`` (fast, but pre-2018 Caffe2 cannot read it)."""
    arr = np.asarray(array)
    if not arr.dtype.isnative:  # e.g. big-endian data: the typed fields and raw_data are native/little
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "U":
        arr = (
            np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(arr)
            if arr.size
            else arr.astype(object)
        )
    proto = TensorProto()
    if name is not None:
        proto.name = name
    proto.dims.extend(int(d) for d in arr.shape)
    code = dtypes.from_numpy(arr.dtype)
    proto.data_type = code
    flat = arr.reshape(-1)
    if code in dtypes.EXTENDED_NAMES or code in (TensorProto.UINT32, TensorProto.UINT64):
        _write_extended(proto, flat, raw)
    elif code == TensorProto.STRING:
        proto.string_data.extend(s if isinstance(s, bytes) else str(s).encode("utf-8") for s in flat)
    elif raw:
        proto.raw_data = np.ascontiguousarray(flat).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    elif code == TensorProto.FLOAT:
        proto.float_data.extend(flat.tolist())
    elif code == TensorProto.DOUBLE:
        proto.double_data.extend(flat.tolist())
    elif code == TensorProto.INT64:
        proto.int64_data.extend(flat.tolist())
    elif code == TensorProto.FLOAT16:
        proto.int32_data.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif code in _INT32_FIELD:
        proto.int32_data.extend(flat.astype(np.int32).tolist())
    else:  # pragma: no cover - every numpy-representable type is handled above
        raise ValueError(f"cannot serialize dtype {arr.dtype}")
    return proto


def _bits_view(flat: np.ndarray) -> np.ndarray:
    """The unsigned integer bit patterns of an ml_dtypes array (a 2/4-bit value in its low bits)."""
    return flat.view(np.uint16 if flat.dtype.itemsize == 2 else np.uint8)


def _write_extended(proto: TensorProto, flat: np.ndarray, raw: bool) -> None:
    dt = flat.dtype
    if dt in (np.uint32, np.uint64):
        if raw:
            proto.raw_data = np.ascontiguousarray(flat).astype(dt.newbyteorder("<")).tobytes()
        else:  # uint64 beyond int64's range keeps its bits (ONNX's uint64_data is unsigned; ours is not)
            proto.int64_data.extend(flat.astype(np.uint64).view(np.int64).tolist())
        return
    bits = dtypes.SUB_BYTE_BITS.get(dt.name)
    if raw:
        pattern = np.ascontiguousarray(_bits_view(flat))
        proto.raw_data = (
            _pack(pattern, bits) if bits else pattern.astype(pattern.dtype.newbyteorder("<")).tobytes()
        )
    elif dt.name in dtypes.EXTENDED_INT_NAMES:
        proto.int32_data.extend(flat.astype(np.int32).tolist())
    else:
        proto.int32_data.extend(_bits_view(flat).astype(np.int32).tolist())


def _pack(pattern: np.ndarray, bits: int) -> bytes:
    """Pack ``8 // bits`` elements per byte, the first in the lowest bits (ONNX's layout)."""
    per = 8 // bits
    padded = np.zeros(-(-pattern.size // per) * per, np.uint8)
    padded[: pattern.size] = pattern & ((1 << bits) - 1)
    shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(padded.reshape(-1, per) << shifts, axis=1).astype(np.uint8).tobytes()


def _read_extended(proto: TensorProto, dt: np.dtype, size: int) -> np.ndarray:
    code = proto.data_type
    if code in (TensorProto.UINT32, TensorProto.UINT64):
        if proto.HasField("raw_data"):
            return _frombuffer(proto.raw_data, dt, proto.name, "raw_data")
        return np.asarray(proto.int64_data, dtype=np.int64).view(np.uint64).astype(dt)
    bits = dtypes.SUB_BYTE_BITS.get(dt.name)
    store = np.dtype(np.uint16 if dt.itemsize == 2 else np.uint8)
    if proto.HasField("raw_data"):
        data = proto.raw_data
        if bits:
            per = 8 // bits
            if len(data) != -(-size // per):
                raise ModelFormatError(
                    f"tensor '{proto.name}': raw_data holds {len(data)} bytes, {size} {dt.name} elements "
                    f"packed {per} to a byte need {-(-size // per)}"
                )
            packed = np.frombuffer(data, np.uint8)
            shifts = (np.arange(per, dtype=np.uint8) * bits).astype(np.uint8)
            pattern = ((packed[:, None] >> shifts) & ((1 << bits) - 1)).astype(np.uint8).reshape(-1)[:size]
            return _from_pattern(pattern, dt, bits)
        return _frombuffer(data, store, proto.name, "raw_data").view(dt)
    values = np.asarray(proto.int32_data, dtype=np.int32)
    if dt.name in dtypes.EXTENDED_INT_NAMES:
        lo, hi = dtypes.int_range(dt)
        if values.size and (values.min() < lo or values.max() > hi):
            raise ModelFormatError(
                f"tensor '{proto.name}': int32_data holds values outside {dt.name}'s range"
            )
        return values.astype(dt)
    return values.astype(store).view(dt)


def _from_pattern(pattern: np.ndarray, dt: np.dtype, bits: int) -> np.ndarray:
    if dt.name.startswith("int"):  # sign-extend the two's complement pattern
        half = 1 << (bits - 1)
        return ((pattern.astype(np.int16) ^ half) - half).astype(dt)
    return pattern.view(dt)


def _unknown_data_type(proto: TensorProto) -> int | None:
    """A data_type number this schema does not know. proto2 enums are closed: the parser moves such a
    value to the unknown fields and ``data_type`` silently reads as the default, FLOAT."""
    try:
        from google.protobuf import unknown_fields

        values = [f.data for f in unknown_fields.UnknownFieldSet(proto) if f.field_number == 2]
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - older protobuf
        return None
    return values[-1] if values else None


def _frombuffer(data: bytes, dt: np.dtype, name: str, field: str) -> np.ndarray:
    if len(data) % dt.itemsize:
        raise ModelFormatError(
            f"tensor '{name}': {field} holds {len(data)} bytes, not a multiple of the "
            f"{dt.itemsize}-byte {dt.name} element size"
        )
    return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt)


def to_numpy(proto: TensorProto) -> np.ndarray:
    """Deserialize a TensorProto into a new numpy array."""
    unknown = _unknown_data_type(proto)
    if unknown is not None:
        raise ModelFormatError(f"tensor '{proto.name}': unknown TensorProto.DataType {unknown}")
    try:
        dt = dtypes.to_numpy(proto.data_type)
    except ValueError as e:
        raise ModelFormatError(f"tensor '{proto.name}': {e}") from None
    shape = tuple(int(d) for d in proto.dims)
    if any(d < 0 for d in shape):
        raise ModelFormatError(f"tensor '{proto.name}' has negative dims {list(shape)}")
    size = math.prod(shape)  # exact: an int64 product could wrap around and match by accident
    code = proto.data_type
    if code in dtypes.EXTENDED_NAMES or code in (TensorProto.UINT32, TensorProto.UINT64):
        flat = _read_extended(proto, dt, size)
    elif code == TensorProto.STRING:
        flat = np.empty(len(proto.string_data), dtype=object)
        flat[:] = list(proto.string_data)
    elif proto.HasField("raw_data"):
        if code == TensorProto.BOOL:  # any non-zero byte is true, as in C++; keeps the bools canonical
            flat = np.frombuffer(proto.raw_data, dtype=np.uint8) != 0
        else:
            flat = _frombuffer(proto.raw_data, dt, proto.name, "raw_data")
    elif code == TensorProto.FLOAT:
        flat = np.asarray(proto.float_data, dtype=np.float32)
    elif code == TensorProto.DOUBLE:
        flat = np.asarray(proto.double_data, dtype=np.float64)
    elif code == TensorProto.INT64:
        flat = np.asarray(proto.int64_data, dtype=np.int64)
    elif code == TensorProto.BYTE:
        flat = np.frombuffer(proto.byte_data, dtype=np.uint8).copy()
    elif code == TensorProto.FLOAT16:
        if proto.byte_data:  # caffe2_serialize_fp16_as_bytes
            flat = _frombuffer(proto.byte_data, np.dtype(np.float16), proto.name, "byte_data")
        else:
            flat = np.asarray(proto.int32_data, dtype=np.int32).astype(np.uint16).view(np.float16)
    else:
        flat = np.asarray(proto.int32_data, dtype=np.int32).astype(dt)
    if flat.size != size:
        raise ModelFormatError(
            f"tensor '{proto.name}' declares dims {list(shape)} ({size} elements) but holds {flat.size}"
        )
    try:
        return flat.reshape(shape)
    except ValueError as e:  # e.g. an empty tensor with a dim numpy cannot index (2**62 x 4 x 0)
        raise ModelFormatError(
            f"tensor '{proto.name}' has dims {list(shape)} numpy cannot hold: {e}"
        ) from None
