"""Cases for Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient.

Every case of a differentiable op is a gradient case (float dtypes), so: Log, Sqrt and the Pow cases
that need it take positive inputs; Abs inputs stay away from 0 and Clip inputs away from the
bounds (no finite difference straddles a kink). Clip's bounds are exact in float16, so every dtype
clips the same elements. Ops also defined on integers (Abs, Negative, Clip, Cast, StopGradient) run
their cases on int32/int64 too; Clip's integer cases use integer-valued data and bounds. Clip and
Cast are also defined on int8 ... uint64: data with negative values runs on the float and signed
dtypes, and the unsigned dtypes get ``unsigned_*`` cases. Pow's integer cases (int32/int64) take
small bases and exponents so the powers stay in range.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa.proto import TensorProto
from kaffa_conformance.cases import ELEMENTWISE, Case, cases, ints, uniform

SHAPES = [(1,), (7,), (2, 3), (3, 1, 5), (2, 3, 4, 5), (1, 1, 1, 1)]
SIGNED = (*dtypes.FLOAT_TYPES, *dtypes.SIGNED_INT_TYPES)
UNSIGNED = dtypes.UNSIGNED_INT_TYPES


def _name(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _away(rng, shape, high: float, low: float = 0.05) -> np.ndarray:
    """Values in [-high, -low] U [low, high]."""
    return uniform(rng, shape, low, high) * rng.choice([-1.0, 1.0], size=tuple(shape))


def _shapes_cases(op: str, draw, extra_shapes=((),)):
    def gen(rng):
        out = [Case(op, _name(s), [draw(rng, s)], op_class=ELEMENTWISE) for s in [*SHAPES, *extra_shapes]]
        out.append(Case(op, "inplace", [draw(rng, (4, 6))], inplace=[(0, 0)]))
        return out

    return gen


cases("Exp")(_shapes_cases("Exp", lambda rng, s: uniform(rng, s, -5, 5)))
cases("Log")(_shapes_cases("Log", lambda rng, s: uniform(rng, s, 0.05, 20)))
cases("Sqrt")(_shapes_cases("Sqrt", lambda rng, s: uniform(rng, s, 0.05, 20)))
cases("Sqr")(_shapes_cases("Sqr", lambda rng, s: uniform(rng, s, -8, 8)))
cases("Abs")(_shapes_cases("Abs", lambda rng, s: _away(rng, s, 9.0)))
cases("Negative")(_shapes_cases("Negative", lambda rng, s: uniform(rng, s, -9, 9)))
cases("StopGradient")(_shapes_cases("StopGradient", lambda rng, s: uniform(rng, s, -9, 9)))


@cases("Scale")
def scale(rng):
    out = _shapes_cases("Scale", lambda rng, s: uniform(rng, s, -4, 4))(rng)
    for name, s in (("half", 0.5), ("neg2", -2.0), ("tenth", 0.1), ("zero", 0.0)):
        out.append(Case("Scale", name, [uniform(rng, (3, 5), -4, 4)], {"scale": s}))
    return out


def _off_bounds(x: np.ndarray, bounds, margin: float = 0.05) -> np.ndarray:
    """Move elements within ``margin`` of a bound to 2 * margin past it (same side)."""
    x = x.copy()
    for b in bounds:
        near = np.abs(x - b) < margin
        x[near] = np.where(x[near] >= b, b + 2 * margin, b - 2 * margin)
    return x


@cases("Clip")
def clip(rng):
    def case(name, shape, args, high=3.0):
        bounds = [v for k, v in args.items() if k in ("min", "max")]
        x = _off_bounds(uniform(rng, shape, -high, high), bounds)
        return Case("Clip", name, [x], args, dtypes=dtypes.FLOAT_TYPES)

    out = [
        case("both", (4, 7), {"min": -0.5, "max": 0.75}),
        case("min_only", (3, 1, 5), {"min": -1.25}),
        case("max_only", (2, 3, 4, 5), {"max": 0.5}),
        case("no_bounds", (6,), {}),
        case("narrow", (1, 9), {"min": 0.25, "max": 0.375}),
        case("size1", (1, 1), {"min": -1.0, "max": 1.0}),
        case("scalar", (), {"min": -1.0, "max": 1.0}),
        case("all_below", (2, 4), {"min": 4.0, "max": 5.0}),
    ]
    inplace = case("inplace", (4, 6), {"min": -1.0, "max": 1.0})
    inplace.inplace = [(0, 0)]
    out.append(inplace)
    # Integer data and bounds run on every dtype; fractional bounds clip integers to ceil(min), floor(max).
    out.append(
        Case(
            "Clip",
            "integers",
            [ints(rng, (5, 6), -9, 10)],
            {"min": -3.0, "max": 4.0},
            grad=False,
            dtypes=SIGNED,
        )
    )
    out.append(
        Case(
            "Clip",
            "integers_wide",
            [ints(rng, (3, 4), -9, 10)],
            {"min": -100.0, "max": 100.0},
            grad=False,
            dtypes=SIGNED,
        )
    )
    out.append(
        Case(
            "Clip",
            "fractional_bounds",
            [ints(rng, (4, 5), -6, 7)],
            {"min": -2.5, "max": 3.5},
            dtypes=dtypes.SIGNED_INT_TYPES,
        )
    )
    # Unsigned data; a min below the dtype's range (-1) is no bound, a max above it clips nothing.
    for name, args in (
        ("unsigned", {"min": 3.0, "max": 12.0}),
        ("unsigned_min_below_range", {"min": -1.0, "max": 9.5}),
        ("unsigned_max_only", {"max": 7.0}),
    ):
        out.append(Case("Clip", name, [ints(rng, (4, 6), 0, 20)], args, dtypes=UNSIGNED))
    # int8's range: bounds beyond it are no bounds.
    out.append(
        Case(
            "Clip",
            "int8_wide_bounds",
            [ints(rng, (3, 5), -100, 100)],
            {"min": -1000.0, "max": 1000.0},
            dtypes=dtypes.SIGNED_INT_TYPES,
        )
    )
    return out


@cases("Pow")
def pow_(rng):
    def arg(name, shape, exponent, low=-2.0, high=2.0):
        x = _away(rng, shape, high, 0.1) if low < 0 else uniform(rng, shape, low, high)
        return Case("Pow", name, [x], {"exponent": exponent}, dtypes=dtypes.FLOAT_TYPES)

    def tensor(name, x_shape, e_shape, **args):
        x = uniform(rng, x_shape, 0.2, 2.5)
        e = uniform(rng, e_shape, -2, 3)
        return Case("Pow", name, [x, e], args, op_class=ELEMENTWISE, dtypes=dtypes.FLOAT_TYPES)

    def integer(name, x, e=None, **args):
        inputs = [x] if e is None else [x, e]
        return Case("Pow", name, inputs, args, op_class=ELEMENTWISE, dtypes=dtypes.INT_TYPES)

    out = [
        arg("square", (3, 4), 2.0),
        arg("cube", (2, 3, 4, 5), 3.0),
        arg("sqrt", (7,), 0.5, 0.05, 9),
        arg("inverse", (2, 5), -1.0, 0.2, 4),
        arg("fractional", (3, 1, 5), 1.5, 0.05, 3),
        arg("one", (1, 1, 1, 1), 1.0),
        arg("zero", (4,), 0.0, 0.2, 3),
        arg("neg_half", (6,), -0.5, 0.1, 5),
        tensor("tensor_same_shape", (3, 4), (3, 4)),
        tensor("tensor_trailing", (2, 3, 4), (4,)),
        tensor("tensor_scalar", (3, 5), ()),
        tensor("tensor_x_smaller", (5,), (2, 3, 5)),
        tensor("tensor_size1_both", (3, 1, 4), (1, 5, 1)),
        tensor("legacy_axis1", (2, 3, 4, 5), (3, 4), broadcast=1, axis=1),
        tensor("legacy_trailing", (2, 3, 4), (3, 4), broadcast=1),
        Case(
            "Pow",
            "inplace",
            [uniform(rng, (4, 6), 0.1, 3)],
            {"exponent": 2.5},
            inplace=[(0, 0)],
            dtypes=dtypes.FLOAT_TYPES,
        ),
    ]
    # Integer X (exact integer powers; negative or fractional exponents truncate toward zero). The
    # gradient is float-only, so these are forward cases.
    out += [
        integer("int_tensor", ints(rng, (3, 4), -5, 6), ints(rng, (3, 4), 0, 6)),
        integer("int_tensor_broadcast", ints(rng, (2, 3, 4), -3, 4), ints(rng, (4,), 0, 5)),
        integer("int_cube_arg", ints(rng, (2, 5), -9, 10), exponent=3.0),
        integer("int_inverse_arg", _nonzero_ints(rng, (3, 5)), exponent=-1.0),
        integer("int_negative_exponents", _nonzero_ints(rng, (2, 6)), ints(rng, (2, 6), -3, 0)),
        integer("int_fractional_arg", ints(rng, (7,), 0, 20), exponent=0.5),
    ]
    return out


def _nonzero_ints(rng, shape):
    """Integer-valued data in [-4, -1] U [1, 4]: no 0 to a negative power."""
    return rng.integers(1, 5, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _cast_extended_cases(rng, case) -> list[Case]:
    """Casts to and from ml_dtypes' storage types (none without ml_dtypes). No gradient: the narrow
    outputs are storage formats, and casts between two of them are not differentiable either."""
    if not dtypes.extended_types():
        return []
    ext = dtypes.extended
    floats = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))
    wide = lambda lo, hi: lambda r, s: uniform(r, s, lo, hi)  # noqa: E731
    f8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")

    def c(name, shape, to, data, types=floats, **kw):
        return case(name, shape, to, data, grad=False, types=types, **kw)

    return [
        c("to_bfloat16", (3, 4), "BFLOAT16", wide(-1e4, 1e4), types=floats[:2]),
        c("to_float8e4m3fn_saturates", (4, 6), "FLOAT8E4M3FN", wide(-600, 600)),
        c("to_float8e4m3fn_no_saturate", (4, 6), "FLOAT8E4M3FN", wide(-600, 600), saturate=False),
        c("to_float8e4m3fnuz", (3, 5), "FLOAT8E4M3FNUZ", wide(-300, 300)),
        c("to_float8e5m2_saturates", (3, 5), "FLOAT8E5M2", wide(-9e4, 9e4), types=floats[:2]),
        c(
            "to_float8e5m2fnuz_no_saturate",
            (3, 5),
            "FLOAT8E5M2FNUZ",
            wide(-9e4, 9e4),
            types=floats[:2],
            saturate=False,
        ),
        c("to_float4e2m1", (2, 7), "FLOAT4E2M1", wide(-8, 8)),
        c("to_float8e8m0_up", (9,), "FLOAT8E8M0", wide(-1e3, 1e3)),
        c("to_float8e8m0_down", (9,), "FLOAT8E8M0", wide(0.01, 1e3), round_mode="down"),
        c("to_float8e8m0_nearest", (9,), "FLOAT8E8M0", wide(0.01, 1e3), round_mode="nearest"),
        c("to_int4_wraps", (3, 4), "INT4", wide(-20, 20)),
        c("to_uint4", (3, 4), "UINT4", lambda r, s: ints(r, s, 0, 16), types=(*floats, np.dtype(np.int32))),
        c("to_int2", (6,), "INT2", lambda r, s: ints(r, s, -2, 2), types=(np.dtype(np.int8),)),
        c("to_uint2", (6,), "UINT2", lambda r, s: ints(r, s, 0, 4), types=(np.dtype(np.uint8),)),
        # From the narrow types (data exact in each), to float, int and another narrow type.
        c("float8_to_float", (2, 5), "FLOAT", lambda r, s: ints(r, s, -8, 9) / 4, types=[ext(n) for n in f8]),
        c("bfloat16_to_int32", (2, 5), "INT32", wide(-100, 100), types=[ext("bfloat16")]),
        c("int4_to_int8", (3, 3), "INT8", lambda r, s: ints(r, s, -8, 8), types=[ext("int4")]),
        c("uint4_to_float16", (3, 3), "FLOAT16", lambda r, s: ints(r, s, 0, 16), types=[ext("uint4")]),
        c("int2_to_float", (5,), "FLOAT", lambda r, s: ints(r, s, -2, 2), types=[ext("int2"), ext("uint2")]),
        c(
            "float4_to_double",
            (4,),
            "DOUBLE",
            lambda r, s: ints(r, s, -6, 7) / 2,
            types=[ext("float4_e2m1fn")],
        ),
        c(
            "float8e8m0_to_float",
            (4,),
            "FLOAT",
            lambda r, s: np.exp2(ints(r, s, -10, 10)),
            types=[ext("float8_e8m0fnu")],
        ),
        c("int4_to_uint4", (6,), "UINT4", lambda r, s: ints(r, s, 0, 8), types=[ext("int4")]),
        c(
            "float8e5m2_to_float8e4m3fn",
            (6,),
            "FLOAT8E4M3FN",
            lambda r, s: ints(r, s, -16, 17),
            types=[ext("float8_e5m2")],
        ),
        c("bfloat16_to_float8e5m2", (6,), "FLOAT8E5M2", wide(-100, 100), types=[ext("bfloat16")]),
    ]


@cases("Cast")
def cast(rng):
    def case(name, shape, to, data=None, grad=None, types=(*SIGNED, dtypes.BOOL), **kw):
        x = ints(rng, shape, -20, 21) if data is None else data(rng, shape)
        return Case("Cast", name, [x], {"to": to, **kw}, grad=grad, dtypes=types)

    def fractional(rng, shape):
        return uniform(rng, shape, -30, 30)

    out = [
        case("to_float_name", (3, 4), "FLOAT"),
        case("to_double_enum", (2, 3, 4), TensorProto.DOUBLE),
        case("to_float16_lower", (7,), "float16"),
        case("fractional_to_float", (5, 3), TensorProto.FLOAT, fractional),
        case("size1", (1, 1, 1), "DOUBLE"),
        case("scalar", (), "FLOAT"),
        # Non-float outputs carry no gradient.
        case("to_int32", (4, 5), "INT32", grad=False),
        case("to_int64_enum", (6,), TensorProto.INT64, grad=False),
        case("truncates_toward_zero", (4, 6), "INT32", fractional, grad=False),
        case("to_bool", (3, 5), "BOOL", grad=False),
        case("to_uint8", (2, 6), "UINT8", lambda r, s: ints(r, s, 0, 100), grad=False, types=None),
    ]
    # Unsigned inputs (non-negative data) to float, int and the small integer types.
    nonneg = lambda r, s: ints(r, s, 0, 100)  # noqa: E731
    for name, to in (("float", "FLOAT"), ("int64", "INT64"), ("int8", "INT8"), ("uint16", "UINT16")):
        out.append(case(f"unsigned_to_{name}", (3, 5), to, nonneg, grad=False, types=UNSIGNED))
    # Caffe2's form: with from_type the gradient is a Cast back to it (run for that dtype only).
    out.append(
        Case(
            "Cast",
            "from_type",
            [uniform(rng, (3, 4), -4, 4)],
            {"to": "DOUBLE", "from_type": "FLOAT"},
            dtypes=["float32"],
        )
    )
    # Last: they exist only with ml_dtypes, and drawing them must not shift the other cases' inputs
    # (the goldens of a base install, without ml_dtypes, are the same file).
    return out + _cast_extended_cases(rng, case)
