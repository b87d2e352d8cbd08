"""The preprocess family: Unique, TfIdfVectorizer and ImageDecoder against onnx.reference, their
shape inference and errors, and ONNX import."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from optest import infer, run

from kaffa.errors import ArgumentError, ShapeError
from kaffa.schema import TensorInfo
from kaffa_conformance.cases.preprocess import encode_bmp, encode_png, encode_ppm

F32, I64 = np.dtype(np.float32), np.dtype(np.int64)


def _onnx(op, inputs, n_out, **attrs):
    node = helper.make_node(
        op, [f"x{i}" for i in range(len(inputs))], [f"y{j}" for j in range(n_out)], **attrs
    )
    return ReferenceEvaluator(node).run(None, {f"x{i}": x for i, x in enumerate(inputs)})


@pytest.mark.parametrize(
    "x, attrs",
    [
        (np.array([2.0, 1.0, 1.0, 3.0, 4.0, 3.0], np.float32), {}),
        (np.array([2.0, 1.0, 1.0, 3.0, 4.0, 3.0], np.float32), {"sorted": 0}),
        (np.array([[1, 0, 0], [1, 0, 0], [2, 3, 4]], np.int64), {"axis": 0}),
        (
            np.array([[[1, 1], [0, 1], [2, 1], [0, 1]], [[1, 1], [0, 1], [2, 1], [0, 1]]], np.int32),
            {"axis": 1},
        ),
        (np.array([[1, 0, 0], [1, 0, 0], [2, 3, 3]], np.float64), {"axis": -1}),
    ],
)
def test_unique_matches_onnx_reference(x, attrs):
    got = run("Unique", [x], 4, **attrs)
    want = _onnx("Unique", [x], 4, **attrs)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_unique_shapes():
    y, _, inv, cnt = infer("Unique", [TensorInfo((3, 4), F32)], 4)
    assert y == TensorInfo((None,), F32) and inv == TensorInfo((12,), I64) and cnt.shape == (None,)
    y, _, inv, _ = infer("Unique", [TensorInfo((3, 4), F32)], 4, axis=-1)
    assert y.shape == (3, None) and inv.shape == (4,)
    with pytest.raises(ShapeError, match="Unique: axis 2 is out of range"):
        infer("Unique", [TensorInfo((3, 4), F32)], axis=2)


_TFIDF = {
    "ngram_counts": [0, 4],
    "ngram_indexes": [0, 1, 2, 3, 4, 5, 6],
    "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7],
}


@pytest.mark.parametrize(
    "extra",
    [
        {"mode": "TF", "min_gram_length": 2, "max_gram_length": 2, "max_skip_count": 0},
        {"mode": "TF", "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 5},
        {
            "mode": "IDF",
            "min_gram_length": 1,
            "max_gram_length": 2,
            "max_skip_count": 2,
            "weights": [1.0, 0.5, 2.0, 4.0, 0.25, 3.0, 1.5],
        },
        {
            "mode": "TFIDF",
            "min_gram_length": 1,
            "max_gram_length": 2,
            "max_skip_count": 3,
            "weights": [0.5, 1.0, 2.0, 0.25, 3.0, 1.5, 0.75],
        },
    ],
)
def test_tfidf_matches_onnx_reference(extra):
    rng = np.random.default_rng(0)
    attrs = {**_TFIDF, **extra}
    for x in (np.array([1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8], np.int32), rng.integers(2, 9, (3, 16))):
        (got,) = run("TfIdfVectorizer", [x], **attrs)
        (want,) = _onnx("TfIdfVectorizer", [x], 1, **attrs)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_tfidf_arguments_are_checked():
    base = {**_TFIDF, "mode": "TF", "max_skip_count": 0}
    with pytest.raises(ArgumentError, match="mode must be one of"):
        infer(
            "TfIdfVectorizer",
            [TensorInfo((5,), I64)],
            **{**base, "mode": "BM25"},
            min_gram_length=1,
            max_gram_length=2,
        )
    with pytest.raises(ArgumentError, match="min_gram_length <= max_gram_length"):
        infer("TfIdfVectorizer", [TensorInfo((5,), I64)], **base, min_gram_length=3, max_gram_length=2)
    with pytest.raises(ShapeError, match=r"\[C\] or \[N, C\]"):
        infer("TfIdfVectorizer", [TensorInfo((2, 2, 2), I64)], **base, min_gram_length=1, max_gram_length=2)
    assert infer("TfIdfVectorizer", [TensorInfo((4, 9), I64)], **base, min_gram_length=1, max_gram_length=2)[
        0
    ] == (TensorInfo((4, 7), F32))


def test_image_decoder_reads_what_pillow_wrote_and_the_hand_encoders():
    pil = pytest.importorskip("PIL.Image")
    import io

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    for encoded in (encode_bmp(rgb), encode_png(rgb), encode_ppm(rgb)):
        data = np.frombuffer(encoded, np.uint8)
        (got,) = run("ImageDecoder", [data])
        np.testing.assert_array_equal(got, rgb)
        (bgr,) = run("ImageDecoder", [data], pixel_format="BGR")
        np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])
    buf = io.BytesIO()
    pil.fromarray(rgb).save(buf, format="TIFF")
    data = np.frombuffer(buf.getvalue(), np.uint8)
    (gray,) = run("ImageDecoder", [data], pixel_format="Grayscale")
    (want,) = _onnx("ImageDecoder", [data], 1, pixel_format="Grayscale")
    assert gray.shape == (5, 7, 1)
    np.testing.assert_array_equal(gray, want)
    with pytest.raises(Exception, match="cannot decode the 4-byte stream"):
        run("ImageDecoder", [np.array([1, 2, 3, 4], np.uint8)])
    with pytest.raises(ShapeError, match="pixel_format must be RGB, BGR or Grayscale"):
        infer("ImageDecoder", [TensorInfo((10,), np.dtype(np.uint8))], pixel_format="CMYK")


def test_onnx_unique_with_a_skipped_output_imports():
    from onnx import TensorProto as OT

    from kaffa.onnx import backend as kb

    x = helper.make_tensor_value_info("x", OT.FLOAT, [6])
    y = helper.make_tensor_value_info("y", OT.FLOAT, None)
    inv = helper.make_tensor_value_info("inv", OT.INT64, None)
    node = helper.make_node("Unique", ["x"], ["y", "", "inv"], sorted=0)
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y, inv]), opset_imports=[helper.make_opsetid("", 11)]
    )
    xv = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 5.0], np.float32)
    got_y, got_inv = kb.prepare(model).run([xv])
    np.testing.assert_array_equal(got_y, [3.0, 1.0, 2.0, 5.0])
    np.testing.assert_array_equal(got_inv, [0, 1, 0, 2, 1, 3])
