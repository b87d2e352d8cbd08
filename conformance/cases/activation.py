"""Cases for Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus.

Every case is also a gradient case. Ops with a kink at 0 (LeakyRelu, PRelu, Elu, Selu) draw their
inputs at least 0.05 away from it, so finite differences never straddle the kink.
"""

from __future__ import annotations

from kaffa_conformance.cases import ELEMENTWISE, REDUCTION, Case, cases, uniform

SHAPES = [(1,), (7,), (2, 3), (3, 1, 5), (2, 3, 4, 5), (1, 1, 1, 1)]


def _unary(op: str, scale: float):
    def gen(rng):
        out = [
            Case(op, "x".join(map(str, s)), [uniform(rng, s, -scale, scale)], op_class=ELEMENTWISE)
            for s in SHAPES
        ]
        out.append(Case(op, "inplace", [uniform(rng, (4, 6), -scale, scale)], inplace=[(0, 0)]))
        return out

    return gen


for _op, _scale in (("Relu", 2.0), ("Sigmoid", 6.0), ("Tanh", 3.0)):
    cases(_op)(_unary(_op, _scale))


@cases("Softmax")
def softmax(rng):
    return [
        Case("Softmax", "2d", [uniform(rng, (3, 10), -4, 4)], op_class=REDUCTION, reduction=10),
        Case("Softmax", "4d_axis1", [uniform(rng, (2, 3, 4, 5), -4, 4)], op_class=REDUCTION, reduction=60),
        Case(
            "Softmax",
            "axis2",
            [uniform(rng, (2, 3, 4, 5), -4, 4)],
            {"axis": 2},
            op_class=REDUCTION,
            reduction=20,
        ),
        Case(
            "Softmax",
            "axis_neg1",
            [uniform(rng, (4, 7), -4, 4)],
            {"axis": -1},
            op_class=REDUCTION,
            reduction=7,
        ),
        Case("Softmax", "large_logits", [uniform(rng, (2, 5), 50, 80)], op_class=REDUCTION, reduction=5),
        Case("Softmax", "single_class", [uniform(rng, (3, 1))], op_class=REDUCTION, reduction=1),
    ]


def away_from_zero(rng, shape, high: float, low: float = 0.05):
    """Values in [-high, -low] U [low, high]: no element near a kink at 0."""
    return uniform(rng, shape, low, high) * rng.choice([-1.0, 1.0], size=tuple(shape))


def _kinked(op: str, high: float, variants: list[tuple[str, dict]]):
    def gen(rng):
        out = [
            Case(op, "x".join(map(str, s)), [away_from_zero(rng, s, high)], op_class=ELEMENTWISE)
            for s in SHAPES
        ]
        out.append(Case(op, "inplace", [away_from_zero(rng, (4, 6), high)], inplace=[(0, 0)]))
        out += [Case(op, name, [away_from_zero(rng, (3, 8), high)], args) for name, args in variants]
        out.append(Case(op, "scalar", [away_from_zero(rng, (), high)]))
        return out

    return gen


cases("LeakyRelu")(
    _kinked(
        "LeakyRelu",
        3.0,
        [("alpha0.2", {"alpha": 0.2}), ("alpha0", {"alpha": 0.0}), ("alpha3", {"alpha": 3.0})],
    )
)
cases("Elu")(_kinked("Elu", 3.0, [("alpha0.5", {"alpha": 0.5}), ("alpha2", {"alpha": 2.0})]))
cases("Selu")(
    _kinked("Selu", 3.0, [("alpha_scale", {"alpha": 1.5, "scale": 2.0}), ("scale0.5", {"scale": 0.5})])
)


@cases("Softplus")
def softplus(rng):
    out = _unary("Softplus", 6.0)(rng)
    # Far tails: log(1 + e^x) ~ e^x below, ~ x above (a naive log(1 + exp(x)) overflows at x > 88 in float32).
    out.append(Case("Softplus", "tails", [uniform(rng, (2, 9), -30, 30)]))
    out.append(Case("Softplus", "large_positive", [uniform(rng, (5,), 90, 100)]))
    out.append(Case("Softplus", "scalar", [uniform(rng, (), -3, 3)]))
    return out


@cases("PRelu")
def prelu(rng):
    def case(name, x_shape, slope_shape, **args):
        x = away_from_zero(rng, x_shape, 3.0)
        slope = uniform(rng, slope_shape, -0.5, 0.8)
        return Case("PRelu", name, [x, slope], args, op_class=ELEMENTWISE)

    out = [
        case("nchw", (2, 3, 4, 5), (3,)),
        case("shared", (2, 3, 4, 5), (1,)),
        case("2d", (4, 3), (3,)),
        case("odd", (3, 5, 7), (5,)),
        case("nhwc", (2, 4, 5, 3), (3,), order="NHWC"),
        case("nhwc_2d", (6, 4), (4,), order="NHWC"),
        case("size1", (1, 1, 1, 1), (1,)),
        case("one_channel", (3, 1, 4), (1,)),
        case("shared_1d", (7,), (1,)),
        case("shared_scalar", (), ()),
    ]
    out.append(
        Case(
            "PRelu",
            "inplace",
            [away_from_zero(rng, (2, 3, 4), 3.0), uniform(rng, (3,), 0, 0.5)],
            inplace=[(0, 0)],
        )
    )
    return out
