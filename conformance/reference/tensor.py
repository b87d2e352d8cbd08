"""References for Concat, Split, Reshape, Transpose, Flatten, Copy."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


@reference("Concat")
def concat(args, *xs):
    if args["add_axis"]:  # stack: every input gets a new axis of size 1 first
        axis = args["axis"] % (xs[0].ndim + 1)
        xs = tuple(np.expand_dims(x, axis) for x in xs)
    else:
        axis = args["axis"] % xs[0].ndim
    split_info = np.array([x.shape[axis] for x in xs], dtype=np.int32)
    return np.concatenate(xs, axis=axis), split_info


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
def reshape(args, x, new_shape=None):
    spec = [int(s) for s in new_shape] if new_shape is not None else list(args["shape"])
    dims = [x.shape[i] if s == 0 else s for i, s in enumerate(spec)]  # 0 keeps the input's dim
    if -1 in dims:  # one -1 takes what is left
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = x.size // known
    assert math.prod(dims) == x.size, f"cannot reshape {x.shape} into {spec}"
    return x.reshape(dims), np.array(x.shape, dtype=np.int64)


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
