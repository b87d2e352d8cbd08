"""Cases for ReduceSum, ReduceMean, ReduceMax, ReduceProd, SumElements.

ReduceSum and ReduceMax are defined on integer dtypes too, so their data is integer-valued (exact in
every dtype); ReduceProd's is ±1 (exact products of any length), plus fractional and zero-holding
cases. ReduceMax's data has distinct values everywhere, so its gradient cases have no ties.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import ELEMENTWISE, REDUCTION, Case, cases, ints, uniform

# (name, shape, args): every axis variant the Reduce* ops share.
_VARIANTS = [
    ("all_default", (2, 3, 4), {}),
    ("axes0", (3, 5), {"axes": [0]}),
    ("axes_neg1", (2, 3, 4), {"axes": [-1]}),
    ("axes_0_2", (2, 3, 4, 5), {"axes": [0, 2]}),
    ("axes_unsorted", (2, 3, 4, 5), {"axes": [3, 1]}),
    ("keepdims0", (2, 3, 4), {"axes": [1], "keepdims": 0}),
    ("all_keepdims0", (3, 4), {"keepdims": 0}),
    ("size1_dims", (1, 4, 1), {"axes": [0, 2]}),
    ("rank1", (7,), {}),
    ("odd_large", (13, 67), {"axes": [1]}),
    ("scalar_input", (), {}),
]


def _count(shape, args):
    axes = args.get("axes") or range(len(shape))
    return math.prod(shape[a] for a in axes)


def _distinct(rng, shape):
    """Integer-valued, all different: no ties for ReduceMax's gradient (|values| < 2048, exact in float16)."""
    n = math.prod(shape)
    return (rng.permutation(n) - n // 2).astype(np.float64).reshape(shape)


def _reduce_cases(op):
    def gen(rng):
        out = []
        for name, shape, args in _VARIANTS:
            if op == "ReduceMax":
                data, op_class = _distinct(rng, shape), ELEMENTWISE
            elif op == "ReduceSum":
                data, op_class = ints(rng, shape), REDUCTION
            elif op == "ReduceProd":
                data, op_class = rng.choice([-1.0, 1.0], size=shape), REDUCTION
            else:
                data, op_class = uniform(rng, shape, -2, 2), REDUCTION
            out.append(Case(op, name, [data], args, op_class=op_class, reduction=_count(shape, args)))
        if op != "ReduceMean":
            out.append(
                Case(
                    op,
                    "float_values",
                    [uniform(rng, (4, 9), -2, 2)],
                    {"axes": [0]},
                    op_class=op_class,
                    reduction=4,
                    dtypes=dtypes.FLOAT_TYPES,
                )
            )
        if op == "ReduceProd":
            # Zeros: the gradient is the product of the others, with no division by X.
            zeros = uniform(rng, (3, 4, 5), 0.5, 1.5)
            zeros[0, 1, 2] = 0.0
            zeros[1, :2, 3] = 0.0
            out.append(Case(op, "zeros", [zeros], {"axes": [1]}, op_class=REDUCTION, reduction=4))
            out.append(Case(op, "empty_axis", [np.zeros((2, 0, 3))], {"axes": [1]}, op_class=REDUCTION))
        if op == "ReduceMax":
            # Ties: every maximal element gets dY (Caffe2); no finite difference exists there.
            out.append(Case(op, "ties", [ints(rng, (5, 6), -2, 2)], {"axes": [1]}, grad=False))
        return out

    return gen


for _op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceProd"):
    cases(_op)(_reduce_cases(_op))


@cases("SumElements")
def sum_elements(rng):
    def case(name, shape, **args):
        return Case(
            "SumElements",
            name,
            [uniform(rng, shape, -2, 2)],
            args,
            op_class=REDUCTION,
            reduction=math.prod(shape),
        )

    return [
        case("2d", (3, 4)),
        case("4d", (2, 3, 4, 5)),
        case("average", (5, 7), average=1),
        case("average_4d", (2, 3, 1, 5), average=1),
        case("size1", (1,)),
        case("scalar", ()),
        case("odd_large", (13, 67)),
    ]
