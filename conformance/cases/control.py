"""Cases for If, While, Do.

The runner names an op's inputs ``in0, in1, ...`` and its outputs ``out0, ...``; a sub-net that
uses the default (identity) binding refers to those names, the others rename with
``inner_blobs`` / ``outer_blobs_idx``. Conditions are bool inputs (``fixed_dtype_inputs``). The sub-nets
compute in floating point, so the cases run the float dtypes. Every If and Do case doubles as a
gradient case (the gradient is an If / Do over gradient nets); While has
no gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.proto import NetDef
from kaffa.schema import make_argument
from kaffa_conformance.cases import ELEMENTWISE, Case, cases, uniform

BOOL = np.bool_


def net(name: str, *ops: tuple[str, list[str], list[str]] | tuple[str, list[str], list[str], dict]) -> NetDef:
    """A NetDef from (type, inputs, outputs[, args]) tuples."""
    out = NetDef(name=name)
    for spec in ops:
        op_type, ins, outs = spec[:3]
        args: dict[str, Any] = spec[3] if len(spec) > 3 else {}  # type: ignore[misc]
        op = out.op.add(type=op_type)
        op.input.extend(ins)
        op.output.extend(outs)
        op.arg.extend(make_argument(k, v) for k, v in args.items())
    return out


def _cond(value: bool) -> np.ndarray:
    return np.array([1.0 if value else 0.0])


@cases("If")
def if_cases(rng: np.random.Generator) -> list[Case]:
    # then: Relu(x * w); else: Tanh(x) (else does not read w: its gradient there is zeros).
    then_net = net("then", ("Mul", ["in1", "in2"], ["t"]), ("Relu", ["t"], ["out0"]))
    else_net = net("else", ("Tanh", ["in1"], ["out0"]))
    x, w = uniform(rng, (3, 4)), uniform(rng, (3, 4))
    out = []
    for taken in (True, False):
        out.append(
            Case(
                "If",
                f"{'then' if taken else 'else'}_taken",
                [_cond(taken), x, w],
                {"then_net": then_net, "else_net": else_net},
                fixed_dtype_inputs={0: BOOL},
                dtypes=FLOAT_TYPES,
                op_class=ELEMENTWISE,
            )
        )
    # Renamed blobs, two outputs, a scalar condition; both branches write both outputs.
    two_then = net(
        "two_then", ("Add", ["a", "b"], ["s"]), ("Mul", ["s", "a"], ["p"]), ("Sigmoid", ["b"], ["q"])
    )
    two_else = net("two_else", ("Sub", ["a", "b"], ["p"]), ("Copy", ["a"], ["q"]))
    a, b = uniform(rng, (2, 5)), uniform(rng, (2, 5))
    bind = {"inner_blobs": ["a", "b", "p", "q"], "outer_blobs_idx": [1, 2, 3, 4]}
    for taken in (True, False):
        out.append(
            Case(
                "If",
                f"renamed_two_outputs_{'then' if taken else 'else'}",
                [np.array(float(taken)), a, b],
                {"then_net": two_then, "else_net": two_else, **bind},
                num_outputs=2,
                fixed_dtype_inputs={0: BOOL},
                dtypes=FLOAT_TYPES,
            )
        )
    # No else_net: the output is bound to an input that passes through when cond is false.
    out.append(
        Case(
            "If",
            "no_else_passthrough",
            [_cond(False), uniform(rng, (4,))],
            {
                "then_net": net("neg", ("Negative", ["x"], ["x"])),
                "inner_blobs": ["x", "x"],
                "outer_blobs_idx": [1, 2],
            },
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        )
    )
    out.append(
        Case(
            "If",
            "no_else_taken",
            [_cond(True), uniform(rng, (4,))],
            {
                "then_net": net("neg", ("Negative", ["x"], ["x"])),
                "inner_blobs": ["x", "x"],
                "outer_blobs_idx": [1, 2],
            },
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        )
    )
    return out


@cases("Do")
def do_cases(rng: np.random.Generator) -> list[Case]:
    body = net("body", ("Mul", ["x", "w"], ["t"]), ("Add", ["t", "x"], ["y"]), ("Tanh", ["y"], ["y"]))
    nested_then = net("then", ("Sigmoid", ["x"], ["y"]))
    nested_else = net("else", ("Mul", ["x", "x"], ["y"]))
    nested = net(
        "nested",
        ("If", ["c", "x"], ["y"], {"then_net": nested_then, "else_net": nested_else}),
        ("Mul", ["y", "w"], ["z"]),
    )
    x, w = uniform(rng, (3, 4)), uniform(rng, (3, 4))
    return [
        Case(
            "Do",
            "identity_binding",
            [x, w],
            {"net": net("b", ("Mul", ["in0", "in1"], ["out0"]))},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "Do",
            "renamed_inplace_body",
            [x, w],
            {"net": body, "inner_blobs": ["x", "w", "y"], "outer_blobs_idx": [0, 1, 2]},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "Do",
            "nested_if_else",
            [x, w, _cond(False)],
            {"net": nested, "inner_blobs": ["x", "w", "c", "z"], "outer_blobs_idx": [0, 1, 2, 3]},
            fixed_dtype_inputs={2: BOOL},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "Do",
            "nested_if_then",
            [x, w, _cond(True)],
            {"net": nested, "inner_blobs": ["x", "w", "c", "z"], "outer_blobs_idx": [0, 1, 2, 3]},
            fixed_dtype_inputs={2: BOOL},
            dtypes=FLOAT_TYPES,
        ),
    ]


@cases("While")
def while_cases(rng: np.random.Generator) -> list[Case]:
    # Counters are integer-valued floats, exact in every float dtype.
    body = net(
        "body",
        ("Add", ["i", "step"], ["i"]),
        ("Mul", ["x", "w"], ["x"]),
        ("Add", ["x", "w"], ["x"]),
        ("LT", ["i", "limit"], ["c"]),
    )
    names = ["c", "i", "step", "limit", "x", "w"]
    x, w = uniform(rng, (2, 3)), uniform(rng, (2, 3), 0.5, 1.0)
    ins = [_cond(True), np.array([0.0]), np.array([1.0]), np.array([4.0]), x, w]
    bind = {"inner_blobs": [*names, "x", "i"], "outer_blobs_idx": list(range(8))}
    cond_first = net("check", ("LT", ["i", "limit"], ["c"]))
    body_no_cond = net(
        "body", ("Add", ["i", "step"], ["i"]), ("Tanh", ["x"], ["x"]), ("Add", ["x", "w"], ["x"])
    )
    return [
        Case(
            "While",
            "loop_sets_cond",
            ins,
            {"loop_net": body, **bind},
            num_outputs=2,
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "While",
            "cond_net",
            [_cond(False), *ins[1:]],  # cond_net recomputes the condition before every check
            {"loop_net": body_no_cond, "cond_net": cond_first, **bind},
            num_outputs=2,
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "While",
            "zero_iterations",
            [_cond(False), *ins[1:]],
            {"loop_net": body, **bind},
            num_outputs=2,
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        ),
        Case(
            "While",
            "scan_blobs",
            ins,
            {
                "loop_net": body,
                "scan_blobs": ["x", "i"],
                "inner_blobs": [*names, "x"],
                "outer_blobs_idx": list(range(7)),
            },
            num_outputs=3,
            fixed_dtype_inputs={0: BOOL},
            dtypes=FLOAT_TYPES,
        ),
    ]
