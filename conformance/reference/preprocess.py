"""References for Unique, TfIdfVectorizer, ImageDecoder.

ImageDecoder's reference decodes, by hand, the three formats the cases encode (24-bit BMP, binary
PPM, unfiltered 8-bit RGB PNG); grayscale is ITU-R 601-2 luma in Pillow's fixed point,
(19595 R + 38470 G + 7471 B + 2^15) >> 16.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from kaffa_conformance.reference import reference


@reference("Unique")
def unique(args, x, num_outputs=4):
    axis = args["axis"]
    if axis is None:
        items = [np.asarray(v) for v in x.reshape(-1)]
    else:
        items = [np.asarray(v) for v in np.moveaxis(x, axis, 0)]
    keys = [tuple(np.asarray(v).reshape(-1).tolist()) for v in items]
    first: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    order = sorted(first) if args["sorted"] else list(first)
    pos = {k: j for j, k in enumerate(order)}
    picked = [items[first[k]] for k in order]
    if axis is None:
        y = np.array(picked, dtype=x.dtype).reshape(-1)
    else:
        y = np.moveaxis(np.stack(picked), 0, axis)
    out = (
        y,
        np.array([first[k] for k in order], dtype=np.int64),
        np.array([pos[k] for k in keys], dtype=np.int64),
        np.array([keys.count(k) for k in order], dtype=np.int64),
    )
    return out[:num_outputs]


@reference("TfIdfVectorizer")
def tfidf(args, x):
    pool, starts = args["pool_int64s"], args["ngram_counts"]
    grams = []  # (tokens, output column), in pool order
    gram_id = 0
    for k, start in enumerate(starts):
        n = k + 1
        end = starts[k + 1] if k + 1 < len(starts) else len(pool)
        for j in range((end - start) // n):
            if args["min_gram_length"] <= n <= args["max_gram_length"]:
                grams.append(
                    (list(pool[start + j * n : start + (j + 1) * n]), args["ngram_indexes"][gram_id])
                )
            gram_id += 1
    width = max(args["ngram_indexes"]) + 1
    rows = x if x.ndim == 2 else x.reshape(1, -1)
    counts = np.zeros((rows.shape[0], width))
    for r, row in enumerate(rows.tolist()):
        for tokens, col in grams:
            n = len(tokens)
            skips = range(args["max_skip_count"] + 1) if n > 1 else [0]
            for skip in skips:
                step = skip + 1
                for start in range(len(row)):
                    picked = row[start : start + step * (n - 1) + 1 : step]
                    if len(picked) == n and picked == tokens:
                        counts[r, col] += 1
    w = np.asarray(args["weights"], dtype=np.float64)
    if args["mode"] == "IDF":
        y = (counts > 0) * (w if w.size else 1.0)
    elif args["mode"] == "TFIDF" and w.size:
        y = counts * w
    else:
        y = counts
    return (y.reshape(-1) if x.ndim == 1 else y,)


def _decode(data: bytes) -> np.ndarray:
    if data[:2] == b"BM":
        offset = struct.unpack_from("<I", data, 10)[0]
        w, h = struct.unpack_from("<ii", data, 18)
        stride = (3 * w + 3) // 4 * 4
        rows = [np.frombuffer(data, np.uint8, 3 * w, offset + y * stride).reshape(w, 3) for y in range(h)]
        return np.stack(rows[::-1])[:, :, ::-1]
    if data[:2] == b"P6":
        _, size, _, pixels = data.split(b"\n", 3)  # P6, "w h", 255, pixels
        w, h = (int(v) for v in size.split())
        return np.frombuffer(pixels, np.uint8, h * w * 3).reshape(h, w, 3)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos, idat, w = 8, b"", 0
        while pos < len(data):
            length = struct.unpack_from(">I", data, pos)[0]
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            if kind == b"IHDR":
                w, h = struct.unpack_from(">II", body)
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
        assert not raw[:, 0].any(), "the reference decodes unfiltered PNG rows only"
        return raw[:, 1:].reshape(h, w, 3)
    raise ValueError("the ImageDecoder reference reads BMP, PPM and PNG only")


@reference("ImageDecoder")
def image_decoder(args, data):
    rgb = _decode(np.asarray(data).astype(np.uint8).tobytes()).astype(np.int64)
    fmt = args["pixel_format"]
    if fmt == "Grayscale":
        luma = (19595 * rgb[..., 0] + 38470 * rgb[..., 1] + 7471 * rgb[..., 2] + 0x8000) >> 16
        return (luma[..., None].astype(np.uint8),)
    return ((rgb[..., ::-1] if fmt == "BGR" else rgb).astype(np.uint8),)
