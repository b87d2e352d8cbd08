"""Host-side geometry and checks of the math family (broadcasting binary ops, the variadic ops,
WeightedSum, SumReduceLike, DivGradient) shared by the device backends."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.launch import broadcast_geometry
from kaffa.ops.math import broadcast_shapes, legacy_b_shape
from kaffa.schema import check


def work_dtype(dtype: Any) -> np.dtype:
    """The dtype kernels compute T in: float32 for float16, else T itself."""
    dt = np.dtype(dtype)
    return np.dtype(np.float32) if dt == np.float16 else dt


@functools.lru_cache(maxsize=256)
def binary_geometry(
    op: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], legacy: bool, axis: int
) -> tuple[tuple[int, ...], np.ndarray]:
    """(output shape, broadcast_geometry table) of a binary op with numpy broadcasting, or with
    Caffe2's legacy broadcast=1 (B matched inside A at ``axis``)."""
    if legacy:
        return a_shape, broadcast_geometry(a_shape, a_shape, legacy_b_shape(op, a_shape, b_shape, axis))
    out = tuple(int(d) for d in broadcast_shapes(op, a_shape, b_shape))
    return out, broadcast_geometry(out, a_shape, b_shape)


def check_same_shapes(op: str, xs: Sequence[Any]) -> None:
    """All of ``xs`` (Sum, Max, Min, Mean, WeightedSum's X) must have one shape."""
    first = xs[0].shape
    check(
        all(x.shape == first for x in xs[1:]),
        f"{op}: all inputs must have one shape, got {', '.join(str(list(x.shape)) for x in xs)}",
    )


def check_weights(op: str, ws: Sequence[Any]) -> None:
    """WeightedSum's weights hold one element each."""
    for i, w in enumerate(ws):
        check(w.size == 1, f"{op}: weight {i} must have one element, got shape {list(w.shape)}")


def weight_chunks(ws: Sequence[Any], most: int) -> list[tuple[int, int]]:
    """[start, end) runs of at most ``most`` consecutive (X, w) pairs whose weights share a dtype."""
    chunks, s = [], 0
    while s < len(ws):
        e = s + 1
        while e < len(ws) and e - s < most and ws[e].dtype == ws[s].dtype:
            e += 1
        chunks.append((s, e))
        s = e
    return chunks


def broadcast_axes(shape: Sequence[int], padded: Sequence[int]) -> tuple[int, ...]:
    """The dims of ``shape`` where ``padded`` (an operand's shape lined up with it) is broadcast."""
    return tuple(k for k, (p, d) in enumerate(zip(padded, shape)) if p == 1 and d != 1)


def sum_to_axes(x_shape: tuple[int, ...], shape: tuple[int, ...], axis: int = -1) -> tuple[int, ...]:
    """The dims of ``x_shape`` to sum to get ``shape`` (lined up at ``axis``; -1: trailing, as
    numpy broadcasting), as SumReduceLike does."""
    return broadcast_axes(x_shape, legacy_b_shape("SumReduceLike", x_shape, shape, axis))


def div_gradient_layout(
    dc: Any, a: Any, b: Any, c: Any, legacy: bool, axis: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], np.ndarray]:
    """(dC shape, dims summed for dA, dims summed for dB, broadcast_geometry of (dC, B)) of
    DivGradient, after its shape checks."""
    check(c.shape == dc.shape, f"DivGradient: dC {list(dc.shape)} and C {list(c.shape)} must have one shape")
    shape, a_shape, b_shape = tuple(dc.shape), tuple(a.shape), tuple(b.shape)
    if legacy:
        b_pad = legacy_b_shape("Div", shape, b_shape, axis)
    else:
        check(
            broadcast_shapes("Div", shape, b_shape) == shape,
            f"DivGradient: B {list(b_shape)} does not broadcast to dC {list(shape)}",
        )
        b_pad = b_shape
    a_axes = broadcast_axes(shape, legacy_b_shape("Div", shape, a_shape, -1))
    b_axes = broadcast_axes(shape, legacy_b_shape("Div", shape, b_shape, axis if legacy else -1))
    return shape, a_axes, b_axes, broadcast_geometry(shape, b_pad)
