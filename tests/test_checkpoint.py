"""kaffa.checkpoint: verified, atomic checkpoints; init_net/predict_net export and the Predictor."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

import kaffa
from kaffa import Workspace, checkpoint, models, optimizer, serialize
from kaffa.checkpoint import CheckpointError, CorruptCheckpointError
from kaffa.model_helper import ModelHelper
from kaffa.proto import TensorProtos

DIMS = [6, 16, 3]


@pytest.fixture
def blobs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "w": rng.normal(size=(4, 3)).astype(np.float32),
        "d": rng.normal(size=(5,)),
        "i32": rng.integers(-9, 9, size=(2, 2)).astype(np.int32),
        "it": np.array([7], np.int64),
        "scalar": np.array(2.5, np.float32),
        "flags": np.array([True, False, True]),
        "half": rng.normal(size=(3,)).astype(np.float16),
        "empty": np.zeros((0, 4), np.float32),
        "nan": np.array([np.nan, -0.0, np.inf], np.float32),
    }


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality (NaN payloads and -0.0 included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _trained(steps: int = 5) -> tuple[Workspace, ModelHelper, ModelHelper, np.ndarray]:
    """A small MLP after a few SGD steps, and a test model sharing its parameters."""
    kaffa.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, DIMS[0])).astype(np.float32)
    y = rng.integers(0, DIMS[-1], size=12).astype(np.int32)
    train = ModelHelper("ck_train")
    _, loss = models.mlp(train, "data", DIMS, label="label")
    train.add_gradient_ops([loss])
    optimizer.build_sgd(train, 0.1, momentum=0.9)
    test = ModelHelper("ck_test", init_params=False)
    models.mlp(test, "data", DIMS, is_test=True)
    ws = Workspace("ck")
    ws.run_net_once(train.param_init_net)
    ws.feed_blob("data", x)
    ws.feed_blob("label", y)
    ws.create_net(train.net)
    ws.run_net(train.net.Proto().name, steps)
    ws.create_net(test.net)
    return ws, train, test, x


def _predict(ws: Workspace, test: ModelHelper, x: np.ndarray) -> np.ndarray:
    ws.feed_blob("data", x)
    ws.run_net(test.net.Proto().name)
    return ws.fetch_blob("softmax")


# -- save / load -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [True, False])
def test_round_trip_is_bitwise_and_ordered(tmp_path, blobs, raw):
    path = checkpoint.save(tmp_path / "ck.pb", blobs, raw=raw)
    back = checkpoint.load(path)
    assert list(back) == list(blobs)
    for name, value in blobs.items():
        assert _same(back[name], value), name


def test_strings_round_trip(tmp_path):
    path = checkpoint.save(tmp_path / "ck.pb", {"s": np.array(["a", "bé"])})
    assert list(checkpoint.load(path)["s"]) == [b"a", "bé".encode()]


def test_file_is_a_readable_tensor_protos_with_a_footer_last(tmp_path, blobs):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    protos = serialize.load_tensors(path)
    assert [p.name for p in protos] == [*blobs, checkpoint.FOOTER_NAME]
    assert b'"sha256"' in protos[-1].string_data[0]


def test_save_from_workspace_and_load_into_predicts_bitwise(tmp_path):
    ws, train, test, x = _trained()
    before = _predict(ws, test, x)
    names = train.get_all_params()
    checkpoint.save(tmp_path / "ck.pb", ws, names)

    fresh = Workspace("fresh")
    assert checkpoint.load_into(fresh, tmp_path / "ck.pb") == [str(n) for n in names]
    fresh.create_net(test.net)
    assert _same(_predict(fresh, test, x), before)


def test_load_into_some_names(tmp_path, blobs):
    checkpoint.save(tmp_path / "ck.pb", blobs)
    ws = Workspace("some")
    assert checkpoint.load_into(ws, tmp_path / "ck.pb", names=["it", "w"]) == ["it", "w"]
    assert ws.blobs() == ["it", "w"]
    with pytest.raises(CheckpointError, match=r"no blob\(s\) \['nope'\]"):
        checkpoint.load_into(ws, tmp_path / "ck.pb", names=["nope"])


def test_save_refuses_bad_names_and_values(tmp_path):
    with pytest.raises(ValueError, match="listed twice"):
        checkpoint.save(tmp_path / "ck.pb", {"a": np.zeros(1)}, names=["a", "a"])
    with pytest.raises(ValueError, match="cannot be a blob name"):
        checkpoint.save(tmp_path / "ck.pb", {checkpoint.FOOTER_NAME: np.zeros(1)})
    with pytest.raises(TypeError, match="not a tensor"):
        checkpoint.save(tmp_path / "ck.pb", {"a": [1, 2]})
    with pytest.raises(KeyError, match="b"):
        checkpoint.save(tmp_path / "ck.pb", {"a": np.zeros(1)}, names=["b"])
    with pytest.raises(kaffa.MissingBlobError):
        checkpoint.save(tmp_path / "ck.pb", Workspace("empty"), names=["a"])
    assert list(tmp_path.iterdir()) == []


# -- damaged files --------------------------------------------------------------------------------------
def _cuts(data: bytes, footer_len: int) -> list[int]:
    return [0, 1, 7, len(data) // 3, len(data) // 2, len(data) - footer_len, len(data) - 1]


def test_truncated_file_raises_typed_error_naming_the_file(tmp_path, blobs):
    good = checkpoint.save(tmp_path / "good.pb", blobs)
    data = good.read_bytes()
    footer_len = len(TensorProtos(protos=[serialize.load_tensors(good)[-1]]).SerializeToString())
    bad = tmp_path / "cut.pb"
    for cut in _cuts(data, footer_len):
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptCheckpointError) as info:
            checkpoint.load(bad)
        assert str(bad) in str(info.value), cut
        assert info.value.path == bad
        assert isinstance(info.value, kaffa.ModelFormatError)  # a corrupt file is a format error
    # Cut exactly before the footer: every tensor entry still parses, the footer says what is wrong.
    bad.write_bytes(data[: len(data) - footer_len])
    with pytest.raises(CorruptCheckpointError, match="footer at the end: the file is truncated"):
        checkpoint.load(bad)
    assert checkpoint.load(good).keys() == blobs.keys()  # the good file is untouched


@pytest.mark.parametrize("where", [0.1, 0.5, 0.8])
def test_flipped_byte_is_caught(tmp_path, blobs, where):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    data = bytearray(path.read_bytes())
    k = int(len(data) * where)
    data[k] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=str(path).replace("\\", "\\\\")):
        checkpoint.load(path)


def test_payload_damage_is_a_checksum_mismatch(tmp_path):
    path = checkpoint.save(tmp_path / "ck.pb", {"w": np.arange(64, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    data[40] ^= 0x10  # inside w's raw_data: still parses, values differ
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="sha256 mismatch"):
        checkpoint.load(path)


def test_load_into_feeds_nothing_from_a_bad_file(tmp_path, blobs):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    path.write_bytes(path.read_bytes()[:-3])
    ws = Workspace("untouched")
    with pytest.raises(CorruptCheckpointError):
        checkpoint.load_into(ws, path)
    assert ws.blobs() == []


def test_plain_tensor_protos_and_missing_files(tmp_path):
    plain = tmp_path / "plain.pb"
    serialize.save(TensorProtos(protos=[kaffa.tensor.from_numpy(np.zeros(2), "x")]), plain)
    with pytest.raises(CorruptCheckpointError, match="plain TensorProtos"):
        checkpoint.load(plain)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*missing\.pb"):
        checkpoint.load(tmp_path / "missing.pb")
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="empty"):
        checkpoint.load(tmp_path / "empty.pb")


# -- atomic saves ---------------------------------------------------------------------------------------
def test_failed_write_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, blobs, monkeypatch):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    before = path.read_bytes()

    def disk_full(fd, chunks):
        os.write(fd, next(iter(chunks))[:10])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_chunks", disk_full)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*ck\.pb: No space left") as info:
        checkpoint.save(path, {"other": np.ones(3, np.float32)})
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pb"]
    assert checkpoint.load(path).keys() == blobs.keys()


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_failed_fsync_or_rename_keeps_the_previous_checkpoint(tmp_path, blobs, monkeypatch, fails):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(checkpoint.os, fails, boom)
    with pytest.raises(CheckpointError, match="I/O error"):
        checkpoint.save(path, {"other": np.ones(3, np.float32)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pb"]


def test_overwrite_keeps_the_file_mode(tmp_path, blobs):
    path = checkpoint.save(tmp_path / "ck.pb", blobs)
    os.chmod(path, 0o640)
    checkpoint.save(path, {"w": blobs["w"]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert list(checkpoint.load(path)) == ["w"]


# -- export -------------------------------------------------------------------------------------------
def test_export_then_load_model_in_a_fresh_workspace_predicts_the_same(tmp_path):
    ws, train, test, x = _trained()
    before = _predict(ws, test, x)
    init_path, predict_path = checkpoint.export_model(test, ws, tmp_path, ["data"], ["softmax"])
    assert (init_path.name, predict_path.name) == ("init_net.pb", "predict_net.pb")

    init = serialize.load_netdef(init_path)
    assert {op.type for op in init.op} == {"GivenTensorFill"}
    assert {op.output[0] for op in init.op} == {str(p) for p in train.get_params()}
    predict = serialize.load_netdef(predict_path)
    assert [op.type for op in predict.op] == ["FC", "Relu", "FC", "Softmax"]
    assert list(predict.external_output) == ["softmax"]

    p = checkpoint.load_model(tmp_path)
    assert p.input_names == ["data"] and p.output_names == ["softmax"]
    (out,) = p.run([x])
    assert _same(out, before)
    (again,) = p.run({"data": x[:3]})  # another batch size: the net is planned again
    assert _same(again, before[:3])


def test_export_from_the_training_model_cuts_the_inference_net(tmp_path):
    ws, train, test, x = _trained()
    before = _predict(ws, test, x)
    # The forward part of the training net up to the logits: no gradient, loss or optimizer ops.
    checkpoint.export_model(train, ws, tmp_path, ["data"], ["fc2"])
    predict = serialize.load_netdef(tmp_path / "predict_net.pb")
    assert [op.type for op in predict.op] == ["FC", "Relu", "FC"]
    (logits,) = checkpoint.load_model(tmp_path).run([x])
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), before, rtol=1e-5, atol=1e-7)


def test_export_drops_training_devices_unless_asked(tmp_path):
    ws, _, _, x = _trained()
    test = ModelHelper("ck_test_dev", init_params=False)
    with kaffa.DeviceScope(kaffa.DeviceOption("cpu")):
        models.mlp(test, "data", DIMS, is_test=True)
    assert all(op.HasField("device_option") for op in test.net.Proto().op)
    checkpoint.export_model(test, ws, tmp_path / "plain", ["data"], ["softmax"])
    checkpoint.export_model(test, ws, tmp_path / "cpu", ["data"], ["softmax"], device="cpu")
    for name in ("init_net.pb", "predict_net.pb"):
        plain = serialize.load_netdef(tmp_path / "plain" / name)
        assert not any(op.HasField("device_option") for op in plain.op)
        stamped = serialize.load_netdef(tmp_path / "cpu" / name)
        assert all(op.HasField("device_option") for op in stamped.op)
    (a,) = checkpoint.load_model(tmp_path / "plain").run([x])
    (b,) = checkpoint.load_model(tmp_path / "cpu").run([x])
    assert _same(a, b)


def test_export_refuses_to_freeze_a_label_into_init_net(tmp_path):
    ws, train, _, _ = _trained()
    with pytest.raises(ValueError, match=r"reads \['label'\].*is_test=True"):
        checkpoint.export_model(train, ws, tmp_path, ["data"], ["softmax"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        np.array([1.5, -2.0]),  # float64 values that float32 holds exactly
        np.array([[1, -2]], np.int32),
        np.array([2**40, -1], np.int64),
        np.array([True, False]),
        np.array([0.1, 65504.0], np.float16),
        np.zeros((0, 3), np.float32),
        np.array(3.25, np.float32),
    ],
    ids=lambda v: f"{v.dtype}{list(v.shape)}",
)
def test_fill_ops_recreate_values_exactly(value):
    ws = Workspace("fill")
    ws.run_operator_once(checkpoint.fill_op("v", value))
    assert _same(ws.fetch_blob("v"), value)


def test_fill_op_refuses_lossy_or_unknown_dtypes():
    with pytest.raises(ValueError, match="float64 blob 'd' exactly"):
        checkpoint.fill_op("d", np.array([0.1]))
    with pytest.raises(ValueError, match="dtype uint8"):
        checkpoint.fill_op("u", np.array([1], np.uint8))


def test_predictor_checks_its_inputs(tmp_path):
    ws, _, test, x = _trained()
    checkpoint.export_model(test, ws, tmp_path, ["data"], ["softmax"])
    p = checkpoint.load_model(tmp_path)
    with pytest.raises(kaffa.KaffaError, match=r"got 2 input\(s\), the net takes 1"):
        p.run([x, x])
    with pytest.raises(kaffa.KaffaError, match=r"\['label'\] are not inputs"):
        p.run({"label": x})
    p.run([x])
    assert "placement of net" in str(p.placement_report)
