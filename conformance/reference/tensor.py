"""References for the tensor family (shape and layout ops and their gradient ops)."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


@reference("Concat")
def concat(args, *xs, num_outputs=2):
    if args["add_axis"]:  # stack: every input gets a new axis of size 1 first
        axis = args["axis"] % (xs[0].ndim + 1)
        xs = tuple(np.expand_dims(x, axis) for x in xs)
    else:
        axis = args["axis"] % xs[0].ndim
    split_info = np.array([x.shape[axis] for x in xs], dtype=np.int32)
    return (np.concatenate(xs, axis=axis), split_info)[:num_outputs]


@reference("Split")
def split(args, x, sizes=None, *, num_outputs=None):
    """``num_outputs`` is needed only for equal parts (no `split` argument, no input 1)."""
    axis = args["axis"] % x.ndim
    if args["add_axis"]:  # one output per entry of the axis, with the axis removed
        return tuple(np.take(x, i, axis=axis) for i in range(x.shape[axis]))
    if sizes is not None:
        sizes = [int(s) for s in sizes]
    elif args["split"]:
        sizes = list(args["split"])
    elif num_outputs is not None:
        sizes = [x.shape[axis] // num_outputs] * num_outputs
    else:
        raise TypeError("Split into equal parts: the reference needs num_outputs=")
    starts = np.cumsum([0, *sizes])
    return tuple(np.take(x, np.arange(starts[i], starts[i + 1]), axis=axis) for i in range(len(sizes)))


@reference("Reshape")
def reshape(args, x, new_shape=None, *, num_outputs=2):
    spec = [int(s) for s in new_shape] if new_shape is not None else list(args["shape"])
    dims = [x.shape[i] if s == 0 else s for i, s in enumerate(spec)]  # 0 keeps the input's dim
    if -1 in dims:  # one -1 takes what is left
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = x.size // known
    assert math.prod(dims) == x.size, f"cannot reshape {x.shape} into {spec}"
    return (x.reshape(dims), np.array(x.shape, dtype=np.int64))[:num_outputs]


@reference("Transpose")
def transpose(args, x):
    axes = args["axes"] or list(reversed(range(x.ndim)))
    return (np.transpose(x, axes),)


@reference("Flatten")
def flatten(args, x):
    axis = args["axis"]
    return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)


@reference("Copy")
def copy(args, x):
    return (x.copy(),)


@reference("Squeeze")
def squeeze(args, x):
    return (np.squeeze(x, axis=tuple(args["dims"])),)


@reference("ExpandDims")
def expand_dims(args, x):
    for d in sorted(args["dims"]):  # ascending: each position counts the dims inserted before it
        x = np.expand_dims(x, d)
    return (x,)


def _slices(args, shape, starts=None, ends=None):
    """Caffe2's Slice: a negative index i is dim + 1 + i; indices clamp to the dim."""
    starts = list(args["starts"]) if starts is None else [int(v) for v in starts]
    ends = list(args["ends"]) if ends is None else [int(v) for v in ends]
    out = []
    for i, dim in enumerate(shape):
        if i >= len(starts):
            out.append(slice(0, dim))
            continue
        s, e = starts[i], ends[i]
        s = dim + 1 + s if s < 0 else s
        e = dim + 1 + e if e < 0 else e
        s, e = min(s, dim), min(e, dim)
        assert 0 <= s <= e or dim == 0, f"bad slice [{s}, {e}) of dim {dim}"
        out.append(slice(s, e))
    return tuple(out)


@reference("Slice")
def slice_(args, x, starts=None, ends=None):
    return (x[(*_slices(args, x.shape, starts, ends), Ellipsis)].copy(),)


@reference("SliceGradient")
def slice_gradient(args, x, *rest):
    dy = rest[-1]
    dx = np.zeros(x.shape, dtype=dy.dtype)
    dx[(*_slices(args, x.shape, *rest[:-1]), Ellipsis)] = dy
    return (dx,)


@reference("Gather")
def gather(args, data, indices):
    rows = [data[int(i)] for i in indices.reshape(-1)]
    out = np.array(rows, dtype=data.dtype).reshape(indices.shape + data.shape[1:])
    return (out,)


@reference("SparseToDense")
def sparse_to_dense(args, indices, values, like=None):
    first = like.shape[0] if like is not None else (int(indices.max()) + 1 if indices.size else 0)
    slices = values.reshape((indices.size, *values.shape[indices.ndim :]))
    out = np.zeros((first, *slices.shape[1:]), dtype=values.dtype)
    for i, v in zip(indices.reshape(-1), slices):
        out[int(i)] += v
    return (out,)


def _tile_params(args, tiles=None, axis=None):
    tiles = args["tiles"] if tiles is None else int(np.asarray(tiles).reshape(()))
    axis = args["axis"] if axis is None else int(np.asarray(axis).reshape(()))
    return tiles, axis


@reference("Tile")
def tile(args, x, tiles=None, axis=None):
    tiles, axis = _tile_params(args, tiles, axis)
    return (np.concatenate([x] * tiles, axis=axis),)


@reference("TileGradient")
def tile_gradient(args, dy, tiles=None, axis=None):
    tiles, axis = _tile_params(args, tiles, axis)
    return (sum(np.split(dy, tiles, axis=axis)),)


@reference("Shape")
def shape(args, x):
    dims = [x.shape[a] for a in args["axes"]] if args["axes"] else list(x.shape)
    return (np.array(dims, dtype=np.int64),)


@reference("ResizeLike")
def resize_like(args, x, like):
    assert x.size == like.size
    return (x.reshape(like.shape),)


@reference("ZerosLike")
def zeros_like(args, x):
    return (np.zeros_like(x),)
