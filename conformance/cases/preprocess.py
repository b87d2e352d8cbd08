"""Cases for Unique, TfIdfVectorizer, ImageDecoder.

Unique's data is integer-valued from a small range (so values repeat, exactly, in every dtype).
ImageDecoder's streams are small random images encoded here with the standard library, as 24-bit
BMP, binary PPM and unfiltered PNG, which the reference decodes by hand.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, Case, cases, ints

_SIGNED = (*dtypes.FLOAT_TYPES, *dtypes.SIGNED_INT_TYPES)


@cases("Unique")
def unique(rng):
    def case(name, x, n=4, types=_SIGNED, **args):
        return Case("Unique", name, [x], args, num_outputs=n, op_class=EXACT, dtypes=types)

    return [
        case("flat_sorted", ints(rng, (12,), -3, 4)),
        case("flat_unsorted", ints(rng, (3, 5), -3, 4), sorted=0),
        case("axis0", ints(rng, (6, 2), 0, 2), axis=0),
        case("axis1_3d", ints(rng, (2, 5, 2), 0, 2), axis=1),
        case("neg_axis_unsorted", ints(rng, (2, 6), 0, 2), axis=-1, sorted=0),
        case("one_output", ints(rng, (9,), -2, 3), n=1),
        case("two_outputs", ints(rng, (9,), -2, 3), n=2, sorted=0),
        case("length1", ints(rng, (1,), 0, 5)),
        case("all_equal", np.full((4, 3), 2.0)),
        case("unsigned", ints(rng, (10,), 0, 4), types=dtypes.UNSIGNED_INT_TYPES, sorted=0),
    ]


_POOL = {
    "ngram_counts": [0, 4],
    "ngram_indexes": [0, 1, 2, 3, 4, 5, 6],
    "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7],
}


@cases("TfIdfVectorizer")
def tfidf(rng):
    tokens = np.array([1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8], dtype=np.float64)

    def case(name, x, **args):
        full = {
            "min_gram_length": 1,
            "max_gram_length": 2,
            "max_skip_count": 0,
            "mode": "TF",
            **_POOL,
            **args,
        }
        return Case("TfIdfVectorizer", name, [x], full, op_class=EXACT)

    weights = [0.5, 1.0, 2.0, 0.25, 3.0, 1.5, 0.75]
    random_tokens = rng.integers(2, 9, size=(3, 20)).astype(np.float64)
    return [
        case("bigrams_skip0", tokens, min_gram_length=2),
        case("batch_bigrams_skip0", tokens.reshape(2, 6), min_gram_length=2),
        case("bigrams_skip5", tokens, min_gram_length=2, max_skip_count=5),
        case("uni_and_bigrams_skip5", tokens, max_skip_count=5),
        case("batch_uni_and_bigrams_skip2", tokens.reshape(2, 6), max_skip_count=2),
        case("unigrams_only", tokens, max_gram_length=1),
        case("idf_weights", random_tokens, mode="IDF", weights=weights, max_skip_count=1),
        case("idf_no_weights", random_tokens, mode="IDF"),
        case("tfidf_weights", random_tokens, mode="TFIDF", weights=weights, max_skip_count=3),
        case(
            "trigrams",
            random_tokens,
            min_gram_length=2,
            max_gram_length=3,
            max_skip_count=1,
            ngram_counts=[0, 2, 6],
            ngram_indexes=[3, 2, 1, 0, 4, 5],
            pool_int64s=[2, 3, 4, 5, 6, 7, 8, 2, 3, 4],
        ),
        case("no_tokens", np.zeros((2, 0))),
    ]


# -- tiny encoders: the streams ImageDecoder gets ----------------------------------------------------
def encode_bmp(rgb: np.ndarray) -> bytes:
    """24-bit uncompressed BMP (rows bottom-up, BGR, padded to 4 bytes)."""
    h, w, _ = rgb.shape
    pad = (-3 * w) % 4
    rows = b"".join(rgb[y, :, ::-1].tobytes() + b"\0" * pad for y in range(h - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return header + info + rows


def encode_ppm(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    return f"P6\n{w} {h}\n255\n".encode() + rgb.tobytes()


def encode_png(rgb: np.ndarray) -> bytes:
    """8-bit RGB PNG, every row unfiltered."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@cases("ImageDecoder")
def image_decoder(rng):
    def image(h, w):
        return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)

    def case(name, encoded: bytes, fmt="RGB"):
        data = np.frombuffer(encoded, dtype=np.uint8).copy()
        return Case("ImageDecoder", name, [data], {"pixel_format": fmt}, op_class=EXACT)

    return [
        case("bmp_rgb", encode_bmp(image(5, 7))),
        case("bmp_bgr_odd_width", encode_bmp(image(4, 3)), "BGR"),
        case("ppm_rgb", encode_ppm(image(6, 4))),
        case("ppm_grayscale", encode_ppm(image(3, 5)), "Grayscale"),
        case("png_rgb", encode_png(image(8, 9))),
        case("png_bgr", encode_png(image(2, 11)), "BGR"),
        case("png_grayscale", encode_png(image(7, 6)), "Grayscale"),
    ]
