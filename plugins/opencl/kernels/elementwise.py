"""Elementwise launch helpers any opencl family can use: typed scalar arguments, one-input maps,
same-shape gradient maps, cached broadcast geometry, and summing a broadcast result back down to
an input's shape (the reduction half of a broadcasting op's gradient)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import broadcast_geometry, reduction_layout, transpose_geometry
from kaffa.launch.elementwise import same_shape
from kaffa_opencl.kernels.common import Consts, acc_scalar, empty, kernel, work_dtype


def unary_map(ctx: KernelContext, file: str, name: str, *params: float, **extra: Any) -> RunFn:
    """Y = f(X) by kernel ``name(x, y, n, params...)``; params are passed as A, ``extra`` goes to
    ``kernel`` (types or compile-time constants)."""
    k = kernel(ctx, file, name, **extra)
    args = tuple(acc_scalar(ctx.dtype or np.float32, p) for p in params)

    def run(x):
        y = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, np.int64(x.size), *args)
        return (y,)

    return run


def grad_map(ctx: KernelContext, file: str, name: str, *params: float, what: str = "Y") -> RunFn:
    """dX = f(Y or X, dY) by kernel ``name(a, dy, dx, n, params...)``, after the shape check."""
    k = kernel(ctx, file, name)
    args = tuple(acc_scalar(ctx.dtype or np.float32, p) for p in params)
    op = ctx.op_type

    def run(a, dy):
        same_shape(op, a, dy, what)
        dx = empty(k.dev, dy.shape, dy.dtype)
        k(dy.size, a, dy, dx, np.int64(dy.size), *args)
        return (dx,)

    return run


class Geometry:
    """Device tables for broadcasting and sum-to-shape, cached by shapes (stable across runs)."""

    def __init__(self, dev: Any):
        self.consts = Consts(dev)

    def broadcast(self, out_shape: Sequence[int], *in_shapes: Sequence[int]) -> Any:
        return self.consts(broadcast_geometry(out_shape, *in_shapes))

    def sum_to(self, out_shape: Sequence[int], shape: Sequence[int]) -> tuple[Any, int, int, bool]:
        """(table, kept, reduced, trivial) to sum an ``out_shape`` array to ``shape`` (lined up on
        the right, as numpy broadcasts); trivial: nothing is summed."""
        padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
        axes = [k for k, (p, d) in enumerate(zip(padded, out_shape)) if p == 1 and d != 1]
        perm, kept, red = reduction_layout(out_shape, axes)
        return self.consts(transpose_geometry(out_shape, perm)), kept, red, not axes


class SumTo:
    """Sums a broadcast-shaped work-type (W) array down to an input's shape, stored as T."""

    def __init__(self, ctx: KernelContext, dtype: Any, geometry: Geometry):
        self.dtype = np.dtype(dtype)
        self.k = kernel(ctx, "elementwise", "sum_to", dtype=self.dtype, W=work_dtype(self.dtype))
        self.geometry = geometry

    def __call__(self, full: Any, shape: Sequence[int]) -> Any:
        g, kept, red, trivial = self.geometry.sum_to(full.shape, shape)
        if trivial and full.dtype == self.dtype:
            return full.reshape(tuple(shape))
        out = empty(self.k.dev, shape, self.dtype)
        self.k(kept, g, full, out, np.int64(kept), np.int64(red))
        return out
