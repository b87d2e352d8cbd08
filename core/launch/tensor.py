"""Host-side parameter resolution of the tensor family (Concat, Split, Reshape, Transpose, Slice,
Gather, SparseToDense, Tile, ResizeLike) shared by the device backends: the shape checks with
their messages and the strided-copy geometry. Reading a device tensor back to the host is the
backend's part; helpers that need such values take a ``read`` callable."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kaffa.launch import MAX_DIMS, collapse, contiguous_strides, split_axis
from kaffa.ops.tensor import slice_bounds
from kaffa.schema import check, norm_axis

ReadInts = Callable[[str, str, Any], list[int]]


def shapes_text(xs: Sequence[Any]) -> str:
    """The shapes of ``xs`` as ``[a, b], [c]`` for error messages."""
    return ", ".join(str(list(x.shape)) for x in xs)


def strided_geometry(dims: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """The int32 strided_read/strided_write table ``[nd, dims..., strides...]`` of an output of
    ``dims`` walking the input by ``strides`` (collapsed)."""
    cd, (cs,) = collapse(dims, strides)
    if len(cd) > MAX_DIMS:
        raise ValueError(f"a copy over {len(cd)} non-mergeable dims; kernels take at most {MAX_DIMS}")
    return np.asarray([len(cd), *cd, *cs], dtype=np.int32)


def check_int_vector(op: str, what: str, v: Any) -> None:
    """``v`` (a device tensor of metadata) must be a 1-D int tensor."""
    check(
        v.ndim == 1 and v.dtype.kind in "iu",
        f"{op}: {what} must be a 1-D int tensor, got {v.dtype}{list(v.shape)}",
    )


def concat_layout(xs: Sequence[Any], axis: int, add_axis: bool) -> tuple[int, list[int], tuple[int, ...]]:
    """(axis, sizes along it, output shape) of Concat over ``xs``, after its shape checks."""
    rank = xs[0].ndim
    check(all(x.ndim == rank for x in xs), f"Concat: inputs have different ranks: {shapes_text(xs)}")
    if add_axis:
        ax = norm_axis(axis, rank + 1, "Concat")
        check(
            all(x.shape == xs[0].shape for x in xs),
            f"Concat: with add_axis all inputs need one shape, got {shapes_text(xs)}",
        )
        sizes = [1] * len(xs)  # each input is one slice of the new axis
        return ax, sizes, (*xs[0].shape[:ax], len(xs), *xs[0].shape[ax:])
    ax = norm_axis(axis, rank, "Concat")
    rest = xs[0].shape[:ax] + xs[0].shape[ax + 1 :]
    check(
        all(x.shape[:ax] + x.shape[ax + 1 :] == rest for x in xs),
        f"Concat: inputs differ off the concat axis {ax}: {shapes_text(xs)}",
    )
    sizes = [x.shape[ax] for x in xs]
    return ax, sizes, (*rest[:ax], sum(sizes), *rest[ax:])


def check_split_arg(arg_sizes: Sequence[int], n: int) -> None:
    """Split's ``split`` argument must be empty or give one size per output."""
    check(not arg_sizes or len(arg_sizes) == n, f"Split: `split` has {len(arg_sizes)} sizes for {n} outputs")


def split_sizes(
    shape: Sequence[int],
    axis: int,
    add_axis: bool,
    n: int,
    arg_sizes: Sequence[int],
    read: Callable[[], list[int]] | None = None,
) -> tuple[int, int, list[int]]:
    """(axis, its size, the n part sizes) of Split; ``read`` returns input 1's sizes when given."""
    check(len(shape) >= 1, "Split: the input is a scalar")
    ax = norm_axis(axis, len(shape), "Split")
    dim = shape[ax]
    if add_axis:
        check(dim == n, f"Split: with add_axis, axis {ax} has {dim} entries for {n} outputs")
        return ax, dim, [1] * n
    if read is not None:
        sizes = read()
        check(len(sizes) == n, f"Split: input 1 has {len(sizes)} sizes for {n} outputs")
    elif arg_sizes:
        sizes = list(arg_sizes)
    else:
        check(dim % n == 0, f"Split: axis {ax} of size {dim} does not split into {n} equal parts")
        sizes = [dim // n] * n
    check(
        all(s >= 0 for s in sizes) and sum(sizes) == dim,
        f"Split: sizes {sizes} must be non-negative and sum to {dim}, the size of axis {ax}",
    )
    return ax, dim, sizes


def reshape_spec(arg_shape: list[int] | None, read: Callable[[], list[int]] | None) -> list[int]:
    """Reshape's requested shape: input 1 (``read``) when given, else the ``shape`` argument."""
    if read is not None:
        return read()
    check(arg_shape is not None, "Reshape: no new shape (give the `shape` argument or input 1)")
    return arg_shape  # type: ignore[return-value]


def transpose_perm(axes: list[int] | None, ndim: int) -> list[int]:
    """Transpose's permutation: ``axes``, or the dims reversed."""
    check(
        axes is None or len(axes) == ndim,
        f"Transpose: axes {axes} has {len(axes or ())} entries for a rank-{ndim} input",
    )
    return axes or list(reversed(range(ndim)))


def flatten_shape(shape: Sequence[int], axis: int) -> tuple[int, int]:
    """Flatten's 2-D output shape at ``axis``."""
    check(0 <= axis <= len(shape), f"Flatten: axis {axis} is out of range for a rank-{len(shape)} input")
    return math.prod(shape[:axis]), math.prod(shape[axis:])


class Slicer:
    """Slice/SliceGradient bounds, arguments parsed once: ``slicer(x shape, extra inputs)`` gives
    (slice shape, strided geometry, base offset); ``read_ints(op, what, v)`` reads starts and
    ends given as inputs."""

    def __init__(self, op: str, num_inputs: int, args: Any, data: int, read_ints: ReadInts):
        check(num_inputs - 1 - data in (0, 2), f"{op}: give both starts and ends as inputs, or neither")
        self.op, self.read_ints = op, read_ints
        self.starts, self.ends = list(args["starts"]), list(args["ends"])

    def __call__(self, shape: tuple[int, ...], extra: tuple[Any, ...]) -> tuple[list[int], np.ndarray, int]:
        if extra:
            starts, ends = (self.read_ints(self.op, w, v) for w, v in zip(("starts", "ends"), extra))
        else:
            starts, ends = self.starts, self.ends
        b = slice_bounds(self.op, shape, starts, ends)
        strides = contiguous_strides(shape)
        out = [e - s for s, e in b]  # type: ignore[misc]
        base = sum(s * st for (s, _), st in zip(b, strides))  # type: ignore[misc]
        return out, strided_geometry(out, strides), base


def check_slice_gradient(dy_shape: tuple[int, ...], shape: list[int]) -> None:
    """SliceGradient's dY must have the slice's shape."""
    check(dy_shape == tuple(shape), f"SliceGradient: dY has shape {list(dy_shape)}, the slice {shape}")


def check_index_range(op: str, lo: int, hi: int, size: int, n: int) -> None:
    """``size`` indices with values in [lo, hi] must lie in [0, n)."""
    check(
        size == 0 or (lo >= 0 and hi < n),
        f"{op}: indices must lie in [0, {n}), got values in [{lo}, {hi}]",
    )


def check_gather_data(data: Any) -> None:
    """Gather's DATA needs a first dim to index."""
    check(data.ndim >= 1, "Gather: DATA is a scalar; it needs at least one dim")


def gather_layout(data: Any, idx: Any, lo: int, hi: int) -> tuple[tuple[int, ...], int, int]:
    """(output shape, rows, inner) of Gather, after the range check of its indices."""
    rows = data.shape[0]
    check_index_range("Gather", lo, hi, idx.size, rows)
    return (*idx.shape, *data.shape[1:]), rows, math.prod(data.shape[1:])


def check_sparse_values(idx: Any, values: Any) -> None:
    """SparseToDense's values must start with the indices' shape."""
    check(
        values.shape[: idx.ndim] == idx.shape,
        f"SparseToDense: values shape {list(values.shape)} does not start with the indices "
        f"shape {list(idx.shape)}",
    )


def sparse_to_dense_layout(idx: Any, values: Any, like: Any, lo: int, hi: int) -> tuple[tuple[int, ...], int]:
    """(output shape, inner) of SparseToDense, after the checks of data_to_infer_dim and range."""
    if like is not None:
        check(like.ndim >= 1, "SparseToDense: data_to_infer_dim is a scalar; it needs a first dim")
        first = like.shape[0]
    else:
        first = hi + 1 if idx.size else 0
    check_index_range("SparseToDense", lo, hi, idx.size, first)
    k = idx.ndim
    return (first, *values.shape[k:]), math.prod(values.shape[k:])


class TileParams:
    """``params(extra inputs) -> (tiles, axis)`` of Tile/TileGradient: the arguments, or the
    optional inputs 1 and 2, whose one int ``read(v)`` reads back."""

    def __init__(self, op: str, args: Any, read: Callable[[Any], int]):
        self.op, self.read = op, read
        self.tiles, self.axis = int(args["tiles"]), int(args["axis"])

    def _scalar(self, what: str, v: Any) -> int:
        check(
            v.size == 1 and v.dtype.kind in "iu",
            f"{self.op}: {what} must be one int, got {v.dtype}{list(v.shape)}",
        )
        return self.read(v)

    def __call__(self, extra: tuple[Any, ...]) -> tuple[int, int]:
        tiles = self._scalar("tiles", extra[0]) if extra else self.tiles
        axis = self._scalar("axis", extra[1]) if len(extra) > 1 else self.axis
        check(tiles >= 1, f"{self.op}: tiles must be >= 1, got {tiles}")
        return tiles, axis


def tile_layout(shape: tuple[int, ...], tiles: int, axis: int) -> tuple[tuple[int, ...], np.ndarray]:
    """(output shape, strided_read geometry) of Tile: stride 0 makes every tile read the block."""
    check(len(shape) >= 1, "Tile: the input is a scalar; it needs an axis to tile")
    ax = norm_axis(axis, len(shape), "Tile")
    outer, d, inner = split_axis(shape, ax)
    m = d * inner
    return (*shape[:ax], d * tiles, *shape[ax + 1 :]), strided_geometry((outer, tiles, m), (m, 0, 1))


def tile_gradient_layout(shape: tuple[int, ...], tiles: int, axis: int) -> tuple[tuple[int, ...], int]:
    """(dX shape, m) of TileGradient: dX block of m elements sums ``tiles`` blocks of dY."""
    check(len(shape) >= 1, "TileGradient: dY is a scalar")
    ax = norm_axis(axis, len(shape), "TileGradient")
    d = shape[ax]
    check(d % tiles == 0, f"TileGradient: axis {ax} of dY shape {list(shape)} is not {tiles} tiles")
    return (*shape[:ax], d // tiles, *shape[ax + 1 :]), (d // tiles) * math.prod(shape[ax + 1 :])


def check_resize_like(x: Any, like: Any) -> None:
    """ResizeLike keeps the element count."""
    check(
        x.size == like.size,
        f"ResizeLike: input shape {list(x.shape)} ({x.size} elements) cannot take the shape "
        f"{list(like.shape)} ({like.size} elements)",
    )
