"""TensorProto <-> numpy, with the typed fields Caffe2 itself writes and reads."""

from __future__ import annotations

import numpy as np
import pytest

from kaffa import dtypes
from kaffa.errors import ModelFormatError
from kaffa.proto import TensorProto
from kaffa.tensor import from_numpy, to_numpy

TP = TensorProto

# Every DataType numpy can hold -> (numpy dtype, the typed field Caffe2 stores it in).
TYPED_FIELD = {
    TP.FLOAT: (np.float32, "float_data"),
    TP.DOUBLE: (np.float64, "double_data"),
    TP.FLOAT16: (np.float16, "int32_data"),  # uint16 bit patterns
    TP.INT32: (np.int32, "int32_data"),
    TP.INT64: (np.int64, "int64_data"),
    TP.INT16: (np.int16, "int32_data"),
    TP.INT8: (np.int8, "int32_data"),
    TP.UINT16: (np.uint16, "int32_data"),
    TP.UINT8: (np.uint8, "int32_data"),
    TP.BOOL: (np.bool_, "int32_data"),
}
DATA_FIELDS = (
    "float_data",
    "int32_data",
    "byte_data",
    "string_data",
    "double_data",
    "int64_data",
    "raw_data",
)
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 2, 3, 2)]


def _sample(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt == np.bool_:
        flat = rng.integers(0, 2, n).astype(bool)
    elif dt.kind == "f":
        edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dt).max, np.finfo(dt).tiny], dtype=dt)
        flat = np.concatenate([edges, rng.standard_normal(n).astype(dt)])[:n]
    else:
        info = np.iinfo(dt)
        edges = np.array([info.min, info.max, 0, -1 if info.min < 0 else 1], dtype=dt)
        flat = np.concatenate([edges, rng.integers(info.min, info.max, n, endpoint=True, dtype=dt)])[:n]
    return flat.reshape(shape)


def _assert_identical(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "f":  # bit for bit: NaN and -0.0 included
        assert got.tobytes() == want.tobytes()
    else:
        np.testing.assert_array_equal(got, want)


def _filled(proto: TensorProto) -> set[str]:
    return {
        f
        for f in DATA_FIELDS
        if (proto.HasField(f) if f in ("byte_data", "raw_data") else len(getattr(proto, f)))
    }


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("code", list(TYPED_FIELD), ids=lambda c: TP.DataType.Name(c))
def test_typed_round_trip(code, shape, rng):
    dtype, field = TYPED_FIELD[code]
    arr = _sample(dtype, shape, rng)
    proto = from_numpy(arr, name="t")
    assert proto.data_type == code and list(proto.dims) == list(shape) and proto.name == "t"
    # Exactly the field Caffe2 uses, never raw_data (which pre-2018 Caffe2 cannot read).
    assert _filled(proto) <= {field} and len(getattr(proto, field)) == arr.size
    out = to_numpy(TP.FromString(proto.SerializeToString()))
    _assert_identical(out, arr)
    assert out.flags.writeable


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("code", list(TYPED_FIELD), ids=lambda c: TP.DataType.Name(c))
def test_raw_round_trip(code, shape, rng):
    dtype, _ = TYPED_FIELD[code]
    arr = _sample(dtype, shape, rng)
    proto = from_numpy(arr, raw=True)
    assert _filled(proto) <= {"raw_data"} and proto.HasField("raw_data")
    assert proto.raw_data == arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()  # little-endian
    out = to_numpy(TP.FromString(proto.SerializeToString()))
    _assert_identical(out, arr)
    assert out.flags.writeable  # a fresh array, not a read-only view of the proto's bytes


def test_caffe2_typed_field_encodings():
    """The values in the typed fields are the ones Caffe2's serializer writes."""
    half = np.array([1.0, -2.0, np.inf, 0.0, -0.0], dtype=np.float16)
    assert list(from_numpy(half).int32_data) == [0x3C00, 0xC000, 0x7C00, 0, 0x8000]
    assert list(from_numpy(np.array([0, 255], np.uint8)).int32_data) == [0, 255]
    assert list(from_numpy(np.array([-128, 127], np.int8)).int32_data) == [-128, 127]
    assert list(from_numpy(np.array([65535, 1], np.uint16)).int32_data) == [65535, 1]
    assert list(from_numpy(np.array([-32768], np.int16)).int32_data) == [-32768]
    assert list(from_numpy(np.array([True, False])).int32_data) == [1, 0]
    assert list(from_numpy(np.array([-(2**63)], np.int64)).int64_data) == [-(2**63)]
    # Row-major (C order) element order, also for a transposed (non-contiguous) input.
    m = np.arange(6, dtype=np.float32).reshape(2, 3).T
    p = from_numpy(m)
    assert list(p.dims) == [3, 2] and list(p.float_data) == [0, 3, 1, 4, 2, 5]


def test_fp16_read_from_int32_data_written_by_caffe2():
    """Caffe2 writes FLOAT16 as uint16 bit patterns in int32_data (some writers sign-extend)."""
    proto = TP(dims=[3], data_type=TP.FLOAT16, int32_data=[0x3C00, 0xC000 - 0x10000, 0x7E00])
    out = to_numpy(proto)
    assert out.dtype == np.float16
    assert out[0] == 1.0 and out[1] == -2.0 and np.isnan(out[2])


def test_fp16_from_byte_data():
    """caffe2_serialize_fp16_as_bytes: FLOAT16 as little-endian bytes in byte_data."""
    want = np.array([[0.5, -1.0], [65504.0, -0.0]], dtype=np.float16)
    proto = TP(dims=[2, 2], data_type=TP.FLOAT16, byte_data=want.astype("<f2").tobytes())
    _assert_identical(to_numpy(proto), want)
    assert to_numpy(TP(dims=[0], data_type=TP.FLOAT16, byte_data=b"")).shape == (0,)


def test_byte_reads_back_as_uint8():
    proto = TP(dims=[2, 2], data_type=TP.BYTE, byte_data=b"\x00\x7f\x80\xff")
    out = to_numpy(proto)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 127], [128, 255]]
    assert out.flags.writeable
    # Writing uint8 produces UINT8 in int32_data (what Caffe2 writes), not BYTE.
    assert from_numpy(out).data_type == TP.UINT8
    assert to_numpy(TP(dims=[3], data_type=TP.BYTE, raw_data=b"abc")).tolist() == [97, 98, 99]


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 2)], ids=str)
def test_string_round_trip_from_bytes_and_str(shape):
    n = int(np.prod(shape))
    raw = [b"", b"\x00\xff", "snö ☃".encode(), b"x" * 300][:n] if shape else [b"\xe2\x98\x83"]
    text = [s.decode("utf-8", "replace") for s in raw]
    want = np.empty(n, dtype=object)
    want[:] = [s.encode("utf-8") for s in text]
    want = want.reshape(shape)
    for source in (
        np.array(text, dtype=object).reshape(shape),  # str objects
        np.array(text).reshape(shape) if n else np.array([], dtype="U1").reshape(shape),  # numpy '<U'
        np.array([s.encode("utf-8") for s in text], dtype=object).reshape(shape),  # bytes objects
    ):
        for raw_flag in (False, True):  # STRING never goes to raw_data
            proto = from_numpy(source, raw=raw_flag)
            assert proto.data_type == TP.STRING and _filled(proto) <= {"string_data"}
            assert list(proto.string_data) == list(want.reshape(-1))
            out = to_numpy(TP.FromString(proto.SerializeToString()))
            assert out.dtype == object and out.shape == shape
            assert [type(x) for x in out.reshape(-1)] == [bytes] * n
            assert out.reshape(-1).tolist() == want.reshape(-1).tolist()


def test_numpy_bytes_array_is_string():
    proto = from_numpy(np.array([b"a", b"bc"]))
    assert proto.data_type == TP.STRING and list(proto.string_data) == [b"a", b"bc"]


@pytest.mark.parametrize("dtype", [">f4", ">f2", ">i8", ">u2", ">f8"])
@pytest.mark.parametrize("raw", [False, True])
def test_non_native_byte_order_input(dtype, raw):
    arr = np.array([[1.5, -2.0], [3.0, 100.0]] if dtype[1] == "f" else [[1, 2], [300, 7]], dtype=dtype)
    native = arr.astype(arr.dtype.newbyteorder("="))
    proto = from_numpy(arr, raw=raw)
    assert proto.data_type == dtypes.from_numpy(native.dtype)
    if raw:
        assert proto.raw_data == native.astype(native.dtype.newbyteorder("<")).tobytes()
    _assert_identical(to_numpy(proto), native)


def test_dtype_table_round_trips():
    for code, (dtype, _) in TYPED_FIELD.items():
        assert dtypes.to_numpy(code) == np.dtype(dtype)
        assert dtypes.from_numpy(dtype) == code
    assert dtypes.to_numpy(TP.BYTE) == np.dtype(np.uint8)
    assert dtypes.from_numpy(np.uint8) == TP.UINT8
    # uint32/uint64 have kaffa's extension numbers (tests/test_dtypes_extended.py round-trips them).
    assert dtypes.from_numpy(np.uint32) == TP.UINT32 and dtypes.to_numpy(TP.UINT64) == np.dtype(np.uint64)
    with pytest.raises(ValueError, match="complex"):
        from_numpy(np.zeros(2, np.complex64))


# ------------------------------------------------------------------------------------------------
# Bad tensors


@pytest.mark.parametrize(
    "proto",
    [
        TP(dims=[2, 3], data_type=TP.FLOAT, float_data=[1.0] * 5),
        TP(dims=[2], data_type=TP.DOUBLE, double_data=[1.0] * 3),
        TP(dims=[], data_type=TP.INT64),  # a 0-d tensor needs one element
        TP(dims=[4], data_type=TP.INT32, int32_data=[1, 2]),
        TP(dims=[2], data_type=TP.BYTE, byte_data=b"abc"),
        TP(dims=[2], data_type=TP.STRING, string_data=[b"a"]),
        TP(dims=[2], data_type=TP.FLOAT16, int32_data=[0]),
        TP(dims=[3], data_type=TP.INT16, raw_data=b"\x00\x00\x01\x00"),
        TP(dims=[2], data_type=TP.FLOAT, raw_data=b""),  # raw_data present but empty wins
        TP(dims=[2], data_type=TP.FLOAT, int32_data=[1, 2]),  # data in a field the type does not use
        # dims whose int64 product wraps to 0 must not match empty data
        TP(dims=[2**32, 2**32], data_type=TP.FLOAT),
    ],
    ids=lambda p: f"{TP.DataType.Name(p.data_type)}{list(p.dims)}",
)
def test_dims_data_size_mismatch(proto):
    proto.name = "w"
    with pytest.raises(ModelFormatError, match=r"tensor 'w' declares dims .* elements\) but holds"):
        to_numpy(proto)


@pytest.mark.parametrize(
    ("proto", "field"),
    [
        (TP(dims=[1], data_type=TP.FLOAT, raw_data=b"abc"), "raw_data"),
        (TP(dims=[1], data_type=TP.INT64, raw_data=b"\x00" * 12), "raw_data"),
        (TP(dims=[2], data_type=TP.FLOAT16, byte_data=b"\x00\x3c\x00"), "byte_data"),
    ],
    ids=["float-raw3", "int64-raw12", "fp16-bytes3"],
)
def test_byte_count_not_a_multiple_of_the_element_size(proto, field):
    with pytest.raises(ModelFormatError, match=rf"{field} holds \d+ bytes, not a multiple"):
        to_numpy(proto)


@pytest.mark.parametrize("code", [TP.UNDEFINED, TP.ZERO_COLLISION_HASH, TP.REBATCHING_BUFFER])
def test_data_type_without_numpy_equivalent(code):
    with pytest.raises(ModelFormatError, match=rf"tensor 'x'.*DataType {code} has no numpy"):
        to_numpy(TP(name="x", dims=[0], data_type=code))


@pytest.mark.parametrize("number", [11, 99, 2**31 - 1])
def test_data_type_unknown_to_the_schema(number):
    """On the wire data_type=11 parses as FLOAT (closed proto2 enum) with 11 in the unknown fields;
    it must not be read as a float tensor."""
    good = TP(name="x", dims=[2], data_type=TP.FLOAT, float_data=[1.0, 2.0])
    wire = good.SerializeToString() + bytes([0x10]) + _varint(number)  # field 2, varint
    proto = TP.FromString(wire)
    assert proto.data_type == TP.FLOAT  # what protobuf reports
    with pytest.raises(ModelFormatError, match=rf"tensor 'x': unknown TensorProto.DataType {number}"):
        to_numpy(proto)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("dims", [[-1], [2, -3], [0, -1], [-(2**63)]])
def test_negative_dims(dims):
    with pytest.raises(ModelFormatError, match=r"tensor 'n' has negative dims"):
        to_numpy(TP(name="n", dims=dims, data_type=TP.FLOAT))


def test_empty_tensor_with_a_dim_numpy_cannot_index():
    with pytest.raises(ModelFormatError, match=r"tensor 'big'"):
        to_numpy(TP(name="big", dims=[2**62, 4, 0], data_type=TP.FLOAT))


def test_bool_raw_bytes_are_normalized():
    out = to_numpy(TP(dims=[3], data_type=TP.BOOL, raw_data=b"\x00\x07\x01"))
    assert out.dtype == np.bool_ and out.tolist() == [False, True, True]
    assert out.view(np.uint8).tolist() == [0, 1, 1]
