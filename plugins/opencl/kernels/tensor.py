"""opencl kernels for the tensor family (see kaffa.ops.tensor).

Data movement runs one kernel per item size on raw bits (see cl/tensor.cl), so every dtype shares
it. As on cpu, Reshape, Flatten, Squeeze, ExpandDims and ResizeLike return a reshaped view of the
input (same buffer, offset 0): no kernel writes into its inputs, so sharing is safe. Shapes and
other metadata that arrive as device tensors (Reshape's new_shape, Split's sizes, Slice's starts
and ends, Tile's tiles and axis) are read back to the host: the output shape depends on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.dtypes import ALL_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import MAX_DIMS, collapse, contiguous_strides, split_axis, transpose_geometry
from kaffa.ops.tensor import expand_shape, reshape_target, slice_bounds, squeeze_shape
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
    check(
        v.ndim == 1 and v.dtype.kind in "iu",
        f"{op}: {what} must be a 1-D int tensor, got {v.dtype}{list(v.shape)}",
    )
    return [int(a) for a in v.get()]


def _geometry(dims: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """The strided_read/strided_write table for an output of ``dims`` walking ``strides``."""
    cd, (cs,) = collapse(dims, strides)
    if len(cd) > MAX_DIMS:
        raise ValueError(f"a copy over {len(cd)} non-mergeable dims; kernels take at most {MAX_DIMS}")
    return np.asarray([len(cd), *cd, *cs], dtype=np.int32)


def _shapes(xs: Sequence[Any]) -> str:
    return ", ".join(str(list(x.shape)) for x in xs)


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
        rank = xs[0].ndim
        check(all(x.ndim == rank for x in xs), f"Concat: inputs have different ranks: {_shapes(xs)}")
        if add_axis:
            ax = norm_axis(axis, rank + 1, "Concat")
            check(
                all(x.shape == xs[0].shape for x in xs),
                f"Concat: with add_axis all inputs need one shape, got {_shapes(xs)}",
            )
            sizes = [1] * len(xs)  # each input is one slice of the new axis
            shape = (*xs[0].shape[:ax], len(xs), *xs[0].shape[ax:])
        else:
            ax = norm_axis(axis, rank, "Concat")
            rest = xs[0].shape[:ax] + xs[0].shape[ax + 1 :]
            check(
                all(x.shape[:ax] + x.shape[ax + 1 :] == rest for x in xs),
                f"Concat: inputs differ off the concat axis {ax}: {_shapes(xs)}",
            )
            sizes = [x.shape[ax] for x in xs]
            shape = (*rest[:ax], sum(sizes), *rest[ax:])
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
    check(
        not arg_sizes or len(arg_sizes) == n,
        f"Split: `split` has {len(arg_sizes)} sizes for {n} outputs",
    )
    dev, part = device(ctx), _Fn(ctx, "split_part")

    def run(x, sizes_in=None):
        check(x.ndim >= 1, "Split: the input is a scalar")
        ax = norm_axis(axis, x.ndim, "Split")
        dim = x.shape[ax]
        if add_axis:
            check(dim == n, f"Split: with add_axis, axis {ax} has {dim} entries for {n} outputs")
            sizes = [1] * n
        else:
            if sizes_in is not None:
                sizes = _host_ints("Split", "input 1", sizes_in)
                check(len(sizes) == n, f"Split: input 1 has {len(sizes)} sizes for {n} outputs")
            elif arg_sizes:
                sizes = arg_sizes
            else:
                check(dim % n == 0, f"Split: axis {ax} of size {dim} does not split into {n} equal parts")
                sizes = [dim // n] * n
            check(
                all(s >= 0 for s in sizes) and sum(sizes) == dim,
                f"Split: sizes {sizes} must be non-negative and sum to {dim}, the size of axis {ax}",
            )
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
        if new_shape is not None:
            spec = _host_ints("Reshape", "input 1", new_shape)
        else:
            check(arg_shape is not None, "Reshape: no new shape (give the `shape` argument or input 1)")
            spec = arg_shape
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
        check(
            axes is None or len(axes) == x.ndim,
            f"Transpose: axes {axes} has {len(axes or ())} entries for a rank-{x.ndim} input",
        )
        perm = axes or list(reversed(range(x.ndim)))
        y = empty(dev, [x.shape[p] for p in perm], x.dtype)  # materialised, as on cpu
        g = consts(transpose_geometry(x.shape, perm))
        read(x.dtype)(y.size, x, y, g, i64(0), i64(y.size))
        return (y,)

    return run


@table.kernel("Flatten", dtypes=ALL_TYPES)
def flatten(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(x):
        check(0 <= axis <= x.ndim, f"Flatten: axis {axis} is out of range for a rank-{x.ndim} input")
        return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)

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


def _slicer(op: str, ctx: KernelContext, data: int):
    """bounds(x shape, inputs after data) -> [(start, end)] per dim, args parsed once."""
    n_extra = ctx.num_inputs - 1 - data
    check(n_extra in (0, 2), f"{op}: give both starts and ends as inputs, or neither")
    arg_starts, arg_ends = list(ctx.args["starts"]), list(ctx.args["ends"])

    def bounds(shape: tuple[int, ...], extra: tuple[Any, ...]) -> tuple[list[int], np.ndarray, int]:
        """(slice shape, strided_read geometry, base offset)."""
        if extra:
            starts, ends = (_host_ints(op, w, v) for w, v in zip(("starts", "ends"), extra))
        else:
            starts, ends = arg_starts, arg_ends
        b = slice_bounds(op, shape, starts, ends)
        strides = contiguous_strides(shape)
        out = [e - s for s, e in b]  # type: ignore[misc]
        base = sum(s * st for (s, _), st in zip(b, strides))  # type: ignore[misc]
        return out, _geometry(out, strides), base

    return bounds


@table.kernel("Slice", dtypes=ALL_TYPES)
def slice_(ctx: KernelContext) -> RunFn:
    bounds = _slicer("Slice", ctx, 0)
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
    bounds = _slicer("SliceGradient", ctx, 1)
    dev = device(ctx)
    consts = Consts(dev)
    zero, write = _Fn(ctx, "zero"), _Fn(ctx, "strided_write")

    def run(x, *rest):
        dy = rest[-1]
        shape, g, base = bounds(x.shape, rest[:-1])
        check(
            dy.shape == tuple(shape),
            f"SliceGradient: dY has shape {list(dy.shape)}, the slice {shape}",
        )
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


def _check_range(op: str, lo: int, hi: int, size: int, n: int) -> None:
    check(
        size == 0 or (lo >= 0 and hi < n),
        f"{op}: indices must lie in [0, {n}), got values in [{lo}, {hi}]",
    )


@table.kernel("Gather", dtypes=ALL_TYPES)
def gather(ctx: KernelContext) -> RunFn:
    dev, rng, gather = device(ctx), _Fn(ctx, "index_range"), _Fn(ctx, "gather")

    def run(data, idx):
        check(data.ndim >= 1, "Gather: DATA is a scalar; it needs at least one dim")
        lo, hi = _index_range("Gather", dev, rng, idx)
        rows = data.shape[0]
        _check_range("Gather", lo, hi, idx.size, rows)
        y = empty(dev, (*idx.shape, *data.shape[1:]), data.dtype)
        inner = math.prod(data.shape[1:])
        gather(data.dtype, idx.dtype)(y.size, data, idx, y, i64(rows), i64(inner), i64(y.size))
        return (y,)

    return run


@table.kernel("SparseToDense", dtypes=NUMERIC_TYPES)
def sparse_to_dense(ctx: KernelContext) -> RunFn:
    dev, rng = device(ctx), _Fn(ctx, "index_range")
    zero, scatter = _Fn(ctx, "zero"), _Fn(ctx, "sparse_to_dense", raw=False)

    def run(idx, values, like=None):
        k = idx.ndim
        check(
            values.shape[:k] == idx.shape,
            f"SparseToDense: values shape {list(values.shape)} does not start with the indices "
            f"shape {list(idx.shape)}",
        )
        lo, hi = _index_range("SparseToDense", dev, rng, idx)
        if like is not None:
            check(like.ndim >= 1, "SparseToDense: data_to_infer_dim is a scalar; it needs a first dim")
            first = like.shape[0]
        else:
            first = hi + 1 if idx.size else 0
        _check_range("SparseToDense", lo, hi, idx.size, first)
        shape = (first, *values.shape[k:])
        if idx.size == 0:  # an empty index buffer cannot be a kernel argument
            return (_zeros(dev, zero, shape, values.dtype),)
        y = empty(dev, shape, values.dtype)
        inner = math.prod(values.shape[k:])
        scatter(values.dtype, idx.dtype)(y.size, idx, values, y, i64(idx.size), i64(inner), i64(y.size))
        return (y,)

    return run


def _tile_params(op: str, ctx: KernelContext):
    """params(extra inputs) -> (tiles, axis): the arguments, or the optional inputs 1 and 2."""
    arg_tiles, arg_axis = int(ctx.args["tiles"]), int(ctx.args["axis"])

    def scalar(what: str, v: Any) -> int:
        check(
            v.size == 1 and v.dtype.kind in "iu",
            f"{op}: {what} must be one int, got {v.dtype}{list(v.shape)}",
        )
        return int(v.get().reshape(()))

    def params(extra: tuple[Any, ...]) -> tuple[int, int]:
        tiles = scalar("tiles", extra[0]) if extra else arg_tiles
        axis = scalar("axis", extra[1]) if len(extra) > 1 else arg_axis
        check(tiles >= 1, f"{op}: tiles must be >= 1, got {tiles}")
        return tiles, axis

    return params


@table.kernel("Tile", dtypes=ALL_TYPES)
def tile(ctx: KernelContext) -> RunFn:
    params = _tile_params("Tile", ctx)
    dev, read = device(ctx), _Fn(ctx, "strided_read")
    consts = Consts(dev)

    def run(x, *extra):
        tiles, axis = params(extra)
        check(x.ndim >= 1, "Tile: the input is a scalar; it needs an axis to tile")
        ax = norm_axis(axis, x.ndim, "Tile")
        outer, d, inner = split_axis(x.shape, ax)
        y = empty(dev, (*x.shape[:ax], d * tiles, *x.shape[ax + 1 :]), x.dtype)
        m = d * inner
        g = consts(_geometry((outer, tiles, m), (m, 0, 1)))  # stride 0: every tile reads the block
        read(x.dtype)(y.size, x, y, g, i64(0), i64(y.size))
        return (y,)

    return run


@table.kernel("TileGradient", dtypes=NUMERIC_TYPES)
def tile_gradient(ctx: KernelContext) -> RunFn:
    params = _tile_params("TileGradient", ctx)
    dev, k = device(ctx), _Fn(ctx, "tile_gradient", raw=False)

    def run(dy, *extra):
        tiles, axis = params(extra)
        check(dy.ndim >= 1, "TileGradient: dY is a scalar")
        ax = norm_axis(axis, dy.ndim, "TileGradient")
        d = dy.shape[ax]
        check(d % tiles == 0, f"TileGradient: axis {ax} of dY shape {list(dy.shape)} is not {tiles} tiles")
        dx = empty(dev, (*dy.shape[:ax], d // tiles, *dy.shape[ax + 1 :]), dy.dtype)
        m = (d // tiles) * math.prod(dy.shape[ax + 1 :])
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
        check(
            x.size == like.size,
            f"ResizeLike: input shape {list(x.shape)} ({x.size} elements) cannot take the shape "
            f"{list(like.shape)} ({like.size} elements)",
        )
        return (x.reshape(like.shape),)

    return run


@table.kernel("ZerosLike", dtypes=ALL_TYPES)
def zeros_like(ctx: KernelContext) -> RunFn:
    dev, zero = device(ctx), _Fn(ctx, "zero")
    return lambda x: (_zeros(dev, zero, x.shape, x.dtype),)
