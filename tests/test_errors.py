"""Every error class a user can hit, each named by net, op index, op type and input shapes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kaffa
from kaffa.core import Net, create_operator
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import make_argument


def _raw_net(name: str, *ops: OperatorDef) -> NetDef:
    net = NetDef(name=name)
    net.op.extend(ops)
    return net


def test_unknown_op_suggests_a_name():
    with pytest.raises(
        kaffa.UnknownOperatorError, match=r"unknown operator type 'Convv'; did you mean 'Conv'"
    ):
        Net("n").Convv(["x", "w"], "y")


def test_unknown_op_in_a_netdef_names_net_and_index(ws):
    ws.feed_blob("x", np.zeros(3, dtype=np.float32))
    net = _raw_net(
        "model", create_operator("Relu", ["x"], ["y"]), OperatorDef(type="Rleu", input=["y"], output=["z"])
    )
    with pytest.raises(kaffa.UnknownOperatorError) as info:
        ws.create_net(net)
    msg = str(info.value)
    assert "'Rleu'" in msg and "'Relu'" in msg and "net 'model'" in msg and "op #1" in msg


def test_wrong_number_of_inputs(ws):
    ws.feed_blob("x", np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(kaffa.SchemaError, match="FC takes 2 to 3 inputs, got 1"):
        Net("n").FC(["x"], "y")
    net = _raw_net("m", OperatorDef(type="FC", input=["x"], output=["y"]))
    with pytest.raises(kaffa.SchemaError, match=r"FC takes 2 to 3 inputs, got 1 \(in net 'm', op #0 FC"):
        ws.create_net(net)


def test_wrong_argument_type_and_unknown_argument():
    with pytest.raises(kaffa.ArgumentError, match="argument 'kernel' must be int, got a string"):
        Net("n").Conv(["x", "w"], "y", kernel="3")
    with pytest.raises(kaffa.ArgumentError, match="argument 'kernel' must be int, got a float"):
        Net("n").Conv(["x", "w"], "y", kernel=3.5)
    with pytest.raises(kaffa.ArgumentError, match="no argument 'kernal'; did you mean 'kernel'"):
        Net("n").Conv(["x", "w"], "y", kernal=3)


def test_argument_type_checked_in_a_netdef(ws):
    op = OperatorDef(type="Softmax", input=["x"], output=["y"])
    op.arg.append(make_argument("axis", 1.5))
    ws.feed_blob("x", np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(
        kaffa.ArgumentError, match=r"'axis' must be int, got a float \(in net 'bad', op #0 Softmax"
    ):
        ws.create_net(_raw_net("bad", op))


@pytest.mark.parametrize(
    ("op", "inputs", "args", "expect"),
    [
        (
            "Conv",
            {"X": (1, 3, 8, 8), "W": (4, 2, 3, 3)},
            {},
            "filter expects 2 channels per group x 1 groups but X has 3",
        ),
        (
            "FC",
            {"X": (5, 7), "W": (4, 6)},
            {},
            "X flattened at axis 1 has 7 columns but W flattened at axis_w 1 has 6",
        ),
        ("Add", {"A": (2, 3), "B": (4,)}, {}, "shapes [2, 3] and [4] do not broadcast"),
    ],
)
def test_shape_mismatch_names_net_op_and_shapes(ws, op, inputs, args, expect):
    for name, shape in inputs.items():
        ws.feed_blob(name, np.zeros(shape, dtype=np.float32))
    first = list(inputs)
    net = _raw_net(
        "shapes",
        create_operator("Relu", [first[0]], ["X2"]),
        create_operator(op, ["X2", *first[1:]], ["Y"], **args),
    )
    with pytest.raises(kaffa.ShapeError) as info:
        ws.create_net(net)
    msg = str(info.value)
    assert expect in msg
    assert "net 'shapes'" in msg and f"op #1 {op}" in msg
    assert f"X2: float32[{','.join(map(str, inputs[first[0]]))}]" in msg
    assert f"{first[1]}: float32[{','.join(map(str, inputs[first[1]]))}]" in msg


def test_shape_mismatch_found_at_run_time(ws):
    ws.feed_blob("A", np.zeros((2, 3), dtype=np.float32))
    ws.feed_blob("B", np.zeros((3,), dtype=np.float32))
    ws.create_net(_raw_net("late", create_operator("Add", ["A", "B"], ["C"])))
    ws.feed_blob("B", np.zeros((5,), dtype=np.float32))
    with pytest.raises(
        kaffa.ShapeError,
        match=r"do not broadcast \(in net 'late', op #0 Add with inputs A: float32\[2,3\], B: float32\[5\]\)",
    ):
        ws.run_net("late")


def test_missing_input_blob(ws):
    net = _raw_net("m", create_operator("Relu", ["nope"], ["y"]))
    with pytest.raises(
        kaffa.MissingBlobError, match=r"input 'nope' does not exist .* \(in net 'm', op #0 Relu"
    ):
        ws.create_net(net)


def test_corrupt_and_truncated_model_bytes(ws):
    good = _raw_net("g", create_operator("Relu", ["x"], ["y"])).SerializeToString()
    with pytest.raises(kaffa.ModelFormatError):
        ws.create_net(good[:-3])
    with pytest.raises(kaffa.ModelFormatError):
        ws.create_net(b"\xff\xff\xff\xff garbage")


def test_unsupported_ops_listed_at_once_in_strict_mode(ws, mock):
    dev = kaffa.DeviceOption("mock")
    net = Net("strict")
    net.Relu("x", "a", device_option=dev)
    net.Tanh("a", "b", device_option=dev)
    net.Sigmoid("b", "c", device_option=dev)
    ws.feed_blob("x", np.ones(4, dtype=np.float32), "mock")
    with pytest.raises(kaffa.UnsupportedOperatorError) as info:
        ws.create_net(net, policy="strict")
    err = info.value
    assert [(u.index, u.op_type) for u in err.unsupported] == [(1, "Tanh"), (2, "Sigmoid")]
    assert "op #1 Tanh on mock:0" in str(err) and "op #2 Sigmoid on mock:0" in str(err)
    assert "no Tanh kernel" in str(err)


def test_plugin_raising_on_import_is_quarantined(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    env_code = textwrap.dedent(
        """
        import os, sys, warnings
        sys.path.insert(0, sys.argv[1])
        os.environ["KAFFA_PLUGINS"] = "broken_plugin"
        import numpy as np, kaffa
        from kaffa.plugins import registry
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            reg = registry()
        info = reg.plugins["broken_plugin"]
        assert info.quarantined and "broken on purpose" in info.error, info
        assert any("quarantined" in str(x.message) for x in w)
        ws = kaffa.Workspace()
        ws.feed_blob("x", np.array([-1.0, 2.0], dtype=np.float32))
        ws.run_operator_once(kaffa.create_operator("Relu", ["x"], ["y"]))
        assert ws.fetch_blob("y").tolist() == [0.0, 2.0]
        print("OK")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", env_code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")
    cli = subprocess.run(
        [sys.executable, "-m", "kaffa", "info"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_env(), "KAFFA_PLUGINS": "broken_plugin", "PYTHONPATH": str(tmp_path)},
    )
    assert cli.returncode == 0, cli.stderr
    assert "broken_plugin: QUARANTINED" in cli.stdout and "broken on purpose" in cli.stdout
    assert "cpu" in cli.stdout and "available" in cli.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("KAFFA_")}
