"""Cases for EQ, LT, GT, And, Or, Not.

Comparison data is integer-valued from a small range, so equal elements are common (and exact in
every dtype, bool included for EQ). And/Or/Not take bool masters directly.
Data with negative values runs on the float, signed integer (and for EQ bool) dtypes; the unsigned
dtypes get ``u_*`` cases with non-negative data.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, Case, cases, ints

_SIGNED = (*dtypes.FLOAT_TYPES, *dtypes.SIGNED_INT_TYPES)

# (name, A shape, B shape, args): the broadcasting forms Add accepts.
_SHAPES = [
    ("same_shape", (2, 3, 4), (2, 3, 4), {}),
    ("odd_large", (13, 67), (13, 67), {}),
    ("b_scalar", (3, 4), (), {}),
    ("a_scalar", (), (3, 4), {}),
    ("b_size1", (3, 4), (1,), {}),
    ("rank_mismatch", (2, 3, 4, 5), (4, 5), {}),
    ("size1_both_sides", (3, 1, 5), (1, 4, 1), {}),
    ("legacy_axis1", (2, 3, 4, 5), (3, 4), {"broadcast": 1, "axis": 1}),
    ("legacy_trailing", (2, 3, 4), (3, 4), {"broadcast": 1}),
    ("legacy_axis0_size1", (2, 3, 4), (2, 1), {"broadcast": 1, "axis": 0}),
    ("legacy_axis_str", (2, 3, 4, 5), (3,), {"broadcast": 1, "axis_str": "C", "order": "NCHW"}),
]


def _bools(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(bool)


def _binary_cases(op):
    logical = op in ("And", "Or")

    def gen(rng):
        def draw(shape):
            return _bools(rng, shape) if logical else ints(rng, shape, -2, 3)

        signed = None if logical else (*_SIGNED, dtypes.BOOL) if op == "EQ" else _SIGNED
        out = [
            Case(op, name, [draw(a), draw(b)], args, op_class=EXACT, dtypes=signed)
            for name, a, b, args in _SHAPES
        ]
        if not logical:
            # Fractional values that differ in the last float16 bits are compared after the cast.
            vals = rng.uniform(-1, 1, size=(4, 9))
            out.append(Case(op, "float_values", [vals, vals[:, ::-1].copy()], op_class=EXACT, dtypes=signed))
            for name, a, b, args in (_SHAPES[0], _SHAPES[2], _SHAPES[5], _SHAPES[7]):
                inputs = [ints(rng, a, 0, 4), ints(rng, b, 0, 4)]
                out.append(
                    Case(op, "u_" + name, inputs, args, op_class=EXACT, dtypes=dtypes.UNSIGNED_INT_TYPES)
                )
        else:
            out.append(
                Case(op, "inplace", [draw((4, 6)), draw((4, 6))], op_class=EXACT, inplace=[(0, 0), (1, 0)])
            )
        return out

    return gen


for _op in ("EQ", "LT", "GT", "And", "Or"):
    cases(_op)(_binary_cases(_op))


@cases("Not")
def not_(rng):
    shapes = [(1,), (7,), (2, 3), (3, 1, 5), (2, 3, 4, 5), ()]
    out = [Case("Not", "x".join(map(str, s)) or "scalar", [_bools(rng, s)], op_class=EXACT) for s in shapes]
    out.append(Case("Not", "inplace", [_bools(rng, (4, 6))], op_class=EXACT, inplace=[(0, 0)]))
    return out
