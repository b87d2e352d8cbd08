"""ml_dtypes storage types (bfloat16, float8, float4, 2/4-bit integers) and uint32/uint64: dtype
table, lazy import, TensorProto round trips (ONNX's packing), Cast semantics, backends refusing them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kaffa import Workspace, dtypes
from kaffa.core import create_operator
from kaffa.errors import ModelFormatError, UnsupportedOperatorError
from kaffa.proto import NetDef
from kaffa.proto import TensorProto as TP
from kaffa.tensor import from_numpy, to_numpy

ml_dtypes = pytest.importorskip("ml_dtypes")

EXT = {
    TP.BFLOAT16: "bfloat16", TP.FLOAT8E4M3FN: "float8_e4m3fn", TP.FLOAT8E4M3FNUZ: "float8_e4m3fnuz",
    TP.FLOAT8E5M2: "float8_e5m2", TP.FLOAT8E5M2FNUZ: "float8_e5m2fnuz", TP.FLOAT8E8M0: "float8_e8m0fnu",
    TP.FLOAT4E2M1: "float4_e2m1fn", TP.INT4: "int4", TP.UINT4: "uint4", TP.INT2: "int2", TP.UINT2: "uint2",
}  # fmt: skip


def test_kaffa_runs_without_loading_ml_dtypes():
    """ml_dtypes is imported only when a narrow type is asked for: not by kaffa, its plugins or a net."""
    code = (
        "import sys, numpy as np, kaffa; from kaffa.plugins import registry; registry(); "
        "ws = kaffa.Workspace(); ws.feed_blob('x', np.ones(2, np.float32)); "
        "assert 'ml_dtypes' not in sys.modules, 'imported eagerly'; "
        "kaffa.dtypes.to_numpy(kaffa.proto.TensorProto.INT4); assert 'ml_dtypes' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_goldens_hold_without_ml_dtypes():
    """A base install has no ml_dtypes: the conformance cases it still generates (every one but the
    extended-type casts) must draw exactly the frozen inputs, so `kaffa conformance` passes there."""
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "from kaffa import dtypes\n"
        "from kaffa_conformance import goldens\n"
        "from kaffa_conformance.cases import ops_with_cases\n"
        "assert dtypes.extended_types() == ()\n"
        "problems = [p for op in ops_with_cases() for p in goldens.verify(op)]\n"
        "print(len(problems)); print('\\n'.join(problems[:5]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "0", res.stdout


@pytest.mark.parametrize("code", list(EXT), ids=lambda c: TP.DataType.Name(c))
def test_dtype_table(code):
    dt = np.dtype(getattr(ml_dtypes, EXT[code]))
    assert dtypes.to_numpy(code) == dt and dtypes.from_numpy(dt) == code
    assert dtypes.parse(TP.DataType.Name(code)) == dt and dtypes.parse(EXT[code]) == dt
    assert dtypes.is_extended(dt) and not dtypes.is_extended(np.float32)
    assert dtypes.is_int(dt) == (EXT[code] in ("int4", "uint4", "int2", "uint2")) != dtypes.is_float(dt)
    # The numbers stay clear of Caffe2's (0..15): 100 + ONNX's.
    from onnx import TensorProto as OTP

    assert code == 100 + getattr(OTP, TP.DataType.Name(code))


def test_int_ranges():
    assert dtypes.int_range(ml_dtypes.int4) == (-8, 7) and dtypes.int_range(ml_dtypes.uint2) == (0, 3)
    assert dtypes.int_range(np.uint16) == (0, 65535)


def _values(dt: np.dtype) -> np.ndarray:
    lo, hi = dtypes.int_range(dt) if dtypes.is_int(dt) else (-4, 4)
    base = np.array([lo, hi, 0, 1, lo + 1, hi - 1, 0.5 * (dt.name[0] != "i" and dt.name[0] != "u")])
    return base.astype(dt)


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("code", [*EXT, TP.UINT32, TP.UINT64], ids=lambda c: TP.DataType.Name(c))
def test_round_trip_bit_exact(code, raw):
    dt = dtypes.to_numpy(code)
    arr = (
        np.array([0, 1, 2**32 - 1 if dt == np.uint32 else 2**64 - 1, 7], dt)
        if dt.kind == "u"
        else _values(dt)
    )
    arr = arr.reshape(-1, 1)[: arr.size - arr.size % 1]
    proto = from_numpy(arr, name="t", raw=raw)
    assert proto.data_type == code
    assert proto.HasField("raw_data") == raw
    back = to_numpy(TP.FromString(proto.SerializeToString()))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.view(np.uint8).tobytes() == arr.view(np.uint8).tobytes()


@pytest.mark.parametrize(
    "name", ["int4", "uint4", "int2", "uint2", "float4_e2m1fn", "bfloat16", "float8_e5m2"]
)
def test_raw_data_is_onnx_packed(name):
    import onnx

    dt = dtypes.extended(name)
    arr = np.array([1, 0, 1, 1, 0], np.float64).astype(dt)  # odd length: a padded last byte
    assert from_numpy(arr, raw=True).raw_data == onnx.numpy_helper.from_array(arr).raw_data


def test_bad_packed_and_out_of_range_tensors():
    with pytest.raises(ModelFormatError, match="packed 2 to a byte need 2"):
        to_numpy(TP(name="x", dims=[3], data_type=TP.INT4, raw_data=b"\x01"))
    with pytest.raises(ModelFormatError, match="outside int4's range"):
        to_numpy(TP(name="x", dims=[1], data_type=TP.INT4, int32_data=[9]))


def _cast(x: np.ndarray, to: str, **args) -> np.ndarray:
    ws = Workspace()
    ws.feed_blob("x", x)
    net = NetDef(name="cast")
    net.op.append(create_operator("Cast", ["x"], ["y"], to=to, **args))
    ws.run_net_once(net)
    return ws.fetch_blob("y")


def test_cast_float8_saturates_unless_asked_not_to():
    x = np.array([1000.0, -np.inf, 449.0, np.nan, 0.3], np.float32)
    got = _cast(x, "FLOAT8E4M3FN")
    assert got.dtype.name == "float8_e4m3fn"
    np.testing.assert_array_equal(got.astype(np.float32)[:3], [448.0, -448.0, 448.0])
    assert np.isnan(got.astype(np.float32)[3])
    raw = _cast(x, "FLOAT8E4M3FN", saturate=False).astype(np.float32)
    assert np.isnan(raw[0]) and np.isnan(raw[1])  # e4m3fn has no inf: overflow is NaN
    e5 = _cast(x, "FLOAT8E5M2", saturate=False).astype(np.float32)
    assert e5[0] == 1024.0 and e5[1] == -np.inf


def test_cast_e8m0_round_modes():
    x = np.array([3.0, 4.0, 5.0, 0.0, np.inf, -3.0], np.float32)
    up = _cast(x, "FLOAT8E8M0").astype(np.float32)
    np.testing.assert_array_equal(up[[0, 1, 2, 5]], [4.0, 4.0, 8.0, 4.0])
    assert up[3] == 2.0**-127 and np.isnan(up[4])
    np.testing.assert_array_equal(_cast(x[:3], "FLOAT8E8M0", round_mode="down").astype(np.float32), [2, 4, 4])
    np.testing.assert_array_equal(
        _cast(x[:3], "FLOAT8E8M0", round_mode="nearest").astype(np.float32), [4, 4, 4]
    )


def test_cast_int4_truncates_and_wraps_and_narrow_to_narrow():
    got = _cast(np.array([7.9, -8.5, 9.0, -9.0], np.float32), "INT4")
    np.testing.assert_array_equal(got.astype(np.int8), [7, -8, -7, 7])
    # Between two ml_dtypes types (no direct ml_dtypes cast): through a wide type.
    u = _cast(np.array([1, 7, 0], np.int8).astype(ml_dtypes.int4), "UINT4")
    assert u.dtype.name == "uint4" and u.astype(np.int8).tolist() == [1, 7, 0]
    f = _cast(np.array([1.5, -2.0], np.float32).astype(ml_dtypes.float8_e5m2), "FLOAT8E4M3FN")
    assert f.astype(np.float32).tolist() == [1.5, -2.0]


def test_cast_to_unsigned_wide_types():
    got = _cast(np.array([1.9, 3e9], np.float64), "UINT32")
    assert got.dtype == np.uint32 and got.tolist() == [1, 3000000000]


def test_ops_without_a_claim_refuse_narrow_types():
    ws = Workspace()
    ws.feed_blob("x", np.ones(3, ml_dtypes.bfloat16))
    net = NetDef(name="relu")
    net.op.append(create_operator("Relu", ["x"], ["y"]))
    with pytest.raises(UnsupportedOperatorError, match="bfloat16"):
        ws.create_net(net)
