"""The signal family: DFT/STFT against numpy.fft and onnx.reference, shape inference and errors,
gradients through a net, the window generators and MelWeightMatrix against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as OT
from onnx import helper
from onnx.reference import ReferenceEvaluator
from optest import infer, run

from kaffa.core import create_operator
from kaffa.errors import ShapeError
from kaffa.gradients import add_gradient_ops
from kaffa.proto import NetDef
from kaffa.schema import TensorInfo
from kaffa.workspace import Workspace

F32 = np.dtype(np.float32)


def _complex(y):
    return y[..., 0] + 1j * y[..., 1]


def test_dft_matches_numpy_fft():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 3, 2))
    z = _complex(x)
    (y,) = run("DFT", [x], axis=1)
    np.testing.assert_allclose(_complex(y), np.fft.fft(z, axis=1), atol=1e-12)
    (y,) = run("DFT", [x], axis=1, inverse=1, dft_length=16)
    np.testing.assert_allclose(_complex(y), np.fft.ifft(z, n=16, axis=1), atol=1e-12)
    real = rng.normal(size=(4, 9, 1))
    (y,) = run("DFT", [real], onesided=1)
    np.testing.assert_allclose(_complex(y), np.fft.rfft(real[..., 0], axis=1), atol=1e-12)
    # irfft: the one-sided spectrum back to the real signal.
    (back,) = run("DFT", [y], inverse=1, onesided=1, dft_length=9)
    np.testing.assert_allclose(back, real, atol=1e-12)


def test_dft_shapes_and_errors():
    x = TensorInfo((1, 10, 4, 1), F32)
    assert infer("DFT", [x], axis=1)[0] == TensorInfo((1, 10, 4, 2), F32)
    assert infer("DFT", [x], axis=1, onesided=1)[0] == TensorInfo((1, 6, 4, 2), F32)
    assert infer("DFT", [x], axis=2, dft_length=7)[0] == TensorInfo((1, 10, 7, 2), F32)
    assert infer("DFT", [TensorInfo((6, 2), F32)], axis=0, inverse=1, onesided=1)[0].shape == (10, 1)
    assert infer("DFT", [TensorInfo((None, 2), F32)], axis=0)[0].shape == (None, 2)
    with pytest.raises(ShapeError, match="component dim"):
        infer("DFT", [x], axis=-1)
    with pytest.raises(ShapeError, match=r"must be 1 \(real\) or 2"):
        infer("DFT", [TensorInfo((4, 3), F32)], axis=0)
    with pytest.raises(ShapeError, match=r"DFT.*out of range"):
        run("DFT", [np.zeros((4, 1), np.float32)], axis=3)


def _onnx_run(node, feeds, outputs, opset=20):
    ins = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in feeds.items()
    ]
    outs = [helper.make_tensor_value_info(o, OT.UNDEFINED, None) for o in outputs]
    model = helper.make_model(
        helper.make_graph([node], "g", ins, outs), opset_imports=[helper.make_opsetid("", opset)]
    )
    return model, ReferenceEvaluator(model).run(None, feeds)


def test_onnx_import_matches_onnx_reference():
    from kaffa.onnx import backend as kb

    rng = np.random.default_rng(1)
    sig = rng.normal(size=(2, 40, 1)).astype(np.float32)
    win = np.hanning(10).astype(np.float32)
    step = np.array(3, np.int64)
    node = helper.make_node("STFT", ["s", "step", "w"], ["y"], onesided=1)
    model, want = _onnx_run(node, {"s": sig, "step": step, "w": win}, ["y"], opset=17)
    (got,) = kb.prepare(model).run([sig, step, win])
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)

    # Windows and the mel matrix: their inputs are constants at import (so the importer folds
    # them); the kaffa ops themselves are compared here.
    for op, periodic in (("HannWindow", 1), ("HammingWindow", 0), ("BlackmanWindow", 1)):
        size = np.array(13, np.int32)
        node = helper.make_node(op, ["n"], ["y"], periodic=periodic, output_datatype=OT.DOUBLE)
        _, want = _onnx_run(node, {"n": size}, ["y"], opset=17)
        (got,) = run(op, [], size=13, periodic=periodic, dtype=np.float64)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want[0], atol=1e-12)

    feeds = {
        "bins": np.array(10, np.int64),
        "n": np.array(256, np.int64),
        "rate": np.array(16000, np.int64),
        "lo": np.array(50.0, np.float32),
        "hi": np.array(7000.0, np.float32),
    }
    node = helper.make_node("MelWeightMatrix", list(feeds), ["y"])
    _, want = _onnx_run(node, feeds, ["y"], opset=17)
    (got,) = run(
        "MelWeightMatrix",
        [],
        num_mel_bins=10,
        dft_length=256,
        sample_rate=16000,
        lower_edge_hertz=50.0,
        upper_edge_hertz=7000.0,
    )
    assert got.shape == (129, 10)
    np.testing.assert_array_equal(got, want[0])


def test_window_translator_takes_the_size_and_dtype():
    from kaffa.onnx.importer import import_model

    n = helper.make_tensor("n", OT.INT64, [], [8])
    y = helper.make_tensor_value_info("y", OT.FLOAT, [8])
    x = helper.make_tensor_value_info("x", OT.FLOAT, [8])
    nodes = [
        helper.make_node("HannWindow", ["n"], ["w"], periodic=0),
        helper.make_node("Mul", ["x", "w"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[n])
    _, pred = import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    # The window is folded to a constant (its input is one) and read by Mul.
    assert [op.type for op in pred.op] == ["Mul"]


def test_dft_and_stft_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    for op, inputs, args in (
        ("DFT", [rng.normal(size=(3, 7, 2))], {"axis": 1, "onesided": 1, "dft_length": 6}),
        ("STFT", [rng.normal(size=(1, 20, 1)), rng.uniform(size=6)], {"frame_step": 4}),
    ):
        names = [f"x{i}" for i in range(len(inputs))]
        fwd = create_operator(op, names, ["y"], **args)
        w = rng.normal(size=run(op, inputs, **args)[0].shape)
        grads, gmap = add_gradient_ops([fwd], {"y": "dy"})  # dy = w: the gradient of sum(y * w)
        ws = Workspace("grad")
        for n, x in zip(names, inputs):
            ws.feed_blob(n, x)
        ws.feed_blob("dy", w)
        net = NetDef(name="g")
        net.op.extend([fwd, *grads])
        ws.create_net(net).run()
        for i, (n, x) in enumerate(zip(names, inputs)):
            g = ws.fetch_blob(gmap[n])
            e = np.zeros_like(x)
            e.flat[3] = 1e-6

            def loss(v, i=i, op=op, inputs=inputs, args=args, w=w):
                ins = list(inputs)
                ins[i] = v
                return float(np.sum(run(op, ins, **args)[0] * w))

            fd = (loss(x + e) - loss(x - e)) / 2e-6
            assert g.flat[3] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_stft_frames_and_window_length_are_checked():
    sig = TensorInfo((2, 30, 1), F32)
    assert infer("STFT", [sig, TensorInfo((8,), F32)], frame_step=4)[0] == TensorInfo((2, 6, 5, 2), F32)
    assert infer("STFT", [sig], frame_step=5, frame_length=10, onesided=0)[0].shape == (2, 5, 10, 2)
    with pytest.raises(ShapeError, match="does not have frame_length"):
        infer("STFT", [sig, TensorInfo((8,), F32)], frame_step=4, frame_length=6)
    with pytest.raises(ShapeError, match="does not fit"):
        infer("STFT", [sig], frame_step=4, frame_length=31)
    with pytest.raises(ShapeError, match="batch, length, 1 or 2"):
        infer("STFT", [TensorInfo((30,), F32)], frame_step=4, frame_length=8)


def test_mel_matrix_rows_are_triangles_and_bad_edges_raise():
    (m,) = run(
        "MelWeightMatrix",
        [],
        num_mel_bins=6,
        dft_length=64,
        sample_rate=8000,
        lower_edge_hertz=100.0,
        upper_edge_hertz=3500.0,
    )
    assert m.shape == (33, 6) and m.dtype == F32
    assert (m >= 0).all() and (m <= 1).all() and (m.max(axis=0) == 1).all()
    with pytest.raises(Exception, match="past the last bin"):
        run(
            "MelWeightMatrix",
            [],
            num_mel_bins=4,
            dft_length=16,
            sample_rate=100,
            lower_edge_hertz=0.0,
            upper_edge_hertz=90.0,
        )
