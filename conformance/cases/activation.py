"""Cases for Relu, Sigmoid, Tanh, Softmax."""

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
