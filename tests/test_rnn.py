"""Recurrent networks: RecurrentNetwork, LSTMUnit, GRUUnit, kaffa.rnn layers, gradients through
time, the ONNX LSTM/GRU/RNN translation and the sequence-training example."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import kaffa
from kaffa import ModelHelper, Net, Workspace, brew, rnn
from kaffa.errors import ArgumentError, KaffaError, ShapeError

ROOT = Path(__file__).resolve().parents[1]


def sig(x):
    return 1 / (1 + np.exp(-x))


def np_lstm(x, wx, b, wh, fb=0.0, reverse=False, lengths=None, h0=None, c0=None):
    """float64 LSTM, gates i, f, o, g (LSTMUnit's order); rows past their length keep state."""
    t_count, n, _ = x.shape
    h_size = wh.shape[1]
    h = np.zeros((n, h_size)) if h0 is None else h0.copy()
    c = np.zeros((n, h_size)) if c0 is None else c0.copy()
    out = np.zeros((t_count, n, h_size))
    for t in range(t_count - 1, -1, -1) if reverse else range(t_count):
        g = x[t] @ wx.T + b + h @ wh.T
        i, f = sig(g[:, :h_size]), sig(g[:, h_size : 2 * h_size] + fb)
        o, gg = sig(g[:, 2 * h_size : 3 * h_size]), np.tanh(g[:, 3 * h_size :])
        c_new = f * c + i * gg
        h_new = o * np.tanh(c_new)
        keep = np.ones((n, 1), bool) if lengths is None else (t < lengths)[:, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        out[t] = h
    return out, h, c


def np_gru(x, wx, b, w_rz, w_n, reverse=False):
    """float64 GRU as kaffa.rnn builds it (gates r, z, n; reset before the recurrent product)."""
    t_count, n, _ = x.shape
    hs = w_n.shape[0]
    h = np.zeros((n, hs))
    out = np.zeros((t_count, n, hs))
    for t in range(t_count - 1, -1, -1) if reverse else range(t_count):
        p = x[t] @ wx.T + b
        rz = p[:, : 2 * hs] + h @ w_rz.T
        r, z = sig(rz[:, :hs]), sig(rz[:, hs:])
        cand = np.tanh(p[:, 2 * hs :] + (r * h) @ w_n.T)
        h = z * h + (1 - z) * cand
        out[t] = h
    return out, h


def _run(model, feeds, seed=0, scale=0.3):
    """Init the model's params in float64 (seeded), feed, run; returns the workspace."""
    ws = Workspace()
    ws.run_net_once(model.param_init_net)
    rng = np.random.default_rng(seed)
    for p in model.get_params():
        shape = ws.fetch_blob(str(p)).shape
        ws.feed_blob(str(p), rng.normal(0, scale, shape))
    for k, v in feeds.items():
        ws.feed_blob(k, v)
    ws.create_net(model.net)
    ws.run_net(model.net.name)
    return ws


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_forward_matches_float64_numpy(bidirectional):
    model = ModelHelper("lstm")
    out = rnn.lstm(model, "x", 3, 5, "l", forget_bias=1.0, bidirectional=bidirectional)
    x = np.random.default_rng(1).normal(size=(6, 4, 3))
    ws = _run(model, {"x": x})
    f = ws.fetch_blob
    dirs = [("l/forward/", False), ("l/backward/", True)] if bidirectional else [("l/", False)]
    want = [np_lstm(x, f(p + "i2h_w"), f(p + "i2h_b"), f(p + "gates_t_w"), 1.0, rev) for p, rev in dirs]
    got_out = f(str(out.output))
    assert got_out.dtype == np.float64 and got_out.shape == (6, 4, 5 * len(dirs))
    np.testing.assert_allclose(got_out, np.concatenate([w[0] for w in want], 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f(str(out.hidden_last)), np.concatenate([w[1] for w in want], 1), atol=1e-12)
    np.testing.assert_allclose(f(str(out.cell_last)), np.concatenate([w[2] for w in want], 1), atol=1e-12)
    # The reverse direction's last state is the one after t = 0, not t = T-1.
    if bidirectional:
        np.testing.assert_allclose(got_out[0, :, 5:], f(str(out.hidden_last))[:, 5:], atol=1e-12)


def test_stacked_lstm_and_brew_entry():
    model = ModelHelper("deep")
    out = brew.lstm(model, "x", 2, [4, 3], "deep")
    x = np.random.default_rng(2).normal(size=(5, 2, 2))
    ws = _run(model, {"x": x})
    f = ws.fetch_blob
    h1, _, _ = np_lstm(x, f("deep/layer0/i2h_w"), f("deep/layer0/i2h_b"), f("deep/layer0/gates_t_w"))
    h2, last, _ = np_lstm(h1, f("deep/layer1/i2h_w"), f("deep/layer1/i2h_b"), f("deep/layer1/gates_t_w"))
    np.testing.assert_allclose(f(str(out.output)), h2, atol=1e-12)
    np.testing.assert_allclose(f(str(out.hidden_last)), last, atol=1e-12)
    assert len(out.finals) == 2


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_forward_matches_float64_numpy(bidirectional):
    model = ModelHelper("gru")
    out = brew.gru(model, "x", 3, 4, "g", bidirectional=bidirectional)
    assert out.cell_last is None
    x = np.random.default_rng(3).normal(size=(5, 2, 3))
    ws = _run(model, {"x": x})
    f = ws.fetch_blob
    dirs = [("g/forward/", False), ("g/backward/", True)] if bidirectional else [("g/", False)]
    want = [
        np_gru(x, f(p + "i2h_w"), f(p + "i2h_b"), f(p + "gates_rz_w"), f(p + "gates_n_w"), rev)
        for p, rev in dirs
    ]
    np.testing.assert_allclose(f(str(out.output)), np.concatenate([w[0] for w in want], 2), atol=1e-12)
    np.testing.assert_allclose(f(str(out.hidden_last)), np.concatenate([w[1] for w in want], 1), atol=1e-12)


def test_seq_lengths_keep_state_in_both_directions():
    model = ModelHelper("masked")
    out = rnn.lstm(model, "x", 2, 3, "m", seq_lengths="lengths", bidirectional=True)
    x = np.random.default_rng(4).normal(size=(5, 3, 2))
    lengths = np.array([5, 2, 3], np.int32)
    ws = _run(model, {"x": x, "lengths": lengths})
    f = ws.fetch_blob
    fw = np_lstm(x, f("m/forward/i2h_w"), f("m/forward/i2h_b"), f("m/forward/gates_t_w"), lengths=lengths)
    bw = np_lstm(
        x,
        f("m/backward/i2h_w"),
        f("m/backward/i2h_b"),
        f("m/backward/gates_t_w"),
        reverse=True,
        lengths=lengths,
    )
    np.testing.assert_allclose(f(str(out.output)), np.concatenate([fw[0], bw[0]], 2), atol=1e-12)
    np.testing.assert_allclose(f(str(out.hidden_last)), np.concatenate([fw[1], bw[1]], 1), atol=1e-12)
    # Row 1 (length 2): the forward state stops changing after t = 1.
    np.testing.assert_allclose(f(str(out.output))[4, 1, :3], f(str(out.output))[1, 1, :3])


def _loss_model(kind: str, bidirectional: bool) -> tuple[ModelHelper, str]:
    model = ModelHelper("train")
    build = rnn.lstm if kind == "lstm" else rnn.gru
    out = build(model, "x", 2, 3, "r", bidirectional=bidirectional, num_layers=2)
    prod = model.net.Mul([out.output, "g"], "weighted")
    loss = model.net.SumElements([prod], "loss")
    return model, str(loss)


@pytest.mark.parametrize("kind,bidirectional", [("lstm", False), ("lstm", True), ("gru", True)])
def test_gradient_through_time_matches_finite_differences(kind, bidirectional):
    model, loss = _loss_model(kind, bidirectional)
    grads = model.add_gradient_ops({loss: "loss_seed"})  # a float64 seed: the whole check is float64
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 2, 2))
    g = rng.normal(size=(4, 2, 3 * (2 if bidirectional else 1)))
    ws = _run(model, {"x": x, "g": g, "loss_seed": np.array(1.0)}, scale=0.5)
    params = {str(p): ws.fetch_blob(str(p)).copy() for p in model.get_params()}
    analytic = {p: ws.fetch_blob(str(grads[p])) for p in params}
    analytic["x"] = ws.fetch_blob(str(grads["x"]))

    fwd = Net("fwd")
    fwd.Proto().op.extend(op for op in model.net.Proto().op if not op.is_gradient_op)

    def loss_at(name, value):
        w = Workspace()
        for k, v in {**params, "x": x, "g": g, name: value}.items():
            w.feed_blob(k, v)
        w.run_net_once(fwd.Proto())
        return float(w.fetch_blob(loss))

    picks = np.random.default_rng(6)
    for name, value in [*params.items(), ("x", x)]:
        for _ in range(2):
            idx = tuple(picks.integers(0, d) for d in value.shape)
            plus, minus = value.copy(), value.copy()
            plus[idx] += 1e-6
            minus[idx] -= 1e-6
            fd = (loss_at(name, plus) - loss_at(name, minus)) / 2e-6
            assert analytic[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, idx)


def test_recurrent_network_op_errors():
    step = Net("step")
    step.Tanh(step.Add(["x_t", "h_prev"], "s"), "h")
    base = dict(step_net=step.Proto(), sequence_inputs=["x_t"], state_inputs=["h_prev"], state_outputs=["h"])
    ws = Workspace()
    ws.feed_blob("x", np.zeros((3, 2, 4), np.float32))
    ws.feed_blob("h0", np.zeros((2, 4), np.float32))
    # Outputs: one state sequence + one final state.
    net = Net("bad_outputs")
    with pytest.raises(KaffaError, match="make 2 outputs"):
        net.RecurrentNetwork(["x", "h0"], ["a"], **base)
        ws.create_net(net)
    with pytest.raises(ArgumentError, match="must pair up"):
        Net("n").RecurrentNetwork(["x", "h0"], ["a", "b"], **{**base, "state_outputs": []})
    # A state that changes shape is a ShapeError naming the op.
    ws.feed_blob("h_bad", np.zeros((2, 5), np.float32))
    net = Net("bad_state")
    net.RecurrentNetwork(["x", "h_bad"], ["a", "b"], **base)
    with pytest.raises(ShapeError, match="RecurrentNetwork"):
        ws.create_net(net)
        ws.run_net("bad_state")


def test_recurrent_net_helper_with_step_output_and_timestep():
    step = Net("step")
    step.Add(["x_t", "acc_prev"], "acc")
    step.Cast(["t"], "t_f", to="DOUBLE")
    step.Mul(["acc", "t_f"], "y")
    net = Net("scan")
    acc_all, acc_last, y_all = rnn.recurrent_net(
        net, step, {"x_t": "x"}, [("acc_prev", "acc", "zero")], step_outputs=["y"], timestep="t", name="scan"
    )
    ws = Workspace()
    x = np.arange(8, dtype=np.float64).reshape(4, 2)
    ws.feed_blob("x", x)
    ws.feed_blob("zero", np.zeros(2))
    ws.run_net_once(net.Proto())
    np.testing.assert_array_equal(ws.fetch_blob(str(acc_all)), np.cumsum(x, 0))
    np.testing.assert_array_equal(ws.fetch_blob(str(acc_last)), x.sum(0))
    np.testing.assert_array_equal(ws.fetch_blob(str(y_all)), np.cumsum(x, 0) * np.arange(4)[:, None])


# -- ONNX ------------------------------------------------------------------------------------------
onnx_cases = [
    ("LSTM", {"direction": "bidirectional", "clip": 1.5}, True, True),
    ("LSTM", {"layout": 1, "activations": ["HardSigmoid", "Tanh", "Tanh"]}, False, False),
    ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"]}, True, True),
    ("GRU", {"linear_before_reset": 1, "direction": "reverse"}, True, True),
    ("GRU", {"direction": "bidirectional", "layout": 1}, True, False),
    ("RNN", {"activations": ["LeakyRelu"], "activation_alpha": [0.2]}, True, False),
    (
        "RNN",
        {
            "direction": "bidirectional",
            "activations": ["Relu", "ScaledTanh"],
            "activation_alpha": [0.7],
            "activation_beta": [1.3],
        },
        False,
        True,
    ),
]


@pytest.mark.parametrize("kind,attrs,with_lens,with_init", onnx_cases)
def test_onnx_recurrent_nodes_match_onnxruntime(kind, attrs, with_lens, with_init):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto as OT
    from onnx import helper

    from kaffa.onnx import backend

    unsupported_act = "HardSigmoid" in attrs.get("activations", [])
    rng = np.random.default_rng(7)
    t, n, i, h = 4, 3, 2, 3
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    g = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    layout = attrs.get("layout", 0)
    feeds = {
        "X": rng.normal(size=(n, t, i) if layout else (t, n, i)).astype(np.float32),
        "W": rng.normal(0, 0.5, (dirs, g * h, i)).astype(np.float32),
        "R": rng.normal(0, 0.5, (dirs, g * h, h)).astype(np.float32),
        "B": rng.normal(0, 0.5, (dirs, 2 * g * h)).astype(np.float32),
    }
    names = ["X", "W", "R", "B", "", ""]
    if with_lens:
        feeds["L"] = np.array([4, 1, 3], np.int32)
        names[4] = "L"
    if with_init:
        shape = (n, dirs, h) if layout else (dirs, n, h)
        feeds["H0"] = rng.normal(size=shape).astype(np.float32)
        names[5] = "H0"
        if kind == "LSTM":
            feeds["C0"] = rng.normal(size=shape).astype(np.float32)
            names.append("C0")
    while names and not names[-1]:
        names.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])

    def make(attributes, values):
        node = helper.make_node(kind, names, outs, hidden_size=h, **attributes)
        inputs = [
            helper.make_tensor_value_info(k, OT.INT32 if k == "L" else OT.FLOAT, list(v.shape))
            for k, v in values.items()
        ]
        outputs = [helper.make_tensor_value_info(o, OT.FLOAT, None) for o in outs]
        graph = helper.make_graph([node], "g", inputs, outputs)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])

    model = make(attrs, feeds)
    if unsupported_act:  # not expressible in a step net: a clean import error, listing the node
        with pytest.raises(KaffaError, match="HardSigmoid"):
            backend.prepare(model)
        return
    ort_attrs, ort_feeds = dict(attrs), dict(feeds)
    if layout:  # onnxruntime runs only layout 0: the same model time-major, outputs transposed back
        ort_attrs.pop("layout")
        ort_feeds["X"] = feeds["X"].transpose(1, 0, 2)
        for k in ("H0", "C0"):
            if k in feeds:
                ort_feeds[k] = feeds[k].transpose(1, 0, 2)
    session = ort.InferenceSession(
        make(ort_attrs, ort_feeds).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = session.run(None, ort_feeds)
    if layout:
        want = [want[0].transpose(2, 0, 1, 3), *(w.transpose(1, 0, 2) for w in want[1:])]
    got = backend.prepare(model).run(feeds)
    for name, w, v in zip(outs, want, got):
        assert np.asarray(v).shape == w.shape, name
        np.testing.assert_allclose(np.asarray(v), w, rtol=1e-5, atol=1e-5, err_msg=name)
    del onnx


def test_onnx_node_suite_recurrent_cases_pass():
    pytest.importorskip("onnx")
    from kaffa_conformance.onnx_node_suite import load_cases, run_case

    cases, _ = load_cases(r"^test_(lstm|gru|simple_rnn|rnn)_", ["lstm", "gru", "rnn"])
    assert len(cases) >= 18
    failed = [(c.name, r.message) for c in cases if (r := run_case(c, "cpu")).status != "pass"]
    assert not failed


# -- the example -----------------------------------------------------------------------------------
def test_train_sequence_example_beats_the_mean_baseline_10x(capsys):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_sequence
    finally:
        sys.path.remove(str(ROOT / "examples"))
    kaffa.set_random_seed(0)
    status = train_sequence.main(["--seed", "0"])
    text = capsys.readouterr().out
    m = re.search(r"final test mse ([\d.]+)\s+baseline \(predict the mean\) ([\d.]+)", text)
    assert m, text
    mse, baseline = float(m.group(1)), float(m.group(2))
    assert baseline / mse >= 10.0
    assert status == 0 and "reaches the target" in text
