"""Cases for Add, Sub, Mul, Div, Sum, MatMul.

The elementwise ops are defined on integer dtypes too, so their data is integer-valued (exact in
every dtype, float16 included); float-only cases with fractional data are marked with ``dtypes``.
Div never divides by zero, and its integer cases include negative operands (C truncation).
"""

from __future__ import annotations

from kaffa import dtypes
from kaffa_conformance.cases import ELEMENTWISE, GEMM, REDUCTION, Case, cases, ints, uniform


def _nonzero(rng, shape):
    """Integer-valued data in [-8, -1] U [1, 8]: a safe divisor."""
    return rng.integers(1, 9, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _binary_cases(op):
    def gen(rng):
        def b_values(shape):
            return _nonzero(rng, shape) if op == "Div" else ints(rng, shape)

        def case(name, a_shape, b_shape, inplace=(), **args):
            inputs = [ints(rng, a_shape), b_values(b_shape)]
            return Case(op, name, inputs, args, op_class=ELEMENTWISE, inplace=inplace)

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
