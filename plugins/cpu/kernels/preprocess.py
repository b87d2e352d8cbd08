"""Unique, TfIdfVectorizer, ImageDecoder.

ImageDecoder decodes with Pillow, imported when the kernel is built; without Pillow the kernel
declines the op (a clean "unsupported", naming the extra to install).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, INT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")


def unique(x: np.ndarray, axis: int | None, sort: bool) -> tuple[np.ndarray, ...]:
    """ONNX Unique: (Y, indices, inverse_indices, counts)."""
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    y, idx, inv, counts = np.unique(x, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    inv = inv.reshape(-1)
    if not sort:  # renumber by first occurrence
        order = np.argsort(idx, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        idx, counts, inv = idx[order], counts[order], rank[inv]
        y = np.take(x, idx, axis=axis)
    i64 = np.int64
    return np.ascontiguousarray(y), idx.astype(i64), inv.astype(i64), counts.astype(i64)


@table.kernel("Unique", dtypes=ALL_NUMERIC_TYPES)
def unique_(ctx: KernelContext) -> RunFn:
    axis_arg, sort, n_out = ctx.args["axis"], bool(ctx.args["sorted"]), ctx.num_outputs

    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        axis = None
        if axis_arg is not None:
            check(x.ndim >= 1, "Unique: an axis needs an input of rank >= 1, got a scalar")
            axis = norm_axis(axis_arg, x.ndim, "Unique")
        return unique(x, axis, sort)[:n_out]

    return run


def ngram_table(args: Mapping[str, Any]) -> dict[tuple[int, ...], int]:
    """The pool's n-grams of min..max_gram_length tokens -> output column (a repeated n-gram: the last)."""
    pool, starts, indexes = args["pool_int64s"], args["ngram_counts"], args["ngram_indexes"]
    found: dict[tuple[int, ...], int] = {}
    gram_id = 0
    for k, start in enumerate(starts):
        n = k + 1
        end = starts[k + 1] if k + 1 < len(starts) else len(pool)
        count = max(end - start, 0) // n
        for j in range(count):
            if args["min_gram_length"] <= n <= args["max_gram_length"]:
                check(
                    gram_id < len(indexes),
                    f"TfIdfVectorizer: n-gram {gram_id} of the pool has no entry in ngram_indexes "
                    f"({len(indexes)} entries)",
                )
                found[tuple(pool[start + j * n : start + (j + 1) * n])] = indexes[gram_id]
            gram_id += 1
    return found


def tfidf_counts(
    row: Sequence[int], grams: Mapping[tuple[int, ...], int], args: Mapping[str, Any], out: np.ndarray
) -> None:
    """Add the n-gram counts of one row of tokens to ``out``."""
    lengths = sorted({len(g) for g in grams})
    for n in lengths:
        for skip in range(args["max_skip_count"] + 1 if n > 1 else 1):  # unigrams count once
            span = (skip + 1) * (n - 1) + 1
            for start in range(len(row) - span + 1):
                col = grams.get(tuple(row[start : start + span : skip + 1]))
                if col is not None:
                    out[col] += 1


@table.kernel("TfIdfVectorizer", dtypes=INT_TYPES)
def tfidf(ctx: KernelContext) -> RunFn:
    args = ctx.args
    grams = ngram_table(args)
    width = max(args["ngram_indexes"]) + 1
    weights = np.asarray(args["weights"], dtype=np.float64) if args["weights"] else None
    mode = args["mode"]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(x.ndim in (1, 2), f"TfIdfVectorizer: X must be [C] or [N, C], got {list(x.shape)}")
        rows = x if x.ndim == 2 else x.reshape(1, -1)
        counts = np.zeros((rows.shape[0], width))
        for r, row in enumerate(rows.tolist()):
            tfidf_counts(row, grams, args, counts[r])
        if mode == "IDF":
            y = (counts > 0) * (1.0 if weights is None else weights)
        elif mode == "TFIDF" and weights is not None:
            y = counts * weights
        else:
            y = counts
        return (y.reshape((width,) if x.ndim == 1 else (x.shape[0], width)).astype(np.float32),)

    return run


def _pillow_missing(ctx: KernelContext) -> str | None:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return "ImageDecoder needs Pillow: pip install 'kaffa[onnx]'"
    return None


def decode_image(data: np.ndarray, pixel_format: str) -> np.ndarray:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(np.ascontiguousarray(data, dtype=np.uint8).tobytes()))
        img.load()
    except Exception as e:
        check(False, f"ImageDecoder: cannot decode the {data.size}-byte stream: {type(e).__name__}: {e}")
    if pixel_format == "Grayscale":
        return np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None].copy()
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return (rgb[:, :, ::-1] if pixel_format == "BGR" else rgb).copy()


@table.kernel("ImageDecoder", dtypes=(np.dtype(np.uint8),), supports=_pillow_missing)
def image_decoder(ctx: KernelContext) -> RunFn:
    fmt = ctx.args["pixel_format"]

    def run(data: np.ndarray) -> tuple[np.ndarray]:
        check(data.ndim == 1, f"ImageDecoder: the encoded stream must be 1-D, got {list(data.shape)}")
        return (decode_image(data, fmt),)

    return run
