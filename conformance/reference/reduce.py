"""References for ReduceSum, ReduceMean, ReduceMax, ReduceProd, SumElements and their gradient ops."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


def _axes(args, x):
    """Reduced axes, normalized; none given means all."""
    return tuple(sorted(a % x.ndim for a in args["axes"])) if args["axes"] else tuple(range(x.ndim))


def _reduce(fn):
    def ref(args, x):
        return (fn(x, axis=_axes(args, x), keepdims=bool(args["keepdims"])),)

    return ref


reference("ReduceSum")(_reduce(np.sum))
reference("ReduceMean")(_reduce(np.mean))
reference("ReduceMax")(_reduce(np.max))
reference("ReduceProd")(_reduce(np.prod))


def _with_kept_axes(args, x, t):
    """t (dY or Y) reshaped so the reduced axes are size-1 dims of X's rank."""
    axes = _axes(args, x)
    return t.reshape([1 if k in axes else d for k, d in enumerate(x.shape)])


@reference("ReduceSumGradient")
def reduce_sum_gradient(args, dy, x, y):
    return (np.broadcast_to(_with_kept_axes(args, x, dy), x.shape).copy(),)


@reference("ReduceMeanGradient")
def reduce_mean_gradient(args, dy, x, y):
    count = int(np.prod([x.shape[k] for k in _axes(args, x)]))
    return (np.broadcast_to(_with_kept_axes(args, x, dy) / count, x.shape).copy(),)


@reference("ReduceMaxGradient")
def reduce_max_gradient(args, dy, x, y):
    at_max = x == _with_kept_axes(args, x, y)
    return (np.where(at_max, _with_kept_axes(args, x, dy), 0.0),)


@reference("ReduceProdGradient")
def reduce_prod_gradient(args, dy, x, y):
    # Element by element: dY of its group times the product of the group's other elements.
    axes = _axes(args, x)
    g = np.broadcast_to(_with_kept_axes(args, x, dy), x.shape)
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        group = tuple(slice(None) if k in axes else i for k, i in enumerate(idx))
        members = x[group]
        own = tuple(i for k, i in enumerate(idx) if k in axes)
        pos = np.ravel_multi_index(own, members.shape) if own else 0
        out[idx] = g[idx] * np.prod(np.delete(np.reshape(members, -1), pos))
    return (out,)


@reference("SumElements")
def sum_elements(args, x):
    total = x.sum()
    return (np.asarray(total / x.size if args["average"] else total),)


@reference("SumElementsGradient")
def sum_elements_gradient(args, x, dy):
    g = dy.item() / x.size if args["average"] else dy.item()
    return (np.full(x.shape, g),)
