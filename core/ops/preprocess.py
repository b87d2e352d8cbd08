"""Data preprocessing: Unique, TfIdfVectorizer, ImageDecoder (schemas, shape inference). None is
differentiable: their outputs are counts, indices, or decoded integer pixels (Unique's values are
picked by comparisons, a selection with no useful gradient).

Definitions follow ONNX. Output sizes that depend on the data (Unique's number of distinct
values, a decoded image's height and width) are inferred as unknown (None) dims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, norm_axis

INT64 = np.dtype(np.int64)
UINT8 = np.dtype(np.uint8)
F32 = np.dtype(np.float32)


def _infer_unique(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    axis = args["axis"]
    if x.shape is None:
        y_shape, count = None, None
    elif axis is None:
        y_shape = (None,)
        count = None if None in x.shape else int(np.prod(x.shape, dtype=np.int64))
    else:
        check(len(x.shape) >= 1, "Unique: an axis needs an input of rank >= 1, got a scalar")
        a = norm_axis(axis, len(x.shape), "Unique")
        y_shape = tuple(None if k == a else d for k, d in enumerate(x.shape))
        count = x.shape[a]
    return [
        TensorInfo(y_shape, x.dtype),
        TensorInfo((None,), INT64),
        TensorInfo((count,), INT64),
        TensorInfo((None,), INT64),
    ][:n]


define(
    "Unique",
    family="preprocess",
    doc="The distinct values of X (flattened), or distinct slices along `axis` (ONNX Unique): Y, "
    "sorted ascending (sorted=1) or in order of first occurrence (sorted=0); indices: where each "
    "first occurs in X; inverse_indices: for each element (slice) of X, its position in Y; counts: "
    "how often each occurs.",
    inputs=1,
    outputs=(1, 4),
    input_docs=[("X", "input")],
    output_docs=[
        ("Y", "distinct values (slices), X's dtype"),
        ("indices", "int64 [len(Y)]: first occurrences"),
        ("inverse_indices", "int64 [X.size] (or [X.shape[axis]]): positions in Y"),
        ("counts", "int64 [len(Y)]"),
    ],
    args=[
        Arg("axis", ArgType.INT, None, "the axis whose slices are compared (default: flatten X)"),
        Arg("sorted", ArgType.BOOL, True, "sort Y ascending, else keep first-occurrence order"),
    ],
    infer=_infer_unique,
    dtypes=dtypes.ALL_NUMERIC_TYPES,
    differentiable=False,
)


_MODES = ("TF", "IDF", "TFIDF")


def _canon_tfidf(values: dict[str, Any]) -> dict[str, Any]:
    if values["mode"] not in _MODES:
        raise ArgumentError(
            f"TfIdfVectorizer: mode must be one of {', '.join(_MODES)}, got '{values['mode']}'"
        )
    lo, hi = values["min_gram_length"], values["max_gram_length"]
    if not 1 <= lo <= hi:
        raise ArgumentError(
            f"TfIdfVectorizer: need 1 <= min_gram_length <= max_gram_length, got {lo} and {hi}"
        )
    if values["max_skip_count"] < 0:
        raise ArgumentError(f"TfIdfVectorizer: max_skip_count must be >= 0, got {values['max_skip_count']}")
    if not values["ngram_indexes"]:
        raise ArgumentError("TfIdfVectorizer: ngram_indexes is empty")
    if values["weights"] and len(values["weights"]) != max(values["ngram_indexes"]) + 1:
        raise ArgumentError(
            f"TfIdfVectorizer: {len(values['weights'])} weights for "
            f"{max(values['ngram_indexes']) + 1} outputs"
        )
    return values


def _infer_tfidf(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    width = max(args["ngram_indexes"]) + 1
    if x.shape is None:
        return [TensorInfo(None, F32)]
    check(len(x.shape) in (1, 2), f"TfIdfVectorizer: X must be [C] or [N, C], got {list(x.shape)}")
    return [TensorInfo((width,) if len(x.shape) == 1 else (x.shape[0], width), F32)]


define(
    "TfIdfVectorizer",
    family="preprocess",
    doc="N-gram counts of integer token sequences (ONNX TfIdfVectorizer): the pool holds the n-grams "
    "(ngram_counts[k]: where the (k+1)-grams start in pool_int64s), n-gram j is counted in output "
    "column ngram_indexes[j]; n-grams of min..max_gram_length tokens are matched with up to "
    "max_skip_count tokens skipped between neighbours (unigrams once). mode TF: counts; IDF: "
    "weights (1) where the count is > 0; TFIDF: counts times weights.",
    inputs=1,
    input_docs=[("X", "[C] or [N, C] token ids")],
    output_docs=[("Y", "float32 [M] or [N, M], M = max(ngram_indexes) + 1")],
    args=[
        Arg("min_gram_length", ArgType.INT, REQUIRED),
        Arg("max_gram_length", ArgType.INT, REQUIRED),
        Arg("max_skip_count", ArgType.INT, REQUIRED),
        Arg("mode", ArgType.STRING, REQUIRED, "TF, IDF or TFIDF"),
        Arg("ngram_counts", ArgType.INTS, REQUIRED),
        Arg("ngram_indexes", ArgType.INTS, REQUIRED),
        Arg("pool_int64s", ArgType.INTS, REQUIRED),
        Arg("weights", ArgType.FLOATS, [], "one per output column (IDF, TFIDF)"),
    ],
    canonicalize=_canon_tfidf,
    infer=_infer_tfidf,
    dtypes=dtypes.INT_TYPES,
    differentiable=False,
)


_PIXEL_FORMATS = {"RGB": 3, "BGR": 3, "Grayscale": 1}


def _infer_image_decoder(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    fmt = args["pixel_format"]
    check(fmt in _PIXEL_FORMATS, f"ImageDecoder: pixel_format must be RGB, BGR or Grayscale, got '{fmt}'")
    x = ins[0]
    check(x.shape is None or len(x.shape) == 1, f"ImageDecoder: the encoded stream must be 1-D, got {x}")
    return [TensorInfo((None, None, _PIXEL_FORMATS[fmt]), UINT8)]


define(
    "ImageDecoder",
    family="preprocess",
    doc="Decode an encoded image (the bytes of a JPEG, PNG, BMP, TIFF, WebP, PNM or JPEG 2000 file) "
    "into [H, W, 3] RGB or BGR, or [H, W, 1] grayscale, uint8 (ONNX ImageDecoder). The cpu kernel "
    "decodes with Pillow (the `onnx` extra).",
    inputs=1,
    input_docs=[("encoded_stream", "uint8 [bytes]")],
    output_docs=[("image", "uint8 [H, W, C]")],
    args=[Arg("pixel_format", ArgType.STRING, "RGB", "RGB, BGR or Grayscale")],
    infer=_infer_image_decoder,
    dtypes=(UINT8,),
    differentiable=False,
)
