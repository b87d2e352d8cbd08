"""opencl kernels for the tensor family (see kaffa.ops.tensor).

Data movement runs one kernel per item size on raw bits (see cl/tensor.cl), so every dtype shares
it. As on cpu, Reshape, Flatten, Squeeze, ExpandDims and ResizeLike return a reshaped view of the
input (same buffer, offset 0): no kernel writes into its inputs, so sharing is safe. Shapes and
other metadata that arrive as device tensors (Reshape's new_shape, Split's sizes, Slice's starts
and ends, Tile's tiles and axis) are read back to the host: the output shape depends on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import split_axis, transpose_geometry
from kaffa.launch import tensor as shared
from kaffa.ops.tensor import expand_shape, reshape_target, squeeze_shape
from kaffa.schema import check, norm_axis
from kaffa_opencl.kernels.common import Consts, Launcher, device, empty, i64, kernel

table = KernelTable("opencl")

INT32, INT64 = np.dtype(np.int32), np.dtype(np.int64)
RAW = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
RANGE_WG = 64  # work-group size of index_range (RANGE_WG in tensor.cl)


class _Fn:
    """One cl/tensor.cl function for one op, built on first use per type. ``raw`` functions move
    bits and are built per item size; the others per dtype (and per index type ``I``)."""

    def __init__(self, ctx: KernelContext, name: str, raw: bool = True):
        self.ctx, self.name, self.raw = ctx, name, raw
        self._built: dict[tuple[Any, ...], Launcher] = {}

    def __call__(self, dtype: Any, index: Any = None) -> Launcher:
        dt = np.dtype(dtype)
        t = np.dtype(RAW[dt.itemsize]) if self.raw else dt
        key = (t, index)
        k = self._built.get(key)
        if k is None:
            extra: dict[str, Any] = {"RAW": 1} if self.raw else {}
            if index is not None:
                extra["I"] = np.dtype(index)
            k = self._built[key] = kernel(self.ctx, "tensor", self.name, dtype=t, **extra)
        return k


def _upload(dev: Any, values: Sequence[int], dtype: np.dtype) -> Any:
    """A fresh small device array (never a Consts buffer: the caller owns and may overwrite it)."""
    return dev.allocator.copyin(np.asarray(values, dtype=dtype))


def _host_ints(op: str, what: str, v: Any) -> list[int]:
    shared.check_int_vector(op, what, v)
    return [int(a) for a in v.get()]


def _copy(dev: Any, k: _Fn, x: Any) -> Any:
    y = empty(dev, x.shape, x.dtype)
    k(x.dtype)(x.size, x, y, i64(x.size))
    return y


def _zeros(dev: Any, k: _Fn, shape: Sequence[int], dtype: Any) -> Any:
    y = empty(dev, shape, dtype)
    k(dtype)(y.size, y, i64(y.size))
    return y


@table.kernel("Concat", dtypes=ALL_TYPES)
def concat(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    with_info = ctx.num_outputs > 1
    dev, part = device(ctx), _Fn(ctx, "concat_part")

    def run(*xs):
        ax, sizes, shape = shared.concat_layout(xs, axis, add_axis)
        y = empty(dev, shape, xs[0].dtype)
        _, total, inner = split_axis(shape, ax)
        k, off = part(y.dtype), 0
        for x, s in zip(xs, sizes):
            k(x.size, x, y, i64(s * inner), i64(total * inner), i64(off * inner), i64(x.size))
            off += s
        if with_info:
            return y, _upload(dev, sizes, INT32)
        return (y,)

    return run


@table.kernel("Split", dtypes=ALL_TYPES)
def split(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    n = ctx.num_outputs
    arg_sizes = list(ctx.args["split"] or [])
    shared.check_split_arg(arg_sizes, n)
    dev, part = device(ctx), _Fn(ctx, "split_part")

    def run(x, sizes_in=None):
        read = None if sizes_in is None else (lambda: _host_ints("Split", "input 1", sizes_in))
        ax, dim, sizes = shared.split_sizes(x.shape, axis, add_axis, n, arg_sizes, read)
        _, _, inner = split_axis(x.shape, ax)
        k, off, outs = part(x.dtype), 0, []
        for s in sizes:
            mid = () if add_axis else (s,)  # add_axis drops the axis
            y = empty(dev, (*x.shape[:ax], *mid, *x.shape[ax + 1 :]), x.dtype)
            k(y.size, x, y, i64(s * inner), i64(dim * inner), i64(off * inner), i64(y.size))
            outs.append(y)
            off += s
        return tuple(outs)

    return run


@table.kernel("Reshape", dtypes=ALL_TYPES)
def reshape(ctx: KernelContext) -> RunFn:
    arg_shape = None if ctx.args["shape"] is None else list(ctx.args["shape"])
    with_old = ctx.num_outputs > 1
    dev = device(ctx)

    def run(x, new_shape=None):
        read = None if new_shape is None else (lambda: _host_ints("Reshape", "input 1", new_shape))
        spec = shared.reshape_spec(arg_shape, read)
        y = x.reshape(reshape_target("Reshape", x.shape, spec))
        if with_old:
            return y, _upload(dev, x.shape, INT64)
        return (y,)

    return run


@table.kernel("Transpose", dtypes=ALL_TYPES)
def transpose(ctx: KernelContext) -> RunFn:
    axes = list(ctx.args["axes"]) or None
    dev, read = device(ctx), _Fn(ctx, "strided_read")
    consts = Consts(dev)

    def run(x):
        perm = shared.transpose_perm(axes, x.ndim)
        y = empty(dev, [x.shape[p] for p in perm], x.dtype)  # materialised, as on cpu
        g = consts(transpose_geometry(x.shape, perm))
        read(x.dtype)(y.size, x, y, g, i64(0), i64(y.size))
        return (y,)

    return run


@table.kernel("Flatten", dtypes=ALL_TYPES)
def flatten(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(x):
        return (x.reshape(*shared.flatten_shape(x.shape, axis)),)

    return run


@table.kernel("Copy", dtypes=ALL_TYPES)
def copy(ctx: KernelContext) -> RunFn:
    dev, k = device(ctx), _Fn(ctx, "copy")
    return lambda x: (_copy(dev, k, x),)


@table.kernel("Squeeze", dtypes=ALL_TYPES)
def squeeze(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])
    return lambda x: (x.reshape(squeeze_shape("Squeeze", x.shape, dims)),)


@table.kernel("ExpandDims", dtypes=ALL_TYPES)
def expand_dims(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])
    return lambda x: (x.reshape(expand_shape("ExpandDims", x.shape, dims)),)


@table.kernel("Slice", dtypes=ALL_TYPES)
def slice_(ctx: KernelContext) -> RunFn:
    bounds = shared.Slicer("Slice", ctx.num_inputs, ctx.args, 0, _host_ints)
    dev, read = device(ctx), _Fn(ctx, "strided_read")
    consts = Consts(dev)

    def run(x, *starts_ends):
        shape, g, base = bounds(x.shape, starts_ends)
        y = empty(dev, shape, x.dtype)
        read(x.dtype)(y.size, x, y, consts(g), i64(base), i64(y.size))
        return (y,)

    return run


@table.kernel("SliceGradient", dtypes=ALL_TYPES)
def slice_gradient(ctx: KernelContext) -> RunFn:
    bounds = shared.Slicer("SliceGradient", ctx.num_inputs, ctx.args, 1, _host_ints)
    dev = device(ctx)
    consts = Consts(dev)
    zero, write = _Fn(ctx, "zero"), _Fn(ctx, "strided_write")

    def run(x, *rest):
        dy = rest[-1]
        shape, g, base = bounds(x.shape, rest[:-1])
        shared.check_slice_gradient(dy.shape, shape)
        dx = _zeros(dev, zero, x.shape, dy.dtype)
        write(dy.dtype)(dy.size, dy, dx, consts(g), i64(base), i64(dy.size))
        return (dx,)

    return run


def _index_range(op: str, dev: Any, k: _Fn, idx: Any) -> tuple[int, int]:
    """(min, max) of the indices, reduced on the device; a blocking read of two int64s."""
    check(idx.dtype in (INT32, INT64), f"{op}: indices must be int32 or int64, got {idx.dtype}")
    if idx.size == 0:
        return 0, 0
    out = empty(dev, (2,), INT64)
    k(RAW[1], idx.dtype)(RANGE_WG, idx, i64(idx.size), out, local=(RANGE_WG,))
    lo, hi = (int(v) for v in out.get())
    return lo, hi


@table.kernel("Gather", dtypes=ALL_TYPES)
def gather(ctx: KernelContext) -> RunFn:
    dev, rng, gather = device(ctx), _Fn(ctx, "index_range"), _Fn(ctx, "gather")

    def run(data, idx):
        shared.check_gather_data(data)
        lo, hi = _index_range("Gather", dev, rng, idx)
        shape, rows, inner = shared.gather_layout(data, idx, lo, hi)
        y = empty(dev, shape, data.dtype)
        gather(data.dtype, idx.dtype)(y.size, data, idx, y, i64(rows), i64(inner), i64(y.size))
        return (y,)

    return run


@table.kernel("SparseToDense", dtypes=NUMERIC_TYPES)
def sparse_to_dense(ctx: KernelContext) -> RunFn:
    dev, rng = device(ctx), _Fn(ctx, "index_range")
    zero, scatter = _Fn(ctx, "zero"), _Fn(ctx, "sparse_to_dense", raw=False)

    def run(idx, values, like=None):
        shared.check_sparse_values(idx, values)
        lo, hi = _index_range("SparseToDense", dev, rng, idx)
        shape, inner = shared.sparse_to_dense_layout(idx, values, like, lo, hi)
        if idx.size == 0:  # an empty index buffer cannot be a kernel argument
            return (_zeros(dev, zero, shape, values.dtype),)
        y = empty(dev, shape, values.dtype)
        scatter(values.dtype, idx.dtype)(y.size, idx, values, y, i64(idx.size), i64(inner), i64(y.size))
        return (y,)

    return run


def _read_int(v: Any) -> int:
    return int(v.get().reshape(()))


@table.kernel("Tile", dtypes=ALL_TYPES)
def tile(ctx: KernelContext) -> RunFn:
    params = shared.TileParams("Tile", ctx.args, _read_int)
    dev, read = device(ctx), _Fn(ctx, "strided_read")
    consts = Consts(dev)

    def run(x, *extra):
        tiles, axis = params(extra)
        shape, g = shared.tile_layout(x.shape, tiles, axis)
        y = empty(dev, shape, x.dtype)
        read(x.dtype)(y.size, x, y, consts(g), i64(0), i64(y.size))
        return (y,)

    return run


@table.kernel("TileGradient", dtypes=NUMERIC_TYPES)
def tile_gradient(ctx: KernelContext) -> RunFn:
    params = shared.TileParams("TileGradient", ctx.args, _read_int)
    dev, k = device(ctx), _Fn(ctx, "tile_gradient", raw=False)

    def run(dy, *extra):
        tiles, axis = params(extra)
        shape, m = shared.tile_gradient_layout(dy.shape, tiles, axis)
        dx = empty(dev, shape, dy.dtype)
        k(dy.dtype)(dx.size, dy, dx, i64(tiles), i64(m), i64(dx.size))  # sums in float for half
        return (dx,)

    return run


@table.kernel("Shape", dtypes=ALL_TYPES)
def shape(ctx: KernelContext) -> RunFn:
    axes = list(ctx.args["axes"])
    dev = device(ctx)

    def run(x):
        dims = x.shape
        if axes:
            dims = tuple(x.shape[norm_axis(a, x.ndim, "Shape", "axes entry")] for a in axes)
        return (_upload(dev, dims, INT64),)

    return run


@table.kernel("ResizeLike", dtypes=ALL_TYPES)
def resize_like(ctx: KernelContext) -> RunFn:
    def run(x, like):
        shared.check_resize_like(x, like)
        return (x.reshape(like.shape),)

    return run


@table.kernel("ZerosLike", dtypes=ALL_TYPES)
def zeros_like(ctx: KernelContext) -> RunFn:
    dev, zero = device(ctx), _Fn(ctx, "zero")
    return lambda x: (_zeros(dev, zero, x.shape, x.dtype),)
