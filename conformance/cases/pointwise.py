"""Conformance cases for the pointwise family (see kaffa.ops.pointwise).

Every case of a differentiable op is a gradient case (float dtypes), so inputs stay inside each
function's domain and away from poles: Tan in (-1.3, 1.3), Asin / Acos / Atanh in (-0.95, 0.95),
Acosh in (1.1, 6), Reciprocal away from 0. Where's condition is a bool input of fixed dtype; its
float cases check dX and dY. Round's cases include exact halves (ties to even), exact in float16.
Integer ops run on every integer dtype they claim with data in [0, 100) (in range everywhere);
negative data runs on the signed dtypes only.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, Case, cases, ints, uniform

SHAPES = [(1,), (7,), (2, 3), (3, 1, 5), (2, 3, 4, 5), (1, 1, 1, 1), ()]


def _name(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _away(rng, shape, high: float, low: float) -> np.ndarray:
    """Values in [-high, -low] U [low, high]."""
    return uniform(rng, shape, low, high) * rng.choice([-1.0, 1.0], size=tuple(shape))


def _shapes_cases(op: str, draw, **kw):
    def gen(rng):
        out = [Case(op, _name(s), [draw(rng, s)], dict(kw)) for s in SHAPES]
        out.append(Case(op, "inplace", [draw(rng, (4, 6))], dict(kw), inplace=[(0, 0)]))
        return out

    return gen


for _op, _lo, _hi in (
    ("Sin", -6.0, 6.0),
    ("Cos", -6.0, 6.0),
    ("Tan", -1.3, 1.3),
    ("Asin", -0.95, 0.95),
    ("Acos", -0.95, 0.95),
    ("Atan", -8.0, 8.0),
    ("Sinh", -4.0, 4.0),
    ("Cosh", -4.0, 4.0),
    ("Asinh", -8.0, 8.0),
    ("Acosh", 1.1, 6.0),
    ("Atanh", -0.95, 0.95),
    ("Erf", -3.0, 3.0),
):
    cases(_op)(_shapes_cases(_op, lambda rng, s, lo=_lo, hi=_hi: uniform(rng, s, lo, hi)))

cases("Reciprocal")(_shapes_cases("Reciprocal", lambda rng, s: _away(rng, s, 5.0, 0.2)))


@cases("Gelu")
def gelu(rng):
    out = _shapes_cases("Gelu", lambda rng, s: uniform(rng, s, -5, 5))(rng)
    for s in [(2, 3, 4), (9,)]:
        out.append(Case("Gelu", f"fast_{_name(s)}", [uniform(rng, s, -5, 5)], {"fast_gelu": 1}))
    out.append(Case("Gelu", "fast_wide", [uniform(rng, (4, 5), -12, 12)], {"fast_gelu": 1}))
    out.append(Case("Gelu", "exact_wide", [uniform(rng, (4, 5), -12, 12)], {"fast_gelu": 0}))
    return out


def _rounding(op: str):
    def gen(rng):
        out = _shapes_cases(op, lambda rng, s: uniform(rng, s, -20, 20))(rng)
        halves = np.arange(-6, 6) + 0.5  # ties: Round goes to even
        out.append(Case(op, "halves", [halves.reshape(3, 4)], op_class=EXACT))
        out.append(Case(op, "integers", [ints(rng, (3, 5), -9, 10)], op_class=EXACT))
        return out

    return gen


for _op in ("Ceil", "Floor", "Round"):
    cases(_op)(_rounding(_op))


# -- Mod -------------------------------------------------------------------------------------------
def _nonzero_ints(rng, shape, low, high):
    x = ints(rng, shape, low, high)
    x[x == 0] = 1.0
    return x


@cases("Mod")
def mod(rng):
    signed, unsigned = list(dtypes.SIGNED_INT_TYPES), list(dtypes.UNSIGNED_INT_TYPES)
    out = []
    for fmod in (0, 1):
        tag = "fmod" if fmod else "mod"
        out += [
            Case(
                "Mod",
                f"{tag}_mixed_sign",
                [ints(rng, (4, 6), -100, 100), _nonzero_ints(rng, (4, 6), -12, 12)],
                {"fmod": fmod},
                op_class=EXACT,
                dtypes=signed,
            ),
            Case(
                "Mod",
                f"{tag}_broadcast",
                [ints(rng, (2, 3, 5), -100, 100), _nonzero_ints(rng, (5,), -9, 9)],
                {"fmod": fmod},
                op_class=EXACT,
                dtypes=signed,
            ),
            Case(
                "Mod",
                f"{tag}_unsigned",
                [ints(rng, (3, 4), 0, 100), _nonzero_ints(rng, (3, 4), 1, 13)],
                {"fmod": fmod},
                op_class=EXACT,
                dtypes=[*signed, *unsigned],
            ),
            Case(
                "Mod",
                f"{tag}_by_zero",
                [ints(rng, (2, 4), -50, 50), np.array([3.0, 0.0, -4.0, 0.0])],
                {"fmod": fmod},
                op_class=EXACT,
                dtypes=signed,
            ),
        ]
    out += [
        Case(
            "Mod",
            "float_fmod",
            [uniform(rng, (3, 5), -20, 20), _away(rng, (3, 5), 6.0, 0.5)],
            {"fmod": 1},
            dtypes=dtypes.FLOAT_TYPES,
        ),
        Case(
            "Mod",
            "float_fmod_broadcast",
            [uniform(rng, (2, 3, 4), -10, 10), _away(rng, (1, 4), 4.0, 0.5)],
            {"fmod": 1},
            dtypes=dtypes.FLOAT_TYPES,
        ),
        Case(
            "Mod",
            "float_fmod_scalar",
            [uniform(rng, (), -10, 10), np.array(3.0)],
            {"fmod": 1},
            dtypes=dtypes.FLOAT_TYPES,
        ),
        # Caffe2's form: one input and the `divisor` argument.
        Case(
            "Mod", "divisor_arg", [ints(rng, (5, 4), -60, 60)], {"divisor": 7}, op_class=EXACT, dtypes=signed
        ),
        Case(
            "Mod",
            "divisor_arg_sign_follow",
            [ints(rng, (5, 4), -60, 60)],
            {"divisor": -7, "sign_follow_divisor": 1},
            op_class=EXACT,
            dtypes=signed,
        ),
        Case(
            "Mod",
            "inplace",
            [ints(rng, (3, 4), 0, 100), _nonzero_ints(rng, (3, 4), 1, 13)],
            op_class=EXACT,
            dtypes=dtypes.INT_TYPES,
            inplace=[(0, 0), (1, 0)],
        ),
        # fmod=0 on floats: numpy.mod, the sign of the divisor (ONNX opset 28's float Mod tests).
        Case(
            "Mod",
            "float_mod",
            [uniform(rng, (3, 5), -20, 20), _away(rng, (3, 5), 6.0, 0.5)],
            {"fmod": 0},
            dtypes=dtypes.FLOAT_TYPES,
        ),
        Case(
            "Mod",
            "float_mod_broadcast",
            [uniform(rng, (2, 3, 4), -10, 10), _away(rng, (1, 4), 4.0, 0.5)],
            {"fmod": 0},
            dtypes=dtypes.FLOAT_TYPES,
        ),
    ]
    return out


# -- Where -----------------------------------------------------------------------------------------
@cases("Where")
def where(rng):
    def cond(shape):
        return rng.random(size=tuple(shape)) < 0.5

    def case(name, c_shape, x_shape, y_shape, **kw):
        ins = [cond(c_shape), uniform(rng, x_shape, -5, 5), uniform(rng, y_shape, -5, 5)]
        return Case("Where", name, ins, fixed_dtype_inputs={0: np.bool_}, dtypes=dtypes.FLOAT_TYPES, **kw)

    out = [
        case("same_shape", (3, 4), (3, 4), (3, 4)),
        case("cond_broadcast", (4,), (3, 4), (3, 4)),
        case("x_scalar", (2, 3), (), (2, 3)),
        case("all_broadcast", (3, 1, 1), (1, 4, 1), (5,)),
        case("cond_bigger", (2, 3, 4), (3, 4), (1, 4)),
        case("scalar", (), (), ()),
        case("size1", (1, 1), (1, 1), (1,)),
        case("rows", (3,), (3, 4), (3, 4), args={"broadcast_on_rows": 1}),
        case("rows_3d", (2,), (2, 3, 2), (2, 3, 2), args={"broadcast_on_rows": 1}),
        case("inplace", (3, 4), (3, 4), (3, 4), inplace=[(1, 0), (2, 0)]),
    ]
    # Every dtype Where is defined for, with values in range everywhere.
    out.append(
        Case(
            "Where",
            "all_dtypes",
            [cond((3, 5)), ints(rng, (3, 5), 0, 100), ints(rng, (1, 5), 0, 100)],
            fixed_dtype_inputs={0: np.bool_},
            op_class=EXACT,
            grad=False,  # the integer and bool dtypes have no gradient; float ones are covered above
        )
    )
    return out


# -- bitwise ---------------------------------------------------------------------------------------
def _bitwise(op: str):
    def gen(rng):
        def case(name, a_shape, b_shape, low=0, high=100, types=None, **kw):
            ins = [ints(rng, a_shape, low, high), ints(rng, b_shape, low, high)]
            return Case(op, name, ins, op_class=EXACT, dtypes=types, **kw)

        return [
            case("same_shape", (4, 6), (4, 6)),
            case("broadcast", (2, 3, 4), (4,)),
            case("broadcast_both", (3, 1), (1, 5)),
            case("scalar", (), ()),
            case("bits01", (3, 4), (3, 4), 0, 2),
            case("negative", (3, 5), (3, 5), -100, 100, types=list(dtypes.SIGNED_INT_TYPES)),
            case("legacy_axis", (2, 3, 4), (3,), args={"broadcast": 1, "axis": 1}),
            case("inplace", (3, 4), (3, 4), inplace=[(0, 0), (1, 0)]),
        ]

    return gen


for _op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
    cases(_op)(_bitwise(_op))


@cases("BitwiseNot")
def bitwise_not(rng):
    out = [Case("BitwiseNot", _name(s), [ints(rng, s, 0, 100)], op_class=EXACT) for s in SHAPES]
    out.append(Case("BitwiseNot", "bits01", [ints(rng, (3, 4), 0, 2)], op_class=EXACT))
    out.append(
        Case(
            "BitwiseNot",
            "negative",
            [ints(rng, (3, 5), -100, 100)],
            op_class=EXACT,
            dtypes=list(dtypes.SIGNED_INT_TYPES),
        )
    )
    out.append(Case("BitwiseNot", "inplace", [ints(rng, (4, 6), 0, 100)], op_class=EXACT, inplace=[(0, 0)]))
    return out


@cases("BitShift")
def bit_shift(rng):
    out = []
    for direction in ("LEFT", "RIGHT"):
        d = direction.lower()
        out += [
            Case(
                "BitShift",
                f"{d}_same_shape",
                [ints(rng, (4, 6), 0, 100), ints(rng, (4, 6), 0, 8)],
                {"direction": direction},
                op_class=EXACT,
            ),
            Case(
                "BitShift",
                f"{d}_broadcast",
                [ints(rng, (2, 3, 4), 0, 100), ints(rng, (4,), 0, 8)],
                {"direction": direction},
                op_class=EXACT,
            ),
            Case(
                "BitShift",
                f"{d}_scalar_shift",
                [ints(rng, (5,), 0, 100), np.array(3.0)],
                {"direction": direction},
                op_class=EXACT,
            ),
            # Shifts by the bit width or more give 0 (uint8: 8..; uint64: 64..).
            Case(
                "BitShift",
                f"{d}_past_width",
                [ints(rng, (2, 4), 1, 100), np.array([[8.0, 9.0, 63.0, 64.0], [65.0, 70.0, 16.0, 32.0]])],
                {"direction": direction},
                op_class=EXACT,
            ),
            # Signed: left shifts wrap, right shifts are arithmetic, negative shifts are out of range.
            Case(
                "BitShift",
                f"{d}_signed",
                [ints(rng, (3, 6), -100, 100), ints(rng, (3, 6), -3, 12)],
                {"direction": direction},
                op_class=EXACT,
                dtypes=list(dtypes.SIGNED_INT_TYPES),
            ),
        ]
    out.append(
        Case(
            "BitShift",
            "lowercase_direction",
            [ints(rng, (3, 3), 0, 100), ints(rng, (3, 3), 0, 4)],
            {"direction": "left"},
            op_class=EXACT,
        )
    )
    out.append(
        Case(
            "BitShift",
            "inplace",
            [ints(rng, (3, 4), 0, 100), ints(rng, (3, 4), 0, 5)],
            {"direction": "RIGHT"},
            op_class=EXACT,
            inplace=[(0, 0), (1, 0)],
        )
    )
    return out
