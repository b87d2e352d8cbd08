"""Cases for Add, Sub, Mul, Div, Sum, Max, Min, Mean, WeightedSum, MatMul, BatchMatMul.

The elementwise ops are defined on integer dtypes too, so their data is integer-valued (exact in
every dtype, float16 included); float-only cases with fractional data are marked with ``dtypes``.
Div never divides by zero, and its integer cases include negative operands (C truncation).
Cases with negative data run on the float and signed integer dtypes (the int8 results stay in
range); the unsigned dtypes get cases of their own (``u_*``) with non-negative data whose results
stay in range (Sub's A >= B, Mul's factors < 16).
Every case of a differentiable op is also a gradient case (float dtypes): the broadcasting cases of
Add/Sub/Mul/Div check that a broadcast operand's gradient is summed back to its shape. Max and Min
gradient cases have no ties (distinct values at every position).
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import ELEMENTWISE, GEMM, REDUCTION, Case, cases, ints, uniform

# Dtypes for data with negative values; the unsigned dtypes run the u_* cases.
SIGNED = (*dtypes.FLOAT_TYPES, *dtypes.SIGNED_INT_TYPES)
UNSIGNED = dtypes.UNSIGNED_INT_TYPES

# Non-negative (A, B) ranges per op for the unsigned cases: no wrap-around, no division by zero.
_UNSIGNED_RANGES = {
    "Add": ((0, 100), (0, 100)),
    "Sub": ((50, 100), (0, 50)),
    "Mul": ((0, 16), (0, 16)),
    "Div": ((0, 200), (1, 16)),
}


def _nonzero(rng, shape):
    """Integer-valued data in [-8, -1] U [1, 8]: a safe divisor."""
    return rng.integers(1, 9, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _binary_cases(op):
    def gen(rng):
        def b_values(shape):
            return _nonzero(rng, shape) if op == "Div" else ints(rng, shape)

        def case(name, a_shape, b_shape, inplace=(), **args):
            inputs = [ints(rng, a_shape), b_values(b_shape)]
            return Case(op, name, inputs, args, op_class=ELEMENTWISE, inplace=inplace, dtypes=SIGNED)

        def unsigned(name, a_shape, b_shape, **args):
            (a_lo, a_hi), (b_lo, b_hi) = _UNSIGNED_RANGES[op]
            inputs = [ints(rng, a_shape, a_lo, a_hi), ints(rng, b_shape, b_lo, b_hi)]
            return Case(op, name, inputs, args, op_class=ELEMENTWISE, dtypes=UNSIGNED)

        out = [
            case("same_shape", (2, 3, 4), (2, 3, 4), inplace=[(0, 0), (1, 0)]),
            case("odd_large", (13, 67), (13, 67)),
            case("b_scalar", (3, 4), ()),
            case("b_size1", (3, 4), (1,)),
            case("rank_mismatch", (2, 3, 4, 5), (4, 5), inplace=[(0, 0)]),
            case("size1_both_sides", (3, 1, 5), (1, 4, 1)),
            case("a_smaller", (5,), (2, 3, 5), inplace=[(1, 0)]),
            case("legacy_axis1", (2, 3, 4, 5), (3, 4), broadcast=1, axis=1, inplace=[(0, 0)]),
            case("legacy_trailing", (2, 3, 4), (3, 4), broadcast=1),
            case("legacy_axis0_size1", (2, 3, 4), (2, 1), broadcast=1, axis=0),
            case("legacy_axis_str", (2, 3, 4, 5), (3,), broadcast=1, axis_str="C", order="NCHW"),
        ]
        if op == "Div":
            # Integer division truncates toward zero: -7 / 2 = -3, 7 / -2 = -3.
            out.append(
                Case(
                    op,
                    "int_truncation",
                    [ints(rng, (6, 7), -20, 21), _nonzero(rng, (6, 7))],
                    op_class=ELEMENTWISE,
                    dtypes=SIGNED,
                )
            )
        out.append(
            Case(
                op,
                "float_values",
                [uniform(rng, (4, 9), -2, 2), uniform(rng, (9,), 0.5, 2) * rng.choice([-1, 1], size=9)],
                op_class=ELEMENTWISE,
                dtypes=dtypes.FLOAT_TYPES,
            )
        )
        # Appended after the frozen cases so their inputs stay the same draws.
        out.append(case("a_scalar", (), (3, 4)))
        out.append(case("legacy_b_scalar", (2, 3), (), broadcast=1))
        out += [
            unsigned("u_same_shape", (5, 7), (5, 7)),
            unsigned("u_b_scalar", (3, 4), ()),
            unsigned("u_rank_mismatch", (2, 3, 4), (3, 4)),
            unsigned("u_legacy_axis1", (2, 3, 4, 5), (3, 4), broadcast=1, axis=1),
        ]
        return out

    return gen


for _op in ("Add", "Sub", "Mul", "Div"):
    cases(_op)(_binary_cases(_op))


@cases("Sum")
def sum_(rng):
    def case(name, shapes, inplace=()):
        inputs = [ints(rng, s) for s in shapes]
        return Case("Sum", name, inputs, op_class=REDUCTION, reduction=len(inputs), inplace=inplace)

    return [
        case("one_input", [(3, 4)]),
        case("two", [(2, 3, 4)] * 2, inplace=[(0, 0), (1, 0)]),
        case("three_odd", [(7, 13)] * 3),
        case("four", [(2, 3, 4, 5)] * 4, inplace=[(0, 0), (3, 0)]),
        case("size1", [(1, 1, 1)] * 2),
        Case(
            "Sum",
            "float_values",
            [uniform(rng, (5, 6)) for _ in range(3)],
            op_class=REDUCTION,
            reduction=3,
            dtypes=dtypes.FLOAT_TYPES,
        ),
    ]


@cases("MatMul")
def matmul(rng):
    def case(name, a_shape, b_shape, k, **args):
        return Case(
            "MatMul", name, [uniform(rng, a_shape), uniform(rng, b_shape)], args, op_class=GEMM, reduction=k
        )

    return [
        case("2d", (3, 5), (5, 4), 5),
        case("trans_a", (5, 3), (5, 4), 5, trans_a=1),
        case("trans_b", (3, 5), (4, 5), 5, trans_b=1),
        case("trans_both", (5, 3), (4, 5), 5, trans_a=1, trans_b=1),
        case("axis_a2", (2, 3, 4, 5), (20, 7), 20, axis_a=2),
        case("axis_b2_trans_b", (4, 6), (2, 5, 6), 6, axis_b=2, trans_b=1),
        case("outer_k1", (7, 1), (1, 5), 1),
        case("dot_1x1", (1, 13), (13, 1), 13),
        case("large", (17, 96), (96, 65), 96),
    ]


def _distinct(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """n integer-valued arrays (exact in every dtype) that differ at every position: no ties."""
    size = int(np.prod(shape, dtype=np.int64))
    cols = [rng.permutation(np.arange(-8, 8))[:n] for _ in range(size)]
    table = np.array(cols, dtype=np.float64).T.reshape(n, size)
    return [row.reshape(shape) for row in table]


def _extreme_cases(op):
    def gen(rng):
        def case(name, n, shape, inplace=(), shift=0, **kw):
            kw.setdefault("dtypes", SIGNED)
            inputs = [x + shift for x in _distinct(rng, n, shape)]
            return Case(op, name, inputs, op_class=ELEMENTWISE, inplace=inplace, **kw)

        return [
            case("one_input", 1, (3, 4)),
            case("two", 2, (2, 3, 4), inplace=[(0, 0)]),
            case("three_odd", 3, (7, 13)),
            case("four_4d", 4, (2, 3, 4, 5)),
            case("size1", 2, (1, 1, 1)),
            case("scalar", 3, ()),
            Case(
                op,
                "float_values",
                _distinct(rng, 3, (5, 6)),
                op_class=ELEMENTWISE,
                dtypes=dtypes.FLOAT_TYPES,
            ),
            # Ties: every input equal to the extreme gets dY (Caffe2); no finite difference exists there.
            Case(
                op,
                "ties",
                [ints(rng, (4, 5), -2, 2) for _ in range(3)],
                op_class=ELEMENTWISE,
                grad=False,
                dtypes=SIGNED,
            ),
            # Unsigned dtypes: the same shapes of data shifted to [0, 16), ties included.
            case("u_two", 2, (2, 3, 4), dtypes=UNSIGNED, shift=8),
            case("u_three_odd", 3, (7, 13), dtypes=UNSIGNED, shift=8),
            Case(
                op,
                "u_ties",
                [ints(rng, (4, 5), 0, 3) for _ in range(3)],
                op_class=ELEMENTWISE,
                dtypes=UNSIGNED,
            ),
        ]

    return gen


for _op in ("Max", "Min"):
    cases(_op)(_extreme_cases(_op))


@cases("Mean")
def mean(rng):
    def case(name, shapes, inplace=()):
        inputs = [uniform(rng, s, -2, 2) for s in shapes]
        return Case("Mean", name, inputs, op_class=REDUCTION, reduction=len(inputs), inplace=inplace)

    return [
        case("one_input", [(3, 4)]),
        case("two", [(2, 3, 4)] * 2, inplace=[(0, 0)]),
        case("three_odd", [(7, 13)] * 3),
        case("five_4d", [(2, 3, 4, 5)] * 5),
        case("size1", [(1, 1, 1)] * 2),
        case("scalar", [()] * 3),
    ]


@cases("WeightedSum")
def weighted_sum(rng):
    def case(name, shape, w_shapes, inplace=(), **args):
        inputs = []
        for ws in w_shapes:
            inputs += [uniform(rng, shape, -2, 2), uniform(rng, ws, -1.5, 1.5)]
        n = len(w_shapes)
        return Case("WeightedSum", name, inputs, args, op_class=REDUCTION, reduction=n, inplace=inplace)

    return [
        case("one_pair", (3, 4), [(1,)]),
        case("two_pairs", (2, 3, 4), [(1,)] * 2, inplace=[(0, 0)]),
        case("three_pairs_odd", (7, 13), [(1,)] * 3),
        case("scalar_weights", (5, 6), [(), (), ()]),
        case("scalar_x", (), [(1,)] * 2),
        case("grad_on_w", (4, 5), [(1,), ()], grad_on_w=1),
        case("grad_on_w_odd", (3, 7, 5), [(1,)] * 3, grad_on_w=1),
        # Plain SGD: param = 1 * param + (-lr) * grad, in place on the parameter.
        Case(
            "WeightedSum",
            "sgd_update",
            [uniform(rng, (6, 5)), np.ones(1), uniform(rng, (6, 5)), np.full(1, -0.1)],
            op_class=REDUCTION,
            reduction=2,
            inplace=[(0, 0)],
        ),
        # Caffe2 keeps the weights (ONE, LR) in float32 whatever X's float dtype.
        Case(
            "WeightedSum",
            "float32_weights",
            [uniform(rng, (6, 5)), np.ones(1), uniform(rng, (6, 5)), np.full(1, -0.1)],
            op_class=REDUCTION,
            reduction=2,
            fixed_dtype_inputs={1: np.float32, 3: np.float32},
        ),
    ]


@cases("BatchMatMul")
def batch_matmul(rng):
    def case(name, a_shape, b_shape, k, **args):
        ins = [uniform(rng, a_shape), uniform(rng, b_shape)]
        return Case("BatchMatMul", name, ins, args, op_class=GEMM, reduction=k)

    return [
        case("2d", (3, 5), (5, 4), 5),
        case("3d", (2, 3, 5), (2, 5, 4), 5),
        case("trans_a", (2, 5, 3), (2, 5, 4), 5, trans_a=1),
        case("trans_b", (2, 3, 5), (2, 4, 5), 5, trans_b=1),
        case("trans_both", (3, 5, 3), (3, 4, 5), 5, trans_a=1, trans_b=1),
        case("4d_odd", (2, 3, 7, 5), (2, 3, 5, 6), 5),
        case("k1", (2, 3, 1), (2, 1, 4), 1),
        case("m1_n1", (4, 1, 9), (4, 9, 1), 9),
        case("broadcast_batch", (2, 1, 3, 5), (4, 5, 6), 5, broadcast=1),
        case("broadcast_2d_a", (3, 5), (2, 5, 4), 5, broadcast=1),
        case("broadcast_trans", (1, 5, 3), (3, 4, 5), 5, broadcast=1, trans_a=1, trans_b=1),
        case("broadcast_same", (2, 3, 5), (2, 5, 4), 5, broadcast=1),
        case("large", (3, 17, 64), (3, 64, 33), 64),
    ]
