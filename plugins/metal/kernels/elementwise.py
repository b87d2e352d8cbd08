"""Elementwise launch helpers any metal family can use: one-input maps, same-shape gradient maps,
broadcast parameter tables, summing a broadcast-shaped result down to an input's shape (the
reduction half of a broadcasting op's gradient), and the refusal of outputs metal cannot hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import broadcast_geometry, reduction_layout, transpose_geometry
from kaffa.launch.elementwise import same_shape
from kaffa_metal.allocator import MetalArray
from kaffa_metal.kernels.common import WG, empty, kernel, words


def unary_map(ctx: KernelContext, file: str, entry: str, *params: Any, **extra: Any) -> RunFn:
    """Y = f(X) by ``entry(x, y, p)`` with p = [n, params...] (floats as f32 bits)."""
    k = kernel(ctx, file, entry, **extra)

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, params=[x.size, *params])
        return (y,)

    return run


def grad_map(ctx: KernelContext, file: str, entry: str, *params: Any, what: str = "Y", **extra: Any) -> RunFn:
    """dX = f(Y or X, dY) by ``entry(a, dy, dx, p)`` with p = [n, params...], after the shape check."""
    k = kernel(ctx, file, entry, **extra)
    op = ctx.op_type

    def run(a, dy):
        same_shape(op, a, dy, what)
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dy.size, a, dy, dx, params=[dy.size, *params])
        return (dx,)

    return run


def param_table(n: int, geometry: np.ndarray) -> np.ndarray:
    """A parameter table ``[n, geometry...]`` (a core/launch.py int32 table) as u32 words."""
    return np.concatenate([words(n), geometry.astype(np.int64).astype(np.uint32)])


def broadcast_table(out_shape: Sequence[int], *in_shapes: Sequence[int]) -> np.ndarray:
    """``[n, ndim, dims..., strides of each input...]``: see launch.broadcast_geometry."""
    n = int(np.prod(out_shape, dtype=np.int64))
    return param_table(n, broadcast_geometry(out_shape, *in_shapes))


class SumTo:
    """Sums a float32 array of a broadcast shape down to a shape of ``dtype``: the dims where the
    target (same rank, padded with 1s) is 1 are summed, in float32."""

    def __init__(self, ctx: KernelContext, dtype: Any = None):
        dtype = np.dtype(dtype or ctx.dtype or np.float32)
        self.thread = kernel(ctx, "elementwise", "sum_to", dtype=dtype)
        self.group = kernel(ctx, "elementwise", "sum_to_wg", dtype=dtype)
        self.dtype = dtype

    def __call__(self, full: MetalArray, padded: Sequence[int], shape: Sequence[int]) -> MetalArray:
        axes = [k for k, (p, d) in enumerate(zip(padded, full.shape)) if p == 1 and d != 1]
        perm, kept, red = reduction_layout(full.shape, axes)
        params = np.concatenate([words(kept, red), transpose_geometry(full.shape, perm).astype(np.uint32)])
        out = empty(self.thread.dev, shape, self.dtype)
        if red >= WG:  # long sums: a workgroup per output element
            self.group(kept * WG, full, out, params=params)
        else:
            self.thread(kept, full, out, params=params)
        return out


def holds_outputs(ctx: KernelContext) -> str | None:
    """A ``supports`` predicate: why an output's (inferred) dtype cannot live on the device."""
    for j, info in enumerate(ctx.outputs):
        if info.dtype is not None:
            why = ctx.backend.unsupported_dtype_reason(info.dtype, ctx.device.index)
            if why is not None:
                return f"output {j} would be {np.dtype(info.dtype).name}, which metal cannot hold: {why}"
    return None
