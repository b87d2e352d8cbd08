"""The linalg family: Einsum's equation parsing and shape inference, its gradient on repeated and
broadcast letters, Det and its gradient at singular matrices, and ONNX import."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as OT
from onnx import helper
from optest import gradients, infer, run

from kaffa.errors import ArgumentError, ShapeError
from kaffa.ops.linalg import parse_einsum
from kaffa.schema import TensorInfo

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def test_parse_einsum_expands_ellipses_and_implicit_outputs():
    ins, out = parse_einsum("...ij, ...jk", [4, 3])
    assert len(ins[0]) == 4 and len(ins[1]) == 3
    assert ins[0][-2:] == "ij" and ins[1][-2:] == "jk" and ins[0][1] == ins[1][0]
    assert out == ins[0][:2] + "ik"  # broadcast dims first, then the once-used letters sorted
    assert parse_einsum("ba,c", [2, 1]) == (["ba", "c"], "abc")
    assert parse_einsum("ii", [2]) == (["ii"], "")
    with pytest.raises(ArgumentError, match="has 2 inputs"):
        parse_einsum("i,j->ij", [1])
    with pytest.raises(ArgumentError, match="malformed"):
        parse_einsum("i1->i", [2])
    with pytest.raises(ArgumentError, match="in no input"):
        parse_einsum("ij->k", [2])
    with pytest.raises(ShapeError, match="need rank 2"):
        parse_einsum("ij->i", [3])
    with pytest.raises(ShapeError, match="leaves out"):
        parse_einsum("...i->i", [2])


def test_einsum_shapes():
    a, b = TensorInfo((2, 1, 3, 4), F32), TensorInfo((5, 4, 6), F32)
    assert infer("Einsum", [a, b], equation="...ij,...jk->...ik")[0] == TensorInfo((2, 5, 3, 6), F32)
    assert infer("Einsum", [TensorInfo((None, 3), F32)], equation="ij->j")[0].shape == (3,)
    with pytest.raises(ShapeError, match="letter 'j' is 4 in one input and 5"):
        infer("Einsum", [TensorInfo((3, 4), F32), TensorInfo((5, 2), F32)], equation="ij,jk->ik")
    with pytest.raises(ShapeError, match="share one dtype"):
        infer("Einsum", [TensorInfo((3,), F32), TensorInfo((3,), F64)], equation="i,i")


def test_einsum_runs_like_numpy_on_ints_and_floats():
    rng = np.random.default_rng(0)
    a = rng.integers(-5, 5, size=(3, 4)).astype(np.int32)
    b = rng.integers(-5, 5, size=(4, 2)).astype(np.int32)
    (y,) = run("Einsum", [a, b], equation="ij,jk")
    assert y.dtype == np.int32 and (y == a @ b).all()
    x = rng.normal(size=(2, 3, 3)).astype(np.float16)
    (d,) = run("Einsum", [x], equation="...ii->...i")
    np.testing.assert_allclose(d, np.einsum("...ii->...i", x.astype(np.float32)), rtol=1e-3)


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 2)]),
        ("ii->i", [(3, 3)]),
        ("ii", [(4, 4)]),
        ("ab,ab->a", [(3, 1), (3, 4)]),
        ("ij,k->k", [(2, 3), (4,)]),
        ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ],
)
def test_einsum_gradient_matches_finite_differences(equation, shapes):
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=s) for s in shapes]
    y = np.einsum(equation, *xs)
    dy = rng.normal(size=y.shape)
    got = gradients("Einsum", xs, dy, equation=equation)
    for i, x in enumerate(xs):
        assert got[i].shape == x.shape
        for k in range(x.size):
            e = np.zeros(x.shape)
            e.flat[k] = 1e-6
            hi = [*xs[:i], x + e, *xs[i + 1 :]]
            lo = [*xs[:i], x - e, *xs[i + 1 :]]
            fd = (np.sum(np.einsum(equation, *hi) * dy) - np.sum(np.einsum(equation, *lo) * dy)) / 2e-6
            assert got[i].flat[k] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_det_and_its_gradient_at_a_singular_matrix():
    x = np.array([[[2.0, 1.0], [1.0, 3.0]], [[1.0, 2.0], [2.0, 4.0]]])
    (d,) = run("Det", [x])
    np.testing.assert_allclose(d, [5.0, 0.0], atol=1e-12)
    (g,) = gradients("Det", [x], np.array([1.0, 2.0]))
    # d det / dX = the cofactor matrix, [[d, -c], [-b, a]] for [[a, b], [c, d]].
    np.testing.assert_allclose(g[0], [[3.0, -1.0], [-1.0, 2.0]], atol=1e-12)
    np.testing.assert_allclose(g[1], 2 * np.array([[4.0, -2.0], [-2.0, 1.0]]), atol=1e-12)
    assert infer("Det", [TensorInfo((4, 3, 3), F32)])[0] == TensorInfo((4,), F32)
    with pytest.raises(ShapeError, match=r"Det: X must be \[\.\.\., M, M\]"):
        infer("Det", [TensorInfo((3, 2), F32)])


def test_onnx_einsum_and_det_import():
    from kaffa.onnx import backend as kb

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    xa = helper.make_tensor_value_info("a", OT.DOUBLE, a.shape)
    xb = helper.make_tensor_value_info("b", OT.DOUBLE, b.shape)
    y = helper.make_tensor_value_info("y", OT.DOUBLE, None)
    nodes = [
        helper.make_node("Einsum", ["a", "b"], ["m"], equation="bij, bjk -> bik"),
        helper.make_node("Det", ["s"], ["y"]),
    ]
    nodes.insert(1, helper.make_node("Einsum", ["m", "m"], ["s"], equation="bik,bjk->bij"))
    model = helper.make_model(
        helper.make_graph(nodes, "g", [xa, xb], [y]), opset_imports=[helper.make_opsetid("", 22)]
    )
    (got,) = kb.prepare(model).run([a, b])
    m = a @ b
    np.testing.assert_allclose(got, np.linalg.det(m @ m.transpose(0, 2, 1)), rtol=1e-10)
