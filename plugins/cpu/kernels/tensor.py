"""Concat, Split, Reshape, Transpose, Flatten, Copy, Squeeze, ExpandDims, Slice, Gather,
SparseToDense, Tile, Shape, ResizeLike, ZerosLike and the gradient ops SliceGradient, TileGradient.

Outputs are contiguous. They may be views of the input where that costs nothing (Reshape and
Flatten of a contiguous input, Split along the leading axis): no kernel writes into its inputs,
so sharing memory is safe.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_NUMERIC_TYPES, ALL_TYPES, BOOL, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.tensor import check_int_vector, check_split_arg, concat_layout, split_sizes
from kaffa.ops.tensor import expand_shape, reshape_target, slice_bounds, squeeze_shape
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")

INT32, INT64 = np.dtype(np.int32), np.dtype(np.int64)


def contiguous(x: np.ndarray) -> np.ndarray:
    """x, or a C-contiguous copy of it. (np.ascontiguousarray would turn a 0-d array into 1-d.)"""
    return x if x.flags.c_contiguous else x.copy()


@table.kernel("Concat", dtypes=ALL_TYPES)
def concat(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    with_info = ctx.num_outputs > 1

    def run(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        ax, sizes, _ = concat_layout(xs, axis, add_axis)
        y = np.stack(xs, axis=ax) if add_axis else np.concatenate(xs, axis=ax)
        if with_info:
            return y, np.array(sizes, dtype=INT32)
        return (y,)

    return run


@table.kernel("Split", dtypes=ALL_TYPES)
def split(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    n = ctx.num_outputs
    arg_sizes = list(ctx.args["split"] or [])
    check_split_arg(arg_sizes, n)

    def run(x: np.ndarray, sizes_in: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        def read() -> list[int]:  # input 1's sizes (split_sizes asks only without add_axis)
            check_int_vector("Split", "input 1", sizes_in)
            return [int(s) for s in sizes_in]

        ax, _, sizes = split_sizes(
            x.shape, axis, add_axis, n, arg_sizes, read if sizes_in is not None else None
        )
        if add_axis:
            lead = (slice(None),) * ax
            return tuple(contiguous(x[(*lead, i, ...)]) for i in range(n))  # `...`: 0-d stays an array
        return tuple(contiguous(p) for p in np.split(x, np.cumsum(sizes[:-1]), axis=ax))

    return run


@table.kernel("Reshape", dtypes=ALL_TYPES)
def reshape(ctx: KernelContext) -> RunFn:
    arg_shape = None if ctx.args["shape"] is None else list(ctx.args["shape"])
    with_old = ctx.num_outputs > 1

    def run(x: np.ndarray, new_shape: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        if new_shape is not None:
            check(
                new_shape.ndim == 1 and new_shape.dtype.kind in "iu",
                f"Reshape: input 1 must be a 1-D int tensor, got {new_shape.dtype}{list(new_shape.shape)}",
            )
            spec = [int(s) for s in new_shape]
        else:
            check(arg_shape is not None, "Reshape: no new shape (give the `shape` argument or input 1)")
            spec = arg_shape
        y = x.reshape(reshape_target("Reshape", x.shape, spec))  # type: ignore[arg-type]
        if with_old:
            return y, np.array(x.shape, dtype=INT64)
        return (y,)

    return run


@table.kernel("Transpose", dtypes=ALL_TYPES)
def transpose(ctx: KernelContext) -> RunFn:
    axes = list(ctx.args["axes"]) or None

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(
            axes is None or len(axes) == x.ndim,
            f"Transpose: axes {axes} has {len(axes or ())} entries for a rank-{x.ndim} input",
        )
        # Materialised, as in Caffe2: consumers (and device copies) get a contiguous array.
        return (contiguous(np.transpose(x, axes)),)

    return run


@table.kernel("Flatten", dtypes=ALL_TYPES)
def flatten(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(0 <= axis <= x.ndim, f"Flatten: axis {axis} is out of range for a rank-{x.ndim} input")
        return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)

    return run


@table.kernel("Copy", dtypes=(*ALL_NUMERIC_TYPES, BOOL))
def copy(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (x.copy(),)

    return run


@table.kernel("Squeeze", dtypes=ALL_TYPES)
def squeeze(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (contiguous(x).reshape(squeeze_shape("Squeeze", x.shape, dims)),)  # type: ignore[arg-type]

    return run


@table.kernel("ExpandDims", dtypes=ALL_TYPES)
def expand_dims(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (contiguous(x).reshape(expand_shape("ExpandDims", x.shape, dims)),)  # type: ignore[arg-type]

    return run


def _int_vector(op: str, what: str, v: np.ndarray) -> list[int]:
    check(
        v.ndim == 1 and v.dtype.kind in "iu",
        f"{op}: {what} must be a 1-D int tensor, got {v.dtype}{list(v.shape)}",
    )
    return [int(a) for a in v]


def _slicer(op: str, ctx: KernelContext, data: int):
    """index(x shape, inputs after data) -> the tuple of slices, args parsed once."""
    n_extra = ctx.num_inputs - 1 - data
    check(n_extra in (0, 2), f"{op}: give both starts and ends as inputs, or neither")
    arg_starts, arg_ends = list(ctx.args["starts"]), list(ctx.args["ends"])

    def index(shape: tuple[int, ...], extra: tuple[np.ndarray, ...]) -> tuple[slice, ...]:
        if extra:
            starts, ends = (_int_vector(op, w, v) for w, v in zip(("starts", "ends"), extra))
        else:
            starts, ends = arg_starts, arg_ends
        return tuple(slice(s, e) for s, e in slice_bounds(op, shape, starts, ends))  # type: ignore[misc]

    return index


@table.kernel("Slice", dtypes=ALL_TYPES)
def slice_(ctx: KernelContext) -> RunFn:
    index = _slicer("Slice", ctx, 0)

    def run(x: np.ndarray, *starts_ends: np.ndarray) -> tuple[np.ndarray]:
        return (contiguous(x[(*index(x.shape, starts_ends), ...)]),)  # `...`: 0-d stays an array

    return run


@table.kernel("SliceGradient", dtypes=ALL_TYPES)
def slice_gradient(ctx: KernelContext) -> RunFn:
    index = _slicer("SliceGradient", ctx, 1)

    def run(x: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray]:
        dy = rest[-1]
        where = (*index(x.shape, rest[:-1]), ...)
        dx = np.zeros(x.shape, dy.dtype)
        want = dx[where].shape
        check(dy.shape == want, f"SliceGradient: dY has shape {list(dy.shape)}, the slice {list(want)}")
        dx[where] = dy
        return (dx,)

    return run


def _indices(op: str, idx: np.ndarray, n: int) -> None:
    check(idx.dtype in (INT32, INT64), f"{op}: indices must be int32 or int64, got {idx.dtype}")
    check(
        idx.size == 0 or (int(idx.min()) >= 0 and int(idx.max()) < n),
        f"{op}: indices must lie in [0, {n}), got values in [{idx.min() if idx.size else 0}, "
        f"{idx.max() if idx.size else 0}]",
    )


@table.kernel("Gather", dtypes=ALL_TYPES)
def gather(ctx: KernelContext) -> RunFn:
    def run(data: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        check(data.ndim >= 1, "Gather: DATA is a scalar; it needs at least one dim")
        _indices("Gather", idx, data.shape[0])
        # A 0-d index is basic indexing: a view (maybe strided), or a numpy scalar for 1-D data.
        return (contiguous(np.asarray(data[idx])),)

    return run


@table.kernel("SparseToDense", dtypes=NUMERIC_TYPES)
def sparse_to_dense(ctx: KernelContext) -> RunFn:
    def run(idx: np.ndarray, values: np.ndarray, like: np.ndarray | None = None) -> tuple[np.ndarray]:
        k = idx.ndim
        check(
            values.shape[:k] == idx.shape,
            f"SparseToDense: values shape {list(values.shape)} does not start with the indices "
            f"shape {list(idx.shape)}",
        )
        if like is not None:
            check(like.ndim >= 1, "SparseToDense: data_to_infer_dim is a scalar; it needs a first dim")
            first = like.shape[0]
        else:
            first = int(idx.max()) + 1 if idx.size else 0
        _indices("SparseToDense", idx, first)
        out = np.zeros((first, *values.shape[k:]), values.dtype)
        np.add.at(out, idx, values)  # repeated indices sum
        return (out,)

    return run


def _tile_params(op: str, ctx: KernelContext):
    """params(extra inputs) -> (tiles, axis): the arguments, or the optional inputs 1 and 2."""
    arg_tiles, arg_axis = int(ctx.args["tiles"]), int(ctx.args["axis"])

    def scalar(what: str, v: np.ndarray) -> int:
        check(
            v.size == 1 and v.dtype.kind in "iu",
            f"{op}: {what} must be one int, got {v.dtype}{list(v.shape)}",
        )
        return int(v.reshape(()))

    def params(extra: tuple[np.ndarray, ...]) -> tuple[int, int]:
        tiles = scalar("tiles", extra[0]) if extra else arg_tiles
        axis = scalar("axis", extra[1]) if len(extra) > 1 else arg_axis
        check(tiles >= 1, f"{op}: tiles must be >= 1, got {tiles}")
        return tiles, axis

    return params


@table.kernel("Tile", dtypes=ALL_TYPES)
def tile(ctx: KernelContext) -> RunFn:
    params = _tile_params("Tile", ctx)

    def run(x: np.ndarray, *extra: np.ndarray) -> tuple[np.ndarray]:
        tiles, axis = params(extra)
        check(x.ndim >= 1, "Tile: the input is a scalar; it needs an axis to tile")
        reps = [1] * x.ndim
        reps[norm_axis(axis, x.ndim, "Tile")] = tiles
        return (np.tile(x, reps),)

    return run


@table.kernel("TileGradient", dtypes=NUMERIC_TYPES)
def tile_gradient(ctx: KernelContext) -> RunFn:
    params = _tile_params("TileGradient", ctx)

    def run(dy: np.ndarray, *extra: np.ndarray) -> tuple[np.ndarray]:
        tiles, axis = params(extra)
        check(dy.ndim >= 1, "TileGradient: dY is a scalar")
        ax = norm_axis(axis, dy.ndim, "TileGradient")
        d = dy.shape[ax]
        check(d % tiles == 0, f"TileGradient: axis {ax} of dY shape {list(dy.shape)} is not {tiles} tiles")
        blocks = dy.reshape(*dy.shape[:ax], tiles, d // tiles, *dy.shape[ax + 1 :])
        acc = np.float32 if dy.dtype == np.float16 else dy.dtype  # float16 sums lose bits fast
        return (blocks.sum(axis=ax, dtype=acc).astype(dy.dtype, copy=False),)

    return run


@table.kernel("Shape", dtypes=ALL_TYPES)
def shape(ctx: KernelContext) -> RunFn:
    axes = list(ctx.args["axes"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        dims = x.shape
        if axes:
            dims = tuple(x.shape[norm_axis(a, x.ndim, "Shape", "axes entry")] for a in axes)
        return (np.array(dims, dtype=INT64),)

    return run


@table.kernel("ResizeLike", dtypes=ALL_TYPES)
def resize_like(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray, like: np.ndarray) -> tuple[np.ndarray]:
        check(
            x.size == like.size,
            f"ResizeLike: input shape {list(x.shape)} ({x.size} elements) cannot take the shape "
            f"{list(like.shape)} ({like.size} elements)",
        )
        return (contiguous(x).reshape(like.shape),)

    return run


@table.kernel("ZerosLike", dtypes=ALL_TYPES)
def zeros_like(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (np.zeros(x.shape, x.dtype),)

    return run
