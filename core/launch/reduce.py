"""Host-side geometry and checks of the reduce family (ReduceSum/Mean/Max, SumElements and their
gradients) shared by the device backends: the int32 tables kernels read to reduce any set of
axes in place."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.launch import broadcast_geometry, collapse, contiguous_strides
from kaffa.ops.reduce import reduced_shape
from kaffa.schema import check


@functools.lru_cache(maxsize=256)
def reduce_geometry(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, np.ndarray]:
    """(kept, reduced, table) for reducing ``axes`` of a C-contiguous ``shape``: the int32 table is
    ``[nk, kept dims..., kept strides..., nr, reduced dims..., reduced strides...]`` (each part
    collapsed), so row r, element j of the reduction lies at offset(kept, r) + offset(reduced, j)."""
    strides = contiguous_strides(shape)
    keep = [a for a in range(len(shape)) if a not in axes]
    parts, sizes = [], []
    for group in (keep, sorted(axes)):
        dims, (sts,) = collapse([shape[a] for a in group], [strides[a] for a in group])
        parts += [len(dims), *dims, *sts]
        sizes.append(math.prod(shape[a] for a in group))
    return sizes[0], sizes[1], np.asarray(parts, dtype=np.int32)


def reduce_count(op: str, shape: Sequence[int], axes: Sequence[int]) -> int:
    """The number of elements each output of ``op`` reduces; ReduceMax refuses an empty one."""
    n = math.prod(shape[k] for k in axes)
    if op == "ReduceMax":
        check(n > 0, f"ReduceMax: cannot reduce an empty axis of X {list(shape)} (axes {list(axes)})")
    return n


def kept_shape(dy: Any, x_shape: tuple[int, ...], axes: tuple[int, ...], op: str) -> tuple[int, ...]:
    """X's shape with the reduced axes as size 1: dY's layout, ready to broadcast against X."""
    kept = reduced_shape(x_shape, axes, True)
    check(
        dy.size == math.prod(kept),
        f"{op}: dY {list(dy.shape)} is not X {list(x_shape)} reduced over {list(axes)}",
    )
    return kept


@functools.lru_cache(maxsize=256)
def expand_geometry(x_shape: tuple[int, ...], kept: tuple[int, ...]) -> np.ndarray:
    """The broadcast_geometry table that reads a ``kept``-shaped dY at each element of X."""
    return broadcast_geometry(x_shape, kept)


def check_sum_elements_grad(dy: Any) -> None:
    """SumElementsGradient's dY is one element."""
    check(dy.size == 1, f"SumElementsGradient: dY must have one element, got shape {list(dy.shape)}")
