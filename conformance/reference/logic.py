"""References for EQ, LT, GT, And, Or, Not."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.reference import reference


def _legacy_b(a, b, axis):
    """Caffe2's broadcast=1: B lines up with A's dims axis .. axis+B.ndim-1 (-1: A's trailing dims)."""
    if axis == -1:
        axis = a.ndim - b.ndim
    return b.reshape((1,) * axis + b.shape + (1,) * (a.ndim - axis - b.ndim))


def _binary(op, fn):
    def ref(args, a, b):
        if args["broadcast"]:
            b = _legacy_b(a, b, args["axis"])
        return (np.asarray(fn(a, b), dtype=bool),)

    reference(op)(ref)


_binary("EQ", lambda a, b: a == b)
_binary("LT", lambda a, b: a < b)
_binary("GT", lambda a, b: a > b)
_binary("And", np.logical_and)
_binary("Or", np.logical_or)


@reference("Not")
def not_(args, x):
    return (np.asarray(np.logical_not(x)),)
