"""References for Add, Sub, Mul, Div, Sum, MatMul."""

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
