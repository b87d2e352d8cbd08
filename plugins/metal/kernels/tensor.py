"""metal kernels for the tensor family (see kaffa.ops.tensor).

Data movement runs on raw bits (wgsl/tensor.wgsl): u32 items for 32-bit dtypes, f16 items for
16-bit ones; whole-array copies and zeros run on u32 words. TileGradient and SparseToDense add, so
they are built per dtype. Reshape, Flatten, Squeeze, ExpandDims and ResizeLike return a ``View``
of the input's buffer (no kernel writes into its inputs, so sharing is safe). Metadata that
arrives as device tensors (Reshape's new_shape, Split's sizes, Slice's starts and ends, Tile's
tiles and axis) and the index range of Gather/SparseToDense are read back to the host: output
shapes and the range check depend on them. Indices are int32: int64 cannot live on metal.
Outputs metal cannot hold (Shape's int64 dims, Reshape's old_shape) are refused at net creation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.errors import KernelBuildError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import split_axis, transpose_geometry
from kaffa.launch import tensor as shared
from kaffa.ops.tensor import expand_shape, reshape_target, squeeze_shape
from kaffa.schema import check
from kaffa_metal.allocator import MetalArray
from kaffa_metal.kernels.common import NUMERIC, WG, Launcher, device, empty, kernel, words
from kaffa_metal.kernels.elementwise import holds_outputs

table = KernelTable("metal")

INT32 = np.dtype(np.int32)
RAW = {2: np.dtype(np.float16), 4: np.dtype(np.uint32)}  # the item type that moves a dtype's bits
WORD = np.dtype(np.uint32)


class View(MetalArray):
    """Another shape over an array's buffer. It holds the array that owns the buffer: the buffer
    returns to the pool when that owner is collected, so it must outlive every view."""

    __slots__ = ("owner",)


def reshaped(x: MetalArray, shape: Sequence[int]) -> MetalArray:
    v = View(x.buffer, tuple(shape), x.dtype, x.device_index)
    v.owner = x.owner if isinstance(x, View) else x  # the root owner: chains stay one link long
    return v


class _Kernels:
    """tensor.wgsl entry points for one op, built on first use per item type."""

    def __init__(self, ctx: KernelContext):
        self.ctx, self.dev = ctx, device(ctx)
        self._built: dict[tuple[str, np.dtype], Launcher] = {}

    def __call__(self, entry: str, dtype: Any) -> Launcher:
        key = (entry, np.dtype(dtype))
        k = self._built.get(key)
        if k is None:
            k = self._built[key] = kernel(self.ctx, "tensor", entry, dtype=dtype)
        return k

    def raw(self, entry: str, dtype: Any) -> Launcher:
        return self(entry, RAW[np.dtype(dtype).itemsize])

    def copy(self, x: MetalArray) -> MetalArray:
        y = empty(self.dev, x.shape, x.dtype)
        n = -(-x.nbytes // 4)  # whole words: the buffers are padded to 4 bytes
        self("copy", WORD)(n, x, y, params=[n])
        return y

    def zeros(self, shape: Sequence[int], dtype: Any) -> MetalArray:
        y = empty(self.dev, shape, dtype)
        n = -(-y.nbytes // 4)
        self("zero", WORD)(n, y, params=[n])
        return y

    def host(self, x: MetalArray) -> np.ndarray:
        return self.dev.allocator.copyout(x)

    def upload(self, values: Sequence[int], dtype: Any = INT32) -> MetalArray:
        return self.dev.allocator.copyin(np.asarray(values, dtype=dtype))

    def ints(self, op: str, what: str, v: MetalArray) -> list[int]:
        shared.check_int_vector(op, what, v)
        return [int(a) for a in self.host(v)]

    def index_range(self, op: str, idx: MetalArray) -> tuple[int, int]:
        """(min, max) of the indices, reduced on the device; a blocking read of two int32s."""
        check(idx.dtype == INT32, f"{op}: indices must be int32 or int64, got {idx.dtype}")
        if idx.size == 0:
            return 0, 0
        out = empty(self.dev, (2,), INT32)
        self("index_range", INT32)(WG, idx, out, params=[idx.size])  # one workgroup
        lo, hi = (int(v) for v in self.host(out))
        return lo, hi


def _table(n: int, base: int, geometry: np.ndarray) -> np.ndarray:
    """strided_read/strided_write parameters: [n, base, nd, dims..., strides...]."""
    return np.concatenate([words(n, base), geometry.astype(np.uint32)])


@table.kernel("Concat", dtypes=NUMERIC)
def concat(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    with_info = ctx.num_outputs > 1
    ks = _Kernels(ctx)

    def run(*xs):
        ax, sizes, shape = shared.concat_layout(xs, axis, add_axis)
        y = empty(ks.dev, shape, xs[0].dtype)
        _, total, inner = split_axis(shape, ax)
        k, off = ks.raw("concat_part", y.dtype), 0
        for x, s in zip(xs, sizes):
            k(x.size, x, y, params=[x.size, s * inner, total * inner, off * inner])
            off += s
        return (y, ks.upload(sizes)) if with_info else (y,)

    return run


@table.kernel("Split", dtypes=NUMERIC)
def split(ctx: KernelContext) -> RunFn:
    axis, add_axis = int(ctx.args["axis"]), bool(ctx.args["add_axis"])
    n = ctx.num_outputs
    arg_sizes = list(ctx.args["split"] or [])
    shared.check_split_arg(arg_sizes, n)
    ks = _Kernels(ctx)

    def run(x, sizes_in=None):
        read = None if sizes_in is None else (lambda: ks.ints("Split", "input 1", sizes_in))
        ax, dim, sizes = shared.split_sizes(x.shape, axis, add_axis, n, arg_sizes, read)
        _, _, inner = split_axis(x.shape, ax)
        k, off, outs = ks.raw("split_part", x.dtype), 0, []
        for s in sizes:
            mid = () if add_axis else (s,)  # add_axis drops the axis
            y = empty(ks.dev, (*x.shape[:ax], *mid, *x.shape[ax + 1 :]), x.dtype)
            k(y.size, x, y, params=[y.size, s * inner, dim * inner, off * inner])
            outs.append(y)
            off += s
        return tuple(outs)

    return run


@table.kernel("Reshape", dtypes=NUMERIC, supports=holds_outputs)  # old_shape is int64: refused
def reshape(ctx: KernelContext) -> RunFn:
    arg_shape = None if ctx.args["shape"] is None else list(ctx.args["shape"])
    ks = _Kernels(ctx)

    def run(x, new_shape=None):
        read = None if new_shape is None else (lambda: ks.ints("Reshape", "input 1", new_shape))
        spec = shared.reshape_spec(arg_shape, read)
        return (reshaped(x, reshape_target("Reshape", x.shape, spec)),)

    return run


@table.kernel("Transpose", dtypes=NUMERIC)
def transpose(ctx: KernelContext) -> RunFn:
    axes = list(ctx.args["axes"]) or None
    ks = _Kernels(ctx)

    def run(x):
        perm = shared.transpose_perm(axes, x.ndim)
        y = empty(ks.dev, [x.shape[p] for p in perm], x.dtype)  # materialised, as on cpu
        ks.raw("strided_read", x.dtype)(
            y.size, x, y, params=_table(y.size, 0, transpose_geometry(x.shape, perm))
        )
        return (y,)

    return run


@table.kernel("Flatten", dtypes=NUMERIC)
def flatten(ctx: KernelContext) -> RunFn:
    axis = int(ctx.args["axis"])

    def run(x):
        return (reshaped(x, shared.flatten_shape(x.shape, axis)),)

    return run


@table.kernel("Copy", dtypes=NUMERIC)
def copy(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    return lambda x: (ks.copy(x),)


@table.kernel("Squeeze", dtypes=NUMERIC)
def squeeze(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])
    return lambda x: (reshaped(x, squeeze_shape("Squeeze", x.shape, dims)),)


@table.kernel("ExpandDims", dtypes=NUMERIC)
def expand_dims(ctx: KernelContext) -> RunFn:
    dims = list(ctx.args["dims"])
    return lambda x: (reshaped(x, expand_shape("ExpandDims", x.shape, dims)),)


def _slicer(op: str, ctx: KernelContext, ks: _Kernels, data: int):
    """bounds(x shape, inputs after data) -> (slice shape, strided table), args parsed once."""
    slicer = shared.Slicer(op, ctx.num_inputs, ctx.args, data, ks.ints)

    def bounds(shape: tuple[int, ...], extra: tuple[Any, ...]) -> tuple[list[int], np.ndarray]:
        out, geometry, base = slicer(shape, extra)
        return out, _table(math.prod(out), base, geometry)

    return bounds


@table.kernel("Slice", dtypes=NUMERIC)
def slice_(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    bounds = _slicer("Slice", ctx, ks, 0)

    def run(x, *starts_ends):
        shape, params = bounds(x.shape, starts_ends)
        y = empty(ks.dev, shape, x.dtype)
        ks.raw("strided_read", x.dtype)(y.size, x, y, params=params)
        return (y,)

    return run


@table.kernel("SliceGradient", dtypes=NUMERIC)
def slice_gradient(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    bounds = _slicer("SliceGradient", ctx, ks, 1)

    def run(x, *rest):
        dy = rest[-1]
        shape, params = bounds(x.shape, rest[:-1])
        shared.check_slice_gradient(dy.shape, shape)
        dx = ks.zeros(x.shape, dy.dtype)
        ks.raw("strided_write", dy.dtype)(dy.size, dy, dx, params=params)
        return (dx,)

    return run


@table.kernel("Gather", dtypes=NUMERIC)
def gather(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)

    def run(data, idx):
        shared.check_gather_data(data)
        lo, hi = ks.index_range("Gather", idx)
        shape, rows, inner = shared.gather_layout(data, idx, lo, hi)
        y = empty(ks.dev, shape, data.dtype)
        ks.raw("gather", data.dtype)(y.size, data, idx, y, params=[y.size, rows, inner])
        return (y,)

    return run


@table.kernel("SparseToDense", dtypes=NUMERIC)
def sparse_to_dense(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)

    def run(idx, values, like=None):
        shared.check_sparse_values(idx, values)
        lo, hi = ks.index_range("SparseToDense", idx)
        shape, inner = shared.sparse_to_dense_layout(idx, values, like, lo, hi)
        y = empty(ks.dev, shape, values.dtype)
        ks("sparse_to_dense", values.dtype)(y.size, idx, values, y, params=[y.size, idx.size, inner])
        return (y,)

    return run


def _tile_params(op: str, ctx: KernelContext, ks: _Kernels) -> shared.TileParams:
    """params(extra inputs) -> (tiles, axis): the arguments, or the optional inputs 1 and 2."""
    return shared.TileParams(op, ctx.args, lambda v: int(ks.host(v).reshape(())))


@table.kernel("Tile", dtypes=NUMERIC)
def tile(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    params = _tile_params("Tile", ctx, ks)

    def run(x, *extra):
        tiles, axis = params(extra)
        shape, g = shared.tile_layout(x.shape, tiles, axis)
        y = empty(ks.dev, shape, x.dtype)
        ks.raw("strided_read", x.dtype)(y.size, x, y, params=_table(y.size, 0, g))
        return (y,)

    return run


@table.kernel("TileGradient", dtypes=NUMERIC)
def tile_gradient(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    params = _tile_params("TileGradient", ctx, ks)

    def run(dy, *extra):
        tiles, axis = params(extra)
        shape, m = shared.tile_gradient_layout(dy.shape, tiles, axis)
        dx = empty(ks.dev, shape, dy.dtype)
        ks("tile_gradient", dy.dtype)(dx.size, dy, dx, params=[dx.size, tiles, m])  # f16 sums in f32
        return (dx,)

    return run


def _shape_refused(ctx: KernelContext) -> str | None:
    return holds_outputs(ctx) or "its int64 output cannot live on metal"


@table.kernel("Shape", dtypes=NUMERIC, supports=_shape_refused)
def shape(ctx: KernelContext) -> RunFn:
    raise KernelBuildError(f"Shape on metal: {_shape_refused(ctx)}")  # never selected


@table.kernel("ResizeLike", dtypes=NUMERIC)
def resize_like(ctx: KernelContext) -> RunFn:
    def run(x, like):
        shared.check_resize_like(x, like)
        return (reshaped(x, like.shape),)

    return run


@table.kernel("ZerosLike", dtypes=NUMERIC)
def zeros_like(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx)
    return lambda x: (ks.zeros(x.shape, x.dtype),)
