"""Host-side launch geometry shared by the device backends (opencl, metal, cuda).

A device kernel sees flat, C-contiguous buffers. What it needs to know about shapes is computed
here once, on the host, in the same way for every backend: broadcasting as per-input element
strides, an axis as (outer, n, inner), a set of reduced axes as a permutation. Kernels then only
index. Nothing here touches a device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_DIMS = 8  # kernels unravel indices over at most this many (collapsed) dims


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= int(d)
    return tuple(reversed(strides))


def broadcast_strides(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides that read a C-contiguous ``in_shape`` array at each index of ``out_shape``
    (numpy broadcasting: shapes lined up on the right; a broadcast dim gets stride 0)."""
    pad = len(out_shape) - len(in_shape)
    if pad < 0:
        raise ValueError(f"cannot broadcast {list(in_shape)} to {list(out_shape)}")
    full = (1,) * pad + tuple(int(d) for d in in_shape)
    strides = contiguous_strides(full)
    out = []
    for d, o, s in zip(full, out_shape, strides):
        if d != o and d != 1:
            raise ValueError(f"cannot broadcast {list(in_shape)} to {list(out_shape)}")
        out.append(0 if d == 1 and o != 1 else s)
    return tuple(out)


def collapse(out_shape: Sequence[int], *strides: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Merge neighbouring dims that every operand walks contiguously (and drop size-1 dims), so a
    [32, 64, 7, 7] + [1, 64, 1, 1] add becomes a 3-d problem and a same-shape one 1-d."""
    dims: list[int] = []
    sts: list[list[int]] = [[] for _ in strides]
    for k, d in enumerate(out_shape):
        d = int(d)
        if d == 1:
            continue
        if dims and all(s[k] * d == st[-1] for s, st in zip(strides, sts)):
            dims[-1] *= d
            for s, st in zip(strides, sts):
                st[-1] = s[k]
            continue
        dims.append(d)
        for s, st in zip(strides, sts):
            st.append(int(s[k]))
    return dims, sts


def broadcast_geometry(out_shape: Sequence[int], *in_shapes: Sequence[int]) -> np.ndarray:
    """The int32 table an n-ary broadcasting kernel reads: ``[ndim, dims..., strides of input 0...,
    strides of input 1..., ...]`` over the collapsed problem (see ``collapse``)."""
    dims, sts = collapse(out_shape, *(broadcast_strides(s, out_shape) for s in in_shapes))
    if len(dims) > MAX_DIMS:
        raise ValueError(f"broadcast over {len(dims)} non-mergeable dims; kernels take at most {MAX_DIMS}")
    flat = [len(dims), *dims]
    for st in sts:
        flat.extend(st)
    return np.asarray(flat, dtype=np.int32)


def split_axis(shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """(outer, n, inner): the sizes before, at and after ``axis`` of a C-contiguous array, so a
    kernel walks element (o, i, j) at ``(o * n + i) * inner + j``."""
    shape = [int(d) for d in shape]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, shape[axis], inner


def split_at(shape: Sequence[int], axis: int) -> tuple[int, int]:
    """(rows, cols): ``shape`` flattened to 2-d at ``axis`` (Caffe2's canonical axis)."""
    shape = [int(d) for d in shape]
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))


def reduction_layout(shape: Sequence[int], axes: Sequence[int]) -> tuple[tuple[int, ...], int, int]:
    """For reducing ``axes`` of ``shape``: (perm, kept, reduced) where transposing by ``perm``
    puts the kept dims first and the reduced ones last, so the reduction becomes ``kept`` rows of
    ``reduced`` contiguous elements. ``perm`` is the identity when the reduced axes trail."""
    ndim = len(shape)
    red = sorted({a % ndim for a in axes}) if ndim else []
    keep = [a for a in range(ndim) if a not in red]
    kept = int(np.prod([shape[a] for a in keep], dtype=np.int64))
    reduced = int(np.prod([shape[a] for a in red], dtype=np.int64))
    return (*keep, *red), kept, reduced


def transpose_geometry(shape: Sequence[int], perm: Sequence[int]) -> np.ndarray:
    """The table a gather-style transpose kernel reads: ``[ndim, out dims..., input strides in out
    order...]``: output element at index (i0, i1, ...) reads input offset sum(i_k * stride_k)."""
    in_strides = contiguous_strides(shape)
    out_shape = [int(shape[p]) for p in perm]
    dims, (sts,) = collapse(out_shape, [in_strides[p] for p in perm])
    if len(dims) > MAX_DIMS:
        raise ValueError(f"transpose over {len(dims)} non-mergeable dims; kernels take at most {MAX_DIMS}")
    return np.asarray([len(dims), *dims, *sts], dtype=np.int32)


class TableCache:
    """Device copies of small host tables (geometry, parameters) made once per distinct value:
    shapes rarely change between runs, so the hot path is a dict lookup. ``upload`` turns a numpy
    array into a device array.

    When full, a new generation starts and the previous one is kept alive until the next: a launch
    may hold tables from both, and a dropped table's buffer would go straight back to the device
    pool, where the next upload could overwrite it before the launch reads it."""

    def __init__(self, upload: Callable[[np.ndarray], Any], limit: int = 64):
        self.upload = upload
        self.limit = limit
        self._cache: dict[tuple[str, bytes], Any] = {}
        self._old: dict[tuple[str, bytes], Any] = {}

    def __call__(self, table: np.ndarray) -> Any:
        key = (table.dtype.str, table.tobytes())
        dev_table = self._cache.get(key)
        if dev_table is None:
            if len(self._cache) >= self.limit:
                self._old, self._cache = self._cache, {}
            dev_table = self._cache[key] = self.upload(table)
        return dev_table
