"""Concat, Split, Reshape, Transpose, Flatten, Copy.

Outputs are contiguous. They may be views of the input where that costs nothing (Reshape and
Flatten of a contiguous input, Split along the leading axis): no kernel writes into its inputs,
so sharing memory is safe.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa.dtypes import ALL_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.tensor import reshape_target
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")

INT32, INT64 = np.dtype(np.int32), np.dtype(np.int64)


def contiguous(x: np.ndarray) -> np.ndarray:
    """x, or a C-contiguous copy of it. (np.ascontiguousarray would turn a 0-d array into 1-d.)"""
    return x if x.flags.c_contiguous else x.copy()


def _shapes(xs: tuple[np.ndarray, ...]) -> str:
    return ", ".join(str(list(x.shape)) for x in xs)


@table.kernel("Concat", dtypes=ALL_TYPES)
def concat(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    with_info = ctx.num_outputs > 1

    def run(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        rank = xs[0].ndim
        check(all(x.ndim == rank for x in xs), f"Concat: inputs have different ranks: {_shapes(xs)}")
        if add_axis:
            ax = norm_axis(axis, rank + 1, "Concat")
            check(
                all(x.shape == xs[0].shape for x in xs),
                f"Concat: with add_axis all inputs need one shape, got {_shapes(xs)}",
            )
            y = np.stack(xs, axis=ax)
            sizes = [1] * len(xs)  # each input is one slice of the new axis
        else:
            ax = norm_axis(axis, rank, "Concat")
            rest = xs[0].shape[:ax] + xs[0].shape[ax + 1 :]
            check(
                all(x.shape[:ax] + x.shape[ax + 1 :] == rest for x in xs),
                f"Concat: inputs differ off the concat axis {ax}: {_shapes(xs)}",
            )
            y = np.concatenate(xs, axis=ax)
            sizes = [x.shape[ax] for x in xs]
        if with_info:
            return y, np.array(sizes, dtype=INT32)
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

    def run(x: np.ndarray, sizes_in: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        check(x.ndim >= 1, "Split: the input is a scalar")
        ax = norm_axis(axis, x.ndim, "Split")
        dim = x.shape[ax]
        if add_axis:
            check(dim == n, f"Split: with add_axis, axis {ax} has {dim} entries for {n} outputs")
            lead = (slice(None),) * ax
            return tuple(contiguous(x[(*lead, i, ...)]) for i in range(n))  # `...`: 0-d stays an array
        if sizes_in is not None:
            check(
                sizes_in.ndim == 1 and sizes_in.dtype.kind in "iu",
                f"Split: input 1 must be a 1-D int tensor, got {sizes_in.dtype}{list(sizes_in.shape)}",
            )
            sizes = [int(s) for s in sizes_in]
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


@table.kernel("Copy", dtypes=ALL_TYPES)
def copy(ctx: KernelContext) -> RunFn:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        return (x.copy(),)

    return run
