"""TensorProto <-> numpy, following Caffe2's field conventions.

Writing uses the typed fields Caffe2 reads (float_data, int32_data, ...), so our files load in
Caffe2. Reading accepts the typed fields and ``raw_data`` (little-endian), which newer Caffe2
and ONNX-derived tools write.
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
    if code == TensorProto.STRING:
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
    if code == TensorProto.STRING:
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
