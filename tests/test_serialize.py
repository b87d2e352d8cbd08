"""kaffa.serialize: bad bytes raise ModelFormatError with a useful message; save/load round trip; save
is atomic."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest
from google.protobuf.message import EncodeError

from kaffa import serialize
from kaffa.errors import ModelFormatError
from kaffa.proto import (
    Argument,
    BlobProto,
    DeviceOption,
    ExecutionStep,
    NetDef,
    OperatorDef,
    PlanDef,
    QTensorProto,
    TensorProtos,
)
from kaffa.tensor import from_numpy


def _mlp() -> NetDef:
    """A small but real model: FC -> Relu -> FC -> Softmax on CUDA, with args of every kind."""
    net = NetDef(name="mlp", type="dag", num_workers=2, external_input=["x", "w1", "b1", "w2", "b2"])
    net.device_option.CopyFrom(DeviceOption(device_type=1, device_id=0, random_seed=1234))
    net.arg.add(name="num_workers", i=2)
    ops = [
        OperatorDef(type="FC", input=["x", "w1", "b1"], output=["h"], name="fc1", engine="CUDNN"),
        OperatorDef(type="Relu", input=["h"], output=["h"]),
        OperatorDef(type="FC", input=["h", "w2", "b2"], output=["logits"], name="fc2"),
        OperatorDef(type="Softmax", input=["logits"], output=["prob"], control_input=["h"]),
    ]
    ops[0].arg.extend([Argument(name="axis", i=1), Argument(name="alpha", f=-0.5)])
    ops[0].arg.add(name="order", s=b"NCHW")
    ops[1].arg.add(name="shape", ints=[-1, 0, 2**40])
    ops[2].arg.add(name="scales", floats=[0.25, -1e-30, math.inf])
    ops[2].arg.add(name="names", strings=[b"a", "ü".encode()])
    ops[2].arg.add(name="init", t=from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), name="w"))
    ops[3].device_option.CopyFrom(DeviceOption(device_type=0, numa_node_id=-1))
    net.op.extend(ops)
    net.external_output.append("prob")
    return net


def _top_level_field_ends(data: bytes) -> list[int]:
    """Offsets just after each top-level field of a serialized message (a minimal wire walker)."""

    def varint(pos: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos

    ends, pos = [], 0
    while pos < len(data):
        key, pos = varint(pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = varint(pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = varint(pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:  # pragma: no cover - kaffa writes no groups
            raise AssertionError(f"wire type {wire_type}")
        ends.append(pos)
    assert pos == len(data)
    return ends


# ------------------------------------------------------------------------------------------------
# parse_netdef on bad input


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff garbage",
        b"\x0a\xff\xff\xff\xff\x0f",  # name, with a length far past the end
        b"\x07",  # wire type 7 does not exist
        b"\x00\x01",  # field number 0
        b"\x12\x03\x0a\x01",  # an op whose length runs past the end
        b"\x80",  # a varint that never ends
    ],
)
def test_corrupt_bytes(data):
    with pytest.raises(ModelFormatError, match=r"^not a valid NetDef \(\d+ bytes; corrupt or truncated\?\)"):
        serialize.parse_netdef(data)


def test_random_garbage_is_rejected(rng):
    for _ in range(300):
        data = rng.integers(0, 256, int(rng.integers(8, 200)), dtype=np.uint8).tobytes()
        with pytest.raises(ModelFormatError, match="not a valid NetDef"):
            serialize.parse_netdef(data)


def test_corrupt_bytes_name_the_source():
    with pytest.raises(ModelFormatError, match=r"^model\.pb: not a valid NetDef \(5 bytes"):
        serialize.parse_netdef(b"\xff\xff\xff\xff\xff", "model.pb")


def test_truncated_netdef():
    """Cut a real NetDef everywhere. A protobuf has no end marker, so a cut exactly between two
    top-level fields is a valid, shorter NetDef; every other cut must raise. The shorter NetDefs all
    differ from the original (callers such as net creation catch them by meaning: a missing
    external_output, a missing op)."""
    net = _mlp()
    data = net.SerializeToString()
    boundaries = set(_top_level_field_ends(data)) | {0}
    n_fields = 4 + len(net.op) + len(net.arg) + len(net.external_input) + len(net.external_output)
    assert len(boundaries) == 1 + n_fields  # name, type, num_workers, device_option and the repeated ones
    raised, parsed = [], []
    for cut in range(len(data)):
        try:
            short = serialize.parse_netdef(data[:cut])
        except ModelFormatError as e:
            assert "NetDef" in str(e) and "truncated" in str(e), str(e)
            raised.append(cut)
        else:
            assert short != net and short.SerializeToString() != data
            parsed.append(cut)
    assert set(parsed) == boundaries - {len(data)}  # exactly the field boundaries, nothing else
    assert len(raised) >= 0.9 * len(data), f"only {len(raised)} of {len(data)} cuts were detected"
    assert serialize.parse_netdef(data) == net


def test_truncated_inside_a_sub_message_reports_it():
    data = _mlp().SerializeToString()
    first_op = data.index(b"\x12")  # NetDef.op is field 2, length-delimited
    with pytest.raises(ModelFormatError, match=r"not a valid NetDef \(\d+ bytes; corrupt or truncated\?\)"):
        serialize.parse_netdef(data[: first_op + 10])


def test_different_message_types_are_rejected():
    """Bytes of another message whose fields do not fit NetDef: unknown fields (also deep inside a
    sub-message), or a NetDef string field that is really binary."""
    plan = PlanDef(name="p", network=[_mlp()])
    cases = {
        "TensorProto": (from_numpy(np.ones((2, 2), np.float32)), r"unknown field\(s\) in NetDef;"),
        "Argument": (Argument(name="a", i=3), r"unknown field\(s\) in NetDef;"),
        "DeviceOption": (DeviceOption(device_type=1, device_id=2), r"unknown field\(s\) in NetDef;"),
        # A PlanDef's NetDef lands in NetDef.op: the mismatch is only visible inside that sub-message
        # (NetDef.num_workers, a varint, is OperatorDef.type, a string).
        "PlanDef": (plan, r"unknown field\(s\) in NetDef\.op\[0\];"),
        # TensorProtos' tensor lands in NetDef.name (a string) as float bytes.
        "TensorProtos": (
            TensorProtos(protos=[from_numpy(np.ones(2, np.float32))]),
            r"NetDef\.name is not UTF-8",
        ),
    }
    for what, (msg, detail) in cases.items():
        with pytest.raises(ModelFormatError) as info:
            serialize.parse_netdef(msg.SerializeToString(), f"{what}.pb")
        text = str(info.value)
        assert text.startswith(f"{what}.pb: not a valid NetDef"), text
        assert "different message type" in text or "corrupt" in text
        assert info.match(detail), text


def test_a_message_whose_fields_line_up_with_netdef_still_parses():
    """The limit of any wire-level check, stated honestly: ExecutionStep's name=1 (string), network=3
    (repeated string) and num_iter=4 (varint) fit NetDef's name, type and num_workers."""
    step = ExecutionStep(name="s", network=["train"], num_iter=3)
    net = serialize.parse_netdef(step.SerializeToString())
    assert (net.name, net.type, net.num_workers, len(net.op)) == ("s", "train", 3, 0)


def test_missing_required_fields_are_rejected():
    """Caffe2's C++ ParseFromString fails when a required field is missing; so does kaffa."""
    blob = BlobProto(name="q")
    blob.qtensor.CopyFrom(QTensorProto(precision=8, scale=0.5, bias=0.0, is_signed=True))
    data = blob.SerializeToString()
    assert blob.IsInitialized()
    partial = BlobProto(name="q")
    partial.qtensor.precision = 8
    with pytest.raises(ModelFormatError, match=r"required field\(s\) .*qtensor\.scale.* missing"):
        serialize.parse(BlobProto, partial.SerializePartialToString())
    assert serialize.parse(BlobProto, data) == blob


@pytest.mark.parametrize("value", ["name: 'mlp'", "", 42, None, ["\x0a"]])
def test_not_bytes(value):
    with pytest.raises(
        ModelFormatError, match=rf"^net\.pb: expected bytes for a NetDef, got {type(value).__name__}"
    ):
        serialize.parse_netdef(value, "net.pb")
    if isinstance(value, str):
        with pytest.raises(ModelFormatError, match=r"open files with 'rb'"):
            serialize.parse_netdef(value)


def test_bytes_like_input_is_accepted():
    data = _mlp().SerializeToString()
    for buf in (data, bytearray(data), memoryview(data)):
        assert serialize.parse_netdef(buf) == _mlp()
    assert serialize.parse_netdef(b"") == NetDef()  # an empty message is valid protobuf


# ------------------------------------------------------------------------------------------------
# save / load


def _messages() -> dict[str, object]:
    step = ExecutionStep(name="main", network=["mlp"], num_iter=10)
    step.substep.add(name="inner", network=["mlp"], should_stop_blob="stop", run_every_ms=-1)
    edge = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, 3.4028235e38, 0.1], dtype=np.float32)
    tensors = TensorProtos(
        protos=[
            from_numpy(edge, name="edge"),
            from_numpy(np.array([1e-320, -1.0, 0.1], np.float64), name="d"),
            from_numpy(np.array([[-(2**63), 2**63 - 1]], np.int64), name="i64"),
            from_numpy(np.array([b"\x00\xff", "ü".encode()], dtype=object), name="s"),
            from_numpy(np.ones(3, np.float16), name="h", raw=True),
        ]
    )
    return {
        "NetDef": _mlp(),
        "PlanDef": PlanDef(name="plan", network=[_mlp()], execution_step=[step]),
        "TensorProtos": tensors,
    }


@pytest.mark.parametrize("suffix", [".pb", ".pbtxt", ".prototxt", ".txt"])
@pytest.mark.parametrize("kind", ["NetDef", "PlanDef", "TensorProtos"])
def test_save_load_round_trip(tmp_path, kind, suffix):
    msg = _messages()[kind]
    path = tmp_path / "sub" / "dir" / f"model{suffix}"  # parents are created
    serialize.save(msg, path)
    raw = path.read_bytes()
    if suffix == ".pb":
        assert raw == msg.SerializeToString()
    else:
        assert raw.decode("utf-8").lstrip().split()[0].rstrip(":{") in {"name", "protos"}
    back = serialize.load(type(msg), path)
    assert back.SerializeToString() == msg.SerializeToString()  # bit for bit, -0.0 and 1e-45 included
    assert os.listdir(path.parent) == [path.name]  # no temp file left behind
    loader = {"NetDef": serialize.load_netdef, "PlanDef": serialize.load_plan}.get(kind)
    if loader:
        assert loader(path) == msg
    else:
        assert [t.name for t in serialize.load_tensors(path)] == ["edge", "d", "i64", "s", "h"]


def test_text_override(tmp_path):
    net = _mlp()
    serialize.save(net, tmp_path / "net.bin", text=True)
    assert b'name: "mlp"' in (tmp_path / "net.bin").read_bytes()
    serialize.save(net, tmp_path / "net.pbtxt", text=False)
    assert (tmp_path / "net.pbtxt").read_bytes() == net.SerializeToString()


def test_load_errors(tmp_path):
    with pytest.raises(ModelFormatError, match=r"cannot read .*missing\.pb"):
        serialize.load_netdef(tmp_path / "missing.pb")
    (tmp_path / "bad.pb").write_bytes(_mlp().SerializeToString()[:-3])
    with pytest.raises(ModelFormatError, match=r"bad\.pb: not a valid NetDef .*truncated"):
        serialize.load_netdef(tmp_path / "bad.pb")
    (tmp_path / "bad.pbtxt").write_text("name: 'x'\nopp { type: 'Relu' }\n")
    with pytest.raises(ModelFormatError, match=r"bad\.pbtxt: not a valid text-format NetDef"):
        serialize.load_netdef(tmp_path / "bad.pbtxt")
    (tmp_path / "latin1.pbtxt").write_bytes(b"name: '\xe9'")
    with pytest.raises(ModelFormatError, match=r"latin1\.pbtxt"):
        serialize.load_netdef(tmp_path / "latin1.pbtxt")


@pytest.fixture
def existing(tmp_path):
    target = tmp_path / "model.pb"
    old = NetDef(name="old").SerializeToString()
    target.write_bytes(old)
    return target, old


def _boom(*args, **kwargs):
    raise OSError(28, "No space left on device (simulated)")


def test_save_is_atomic_when_the_rename_fails(existing, monkeypatch):
    target, old = existing
    monkeypatch.setattr(serialize.os, "replace", _boom)
    with pytest.raises(OSError, match="simulated"):
        serialize.save(_mlp(), target)
    assert target.read_bytes() == old
    assert os.listdir(target.parent) == [target.name]


def test_save_is_atomic_when_writing_fails(existing, monkeypatch):
    target, old = existing
    monkeypatch.setattr(serialize.os, "fsync", _boom)
    with pytest.raises(OSError, match="simulated"):
        serialize.save(_mlp(), target)
    assert target.read_bytes() == old
    assert os.listdir(target.parent) == [target.name]


def test_save_is_atomic_when_serialization_fails(existing):
    target, old = existing
    bad = BlobProto(name="b")
    bad.qtensor.precision = 8  # required scale, bias, is_signed missing
    with pytest.raises(EncodeError):
        serialize.save(bad, target)
    assert target.read_bytes() == old
    assert os.listdir(target.parent) == [target.name]


def test_save_to_a_new_path_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(serialize.os, "replace", _boom)
    with pytest.raises(OSError):
        serialize.save(_mlp(), tmp_path / "new.pbtxt")
    assert os.listdir(tmp_path) == []


def test_save_keeps_permissions(existing, tmp_path):
    target, _ = existing
    target.chmod(0o640)
    serialize.save(_mlp(), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert serialize.load_netdef(target) == _mlp()
    umask = os.umask(0o022)
    os.umask(umask)
    serialize.save(_mlp(), tmp_path / "fresh.pb")  # like open(): 0o666 less the umask, not 0o600
    assert stat.S_IMODE((tmp_path / "fresh.pb").stat().st_mode) == 0o666 & ~umask
