"""Concat, Split, Reshape, Transpose, Flatten, Copy, Squeeze, ExpandDims, Slice, Gather,
SparseToDense, Tile, Shape, ResizeLike, ZerosLike and the gradient ops SliceGradient and
TileGradient, as CuPy array code (copies and gathers; SparseToDense sums repeated indices with
CuPy's atomic ``add.at``).

As on the other backends, Reshape, Flatten, Squeeze, ExpandDims and ResizeLike return a reshaped
view of the input: no kernel writes into its inputs, so sharing is safe. Metadata that arrives as
device tensors (Reshape's new_shape, Split's sizes, Slice's starts and ends, Tile's tiles and
axis, the range of Gather's indices) is read back to the host: the output shape depends on it.
The shape checks and the strided geometry are kaffa.launch.tensor's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, RunFn
from kaffa.launch import tensor as shared
from kaffa.launch.math import work_dtype
from kaffa.ops.tensor import expand_shape, reshape_target, squeeze_shape
from kaffa.schema import check, norm_axis
from kaffa_cuda.kernels.common import Table, index_range, scatter_add, to_host, xp

table = Table()

INT32, INT64 = np.dtype(np.int32), np.dtype(np.int64)


def _host_ints(op: str, what: str, v: Any) -> list[int]:
    shared.check_int_vector(op, what, v)
    return [int(a) for a in to_host(v)]


def _strided(cp: Any, x: Any, base: int, g: np.ndarray) -> Any:
    """The view of contiguous ``x`` that kaffa.launch.tensor's strided geometry ``g`` ([nd, dims...,
    strides...], collapsed) walks from element ``base``."""
    nd = int(g[0])
    dims, strides = (int(d) for d in g[1 : 1 + nd]), (int(s) for s in g[1 + nd : 1 + 2 * nd])
    flat = x.reshape(-1)[base:]
    return cp.lib.stride_tricks.as_strided(flat, tuple(dims), tuple(s * x.itemsize for s in strides))


@table.kernel("Concat", dtypes=ALL_TYPES)
def concat(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    with_info, cp = ctx.num_outputs > 1, xp(ctx)

    def run(*xs):
        ax, sizes, shape = shared.concat_layout(xs, axis, add_axis)
        y = cp.stack(xs, axis=ax) if add_axis else cp.concatenate(xs, axis=ax)
        y = y.reshape(shape)
        if with_info:
            return y, cp.asarray(np.asarray(sizes, INT32))
        return (y,)

    return run


@table.kernel("Split", dtypes=ALL_TYPES)
def split(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    n, cp = ctx.num_outputs, xp(ctx)
    arg_sizes = list(ctx.args["split"] or [])
    shared.check_split_arg(arg_sizes, n)

    def run(x, sizes_in=None):
        read = None if sizes_in is None else (lambda: _host_ints("Split", "input 1", sizes_in))
        ax, _, sizes = shared.split_sizes(x.shape, axis, add_axis, n, arg_sizes, read)
        off, outs = 0, []
        for s in sizes:
            part = x[(slice(None),) * ax + (slice(off, off + s),)]
            mid = () if add_axis else (s,)  # add_axis drops the axis
            outs.append(cp.ascontiguousarray(part).reshape(*x.shape[:ax], *mid, *x.shape[ax + 1 :]))
            off += s
        return tuple(outs)

    return run


@table.kernel("Reshape", dtypes=ALL_TYPES)
def reshape(ctx: KernelContext) -> RunFn:
    arg_shape = None if ctx.args["shape"] is None else list(ctx.args["shape"])
    with_old, cp = ctx.num_outputs > 1, xp(ctx)

    def run(x, new_shape=None):
        read = None if new_shape is None else (lambda: _host_ints("Reshape", "input 1", new_shape))
        spec = shared.reshape_spec(arg_shape, read)
        y = cp.ascontiguousarray(x).reshape(reshape_target("Reshape", x.shape, spec))
        if with_old:
            return y, cp.asarray(np.asarray(x.shape, INT64))
        return (y,)

    return run


@table.kernel("Transpose", dtypes=ALL_TYPES)
def transpose(ctx: KernelContext) -> RunFn:
    axes, cp = list(ctx.args["axes"]) or None, xp(ctx)

    def run(x):
        perm = shared.transpose_perm(axes, x.ndim)
        return (cp.transpose(x, perm).copy(),)  # materialised, as on cpu

    return run


@table.kernel("Flatten", dtypes=ALL_TYPES)
def flatten(ctx: KernelContext) -> RunFn:
    axis, cp = int(ctx.args["axis"]), xp(ctx)
    return lambda x: (cp.ascontiguousarray(x).reshape(*shared.flatten_shape(x.shape, axis)),)


@table.kernel("Copy", dtypes=ALL_TYPES)
def copy(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    return lambda x: (cp.array(x, copy=True, order="C"),)


@table.kernel("Squeeze", dtypes=ALL_TYPES)
def squeeze(ctx: KernelContext) -> RunFn:
    dims, cp = list(ctx.args["dims"]), xp(ctx)
    return lambda x: (cp.ascontiguousarray(x).reshape(squeeze_shape("Squeeze", x.shape, dims)),)


@table.kernel("ExpandDims", dtypes=ALL_TYPES)
def expand_dims(ctx: KernelContext) -> RunFn:
    dims, cp = list(ctx.args["dims"]), xp(ctx)
    return lambda x: (cp.ascontiguousarray(x).reshape(expand_shape("ExpandDims", x.shape, dims)),)


@table.kernel("Slice", dtypes=ALL_TYPES)
def slice_(ctx: KernelContext) -> RunFn:
    bounds, cp = shared.Slicer("Slice", ctx.num_inputs, ctx.args, 0, _host_ints), xp(ctx)

    def run(x, *starts_ends):
        shape, g, base = bounds(x.shape, starts_ends)
        x = cp.ascontiguousarray(x)
        if 0 in shape:
            return (cp.empty(shape, x.dtype),)
        return (cp.ascontiguousarray(_strided(cp, x, base, g)).reshape(shape),)

    return run


@table.kernel("SliceGradient", dtypes=ALL_TYPES)
def slice_gradient(ctx: KernelContext) -> RunFn:
    bounds, cp = shared.Slicer("SliceGradient", ctx.num_inputs, ctx.args, 1, _host_ints), xp(ctx)

    def run(x, *rest):
        dy = rest[-1]
        shape, g, base = bounds(x.shape, rest[:-1])
        shared.check_slice_gradient(dy.shape, shape)
        dx = cp.zeros(x.shape, dy.dtype)
        if dy.size:
            view = _strided(cp, dx, base, g)  # writes land in dx
            view[...] = dy.reshape(view.shape)
        return (dx,)

    return run


@table.kernel("Gather", dtypes=ALL_TYPES)
def gather(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(data, idx):
        shared.check_gather_data(data)
        check(idx.dtype in (INT32, INT64), f"Gather: indices must be int32 or int64, got {idx.dtype}")
        lo, hi = index_range(cp, idx)
        shape, _, _ = shared.gather_layout(data, idx, lo, hi)
        return (cp.ascontiguousarray(cp.take(data, idx, axis=0)).reshape(shape),)

    return run


@table.kernel("SparseToDense", dtypes=NUMERIC_TYPES)
def sparse_to_dense(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(idx, values, like=None):
        shared.check_sparse_values(idx, values)
        check(idx.dtype in (INT32, INT64), f"SparseToDense: indices must be int32 or int64, got {idx.dtype}")
        lo, hi = index_range(cp, idx)
        shape, _ = shared.sparse_to_dense_layout(idx, values, like, lo, hi)
        out = cp.zeros(shape, values.dtype)
        if idx.size:
            scatter_add(cp, out, idx, values)  # repeated indices sum
        return (out,)

    return run


def _read_int(v: Any) -> int:
    return int(to_host(v).reshape(()))


@table.kernel("Tile", dtypes=ALL_TYPES)
def tile(ctx: KernelContext) -> RunFn:
    params, cp = shared.TileParams("Tile", ctx.args, _read_int), xp(ctx)

    def run(x, *extra):
        tiles, axis = params(extra)
        shape, _ = shared.tile_layout(x.shape, tiles, axis)
        reps = [1] * x.ndim
        reps[norm_axis(axis, x.ndim, "Tile")] = tiles
        return (cp.tile(x, reps).reshape(shape),)

    return run


@table.kernel("TileGradient", dtypes=NUMERIC_TYPES)
def tile_gradient(ctx: KernelContext) -> RunFn:
    params, cp = shared.TileParams("TileGradient", ctx.args, _read_int), xp(ctx)

    def run(dy, *extra):
        tiles, axis = params(extra)
        shape, _ = shared.tile_gradient_layout(dy.shape, tiles, axis)
        ax = norm_axis(axis, dy.ndim, "TileGradient")
        blocks = cp.ascontiguousarray(dy).reshape(
            *dy.shape[:ax], tiles, dy.shape[ax] // tiles, *dy.shape[ax + 1 :]
        )
        acc = work_dtype(dy.dtype) if dy.dtype.kind == "f" else dy.dtype  # float16 sums in float32
        return (blocks.sum(axis=ax, dtype=acc).astype(dy.dtype, copy=False).reshape(shape),)

    return run


@table.kernel("Shape", dtypes=ALL_TYPES)
def shape(ctx: KernelContext) -> RunFn:
    axes, cp = list(ctx.args["axes"]), xp(ctx)

    def run(x):
        dims = x.shape
        if axes:
            dims = tuple(x.shape[norm_axis(a, x.ndim, "Shape", "axes entry")] for a in axes)
        return (cp.asarray(np.asarray(dims, INT64)),)

    return run


@table.kernel("ResizeLike", dtypes=ALL_TYPES)
def resize_like(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def run(x, like):
        shared.check_resize_like(x, like)
        return (cp.ascontiguousarray(x).reshape(like.shape),)

    return run


@table.kernel("ZerosLike", dtypes=ALL_TYPES)
def zeros_like(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)
    return lambda x: (cp.zeros(x.shape, x.dtype),)
