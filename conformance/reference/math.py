"""References for Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum, MatMul, BatchMatMul and the
gradient ops SumReduceLike, DivGradient, MaxGradient, MinGradient, MeanGradient, WeightedSumGradient."""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference


def _legacy_b(a, b, axis):
    """Caffe2's broadcast=1: B lines up with A's dims axis .. axis+B.ndim-1 (-1: A's trailing dims)."""
    if axis == -1:
        axis = a.ndim - b.ndim
    return b.reshape((1,) * axis + b.shape + (1,) * (a.ndim - axis - b.ndim))


def _divide(a, b):
    if a.dtype.kind in "iu":  # integer division truncates toward zero, as in C
        return np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))
    return a / b


def _binary(op, fn):
    def ref(args, a, b):
        if args["broadcast"]:
            b = _legacy_b(a, b, args["axis"])
        return (fn(a, b),)

    reference(op)(ref)


_binary("Add", np.add)
_binary("Sub", np.subtract)
_binary("Mul", np.multiply)
_binary("Div", _divide)


@reference("Sum")
def sum_(args, *xs):
    out = xs[0].copy()
    for x in xs[1:]:
        out = out + x
    return (out,)


@reference("MatMul")
def matmul(args, a, b):
    ax_a, ax_b = args["axis_a"] % a.ndim, args["axis_b"] % b.ndim
    a2 = a.reshape(math.prod(a.shape[:ax_a]), math.prod(a.shape[ax_a:]))
    b2 = b.reshape(math.prod(b.shape[:ax_b]), math.prod(b.shape[ax_b:]))
    if args["trans_a"]:
        a2 = a2.T
    if args["trans_b"]:
        b2 = b2.T
    return (a2 @ b2,)


@reference("Max")
def max_(args, *xs):
    return (np.maximum.reduce(list(xs)),)


@reference("Min")
def min_(args, *xs):
    return (np.minimum.reduce(list(xs)),)


@reference("Mean")
def mean(args, *xs):
    return (sum(xs) / len(xs),)


@reference("WeightedSum")
def weighted_sum(args, *ins):
    xs, ws = ins[0::2], ins[1::2]
    return (sum(w.item() * x for x, w in zip(xs, ws)),)


@reference("BatchMatMul")
def batch_matmul(args, a, b):
    if args["trans_a"]:
        a = np.swapaxes(a, -1, -2)
    if args["trans_b"]:
        b = np.swapaxes(b, -1, -2)
    # einsum's "..." broadcasts the batch dims (the kernels' shape checks decide when that is allowed).
    return (np.einsum("...mk,...kn->...mn", a, b),)


def _sum_to(x, shape, axis=-1):
    """Sum x down to `shape`, which lines up with x's dims at `axis` (-1: trailing)."""
    start = x.ndim - len(shape) if axis == -1 else axis
    padded = (1,) * start + tuple(shape) + (1,) * (x.ndim - start - len(shape))
    for k in range(x.ndim):
        if padded[k] == 1:
            x = x.sum(axis=k, keepdims=True)
    return x.reshape(shape)


@reference("SumReduceLike")
def sum_reduce_like(args, a, b):
    return (_sum_to(a, b.shape, args["axis"]),)


@reference("DivGradient")
def div_gradient(args, dc, a, b, c):
    axis = args["axis"] if args["broadcast"] else -1
    bb = _legacy_b(c, b, axis) if args["broadcast"] else b
    return (_sum_to(dc / bb, a.shape), _sum_to(-dc * c / bb, b.shape, axis))


def _extreme_gradient(args, y, dy, *xs):
    return tuple(np.where(x == y, dy, 0.0) for x in xs)


reference("MaxGradient", "MinGradient")(_extreme_gradient)


@reference("MeanGradient")
def mean_gradient(args, dy, num_outputs=1):
    return (dy / num_outputs,) * num_outputs


@reference("WeightedSumGradient")
def weighted_sum_gradient(args, dy, *ins):
    xs, ws = ins[0::2], ins[1::2]
    dx = [w.item() * dy for w in ws]
    if not args["grad_on_w"]:
        return tuple(dx)
    return (*dx, *(np.full(w.shape, np.sum(dy * x)) for x, w in zip(xs, ws)))
