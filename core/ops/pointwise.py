"""Elementwise functions ONNX needs beyond the core set: Where, Mod, trigonometric and hyperbolic
functions, rounding, Erf, Gelu, bitwise ops and BitShift (schemas, shape inference, gradients).

Names follow Caffe2 where Caffe2 had the op (Sin ... Cosh, Ceil, Floor, Erf, Gelu with
``fast_gelu``, Reciprocal, Where with ``broadcast_on_rows``, Mod with ``divisor``, BitwiseAnd/Or/Xor
with legacy broadcasting), else ONNX's (Asinh, Acosh, Atanh, Round, BitShift, BitwiseNot; Mod's
two-input form with ``fmod``).

Gradients: each differentiable unary op has its own gradient op reading X (or Y for Reciprocal),
with Caffe2's input order where Caffe2 had one (Sin/Cos/Tan/Asin/Acos/Atan/Erf: (X, dY); Sinh,
Cosh, Gelu: (dY, X); Reciprocal: (Y, dY)). Where's gradient, WhereGradient, routes dZ to X or Y by
the condition and sums it to each input's shape. Ceil, Floor, Round, Mod and the bitwise ops have no
gradient (zero almost everywhere, or integer-only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.ops.math import BINARY_ARGS, broadcast_shapes, canon_binary, legacy_b_shape
from kaffa.ops.unary import define_unary
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, same_dtype

BITWISE_TYPES: tuple[np.dtype, ...] = (*dtypes.ALL_INT_TYPES, dtypes.BOOL)
MOD_TYPES: tuple[np.dtype, ...] = (*dtypes.FLOAT_TYPES, *dtypes.ALL_INT_TYPES)
WHERE_TYPES: tuple[np.dtype, ...] = (*dtypes.FLOAT_TYPES, *dtypes.ALL_INT_TYPES, dtypes.BOOL)


def _unary(name: str, doc: str, types: tuple[np.dtype, ...] = dtypes.FLOAT_TYPES, **kw: Any) -> None:
    define_unary(name, doc, types, family="pointwise", **kw)


_unary("Sin", "Elementwise sine (radians).")
_unary("Cos", "Elementwise cosine (radians).")
_unary("Tan", "Elementwise tangent (radians).")
_unary("Asin", "Elementwise arcsine, in [-pi/2, pi/2] (|x| > 1 gives NaN).")
_unary("Acos", "Elementwise arccosine, in [0, pi] (|x| > 1 gives NaN).")
_unary("Atan", "Elementwise arctangent, in (-pi/2, pi/2).")
_unary("Sinh", "Elementwise hyperbolic sine.")
_unary("Cosh", "Elementwise hyperbolic cosine.")
_unary("Asinh", "Elementwise inverse hyperbolic sine.")
_unary("Acosh", "Elementwise inverse hyperbolic cosine (x < 1 gives NaN).")
_unary("Atanh", "Elementwise inverse hyperbolic tangent (|x| > 1 gives NaN, +-1 gives +-inf).")
_unary("Erf", "Elementwise error function 2/sqrt(pi) * integral_0^x exp(-t^2) dt.")
_unary("Reciprocal", "Elementwise 1 / x (0 gives inf).")
_unary(
    "Gelu",
    "Elementwise x * Phi(x), Phi the standard normal CDF: 0.5 * x * (1 + erf(x / sqrt(2))); with "
    "fast_gelu=1 the tanh approximation 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) "
    "(ONNX's approximate='tanh').",
    args=[Arg("fast_gelu", ArgType.BOOL, False, "use the tanh approximation")],
)
_unary("Ceil", "Elementwise smallest integer >= x (as a float).", differentiable=False)
_unary("Floor", "Elementwise largest integer <= x (as a float).", differentiable=False)
_unary("Round", "Elementwise nearest integer, halves to even (as a float).", differentiable=False)
_unary(
    "BitwiseNot",
    "Elementwise bitwise complement ~x (logical not for bool).",
    BITWISE_TYPES,
    differentiable=False,
)


# -- binary integer ops ----------------------------------------------------------------------------
def _infer_broadcast(name: str, legacy: bool = False, types: tuple[np.dtype, ...] | None = None):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        a, b = ins
        dtype = same_dtype(name, ins)
        if types is not None:
            check(
                dtype is None or dtype in types,
                f"{name}: inputs must be one of {', '.join(d.name for d in types)}, got {dtypes.name(dtype)}",
            )
        if a.shape is None or b.shape is None:
            return [TensorInfo(None, dtype)]
        if legacy and args["broadcast"]:
            legacy_b_shape(name, a.shape, b.shape, args["axis"])
            return [TensorInfo(a.shape, dtype)]
        return [TensorInfo(broadcast_shapes(name, a.shape, b.shape), dtype)]

    return infer


for _name, _sym in (("BitwiseAnd", "A & B"), ("BitwiseOr", "A | B"), ("BitwiseXor", "A ^ B")):
    define(
        _name,
        family="pointwise",
        doc=f"Elementwise bitwise {_sym} of integers (logical for bool), with numpy broadcasting (or "
        "Caffe2's legacy broadcast=1).",
        inputs=2,
        input_docs=[("A", "left operand"), ("B", "right operand, same dtype")],
        output_docs=[("C", "result, broadcast shape, same dtype")],
        args=BINARY_ARGS,
        canonicalize=canon_binary,
        inplace={(0, 0), (1, 0)},
        infer=_infer_broadcast(_name, legacy=True, types=BITWISE_TYPES),
        dtypes=BITWISE_TYPES,
        differentiable=False,
    )


def _canon_bitshift(args: dict[str, Any]) -> dict[str, Any]:
    direction = str(args["direction"]).upper()
    check(
        direction in ("LEFT", "RIGHT"),
        f"BitShift: direction must be LEFT or RIGHT, got {args['direction']!r}",
    )
    return {**args, "direction": direction}


define(
    "BitShift",
    family="pointwise",
    doc="Elementwise X << Y (direction LEFT) or X >> Y (RIGHT) of integers, with numpy broadcasting. "
    "Signed left shifts wrap (two's complement), signed right shifts are arithmetic. A shift by the "
    "bit width or more, or by a negative amount, gives 0 (RIGHT of a negative X: -1), as ONNX does.",
    inputs=2,
    input_docs=[("X", "values"), ("Y", "shift amounts, same dtype")],
    output_docs=[("Z", "shifted values, broadcast shape, same dtype")],
    args=[Arg("direction", ArgType.STRING, REQUIRED, "LEFT or RIGHT")],
    canonicalize=_canon_bitshift,
    inplace={(0, 0), (1, 0)},
    infer=_infer_broadcast("BitShift", types=dtypes.ALL_INT_TYPES),
    dtypes=dtypes.ALL_INT_TYPES,
    differentiable=False,
)


def _infer_mod(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("Mod", ins)
    if len(ins) == 1:
        check(
            args["divisor"] is not None,
            "Mod: give the divisor as the `divisor` argument (Caffe2) or as input 1 (ONNX)",
        )
        check(args["divisor"] != 0, "Mod: divisor must not be 0")
        check(
            dtype is None or dtype.kind in "iu",
            f"Mod: the `divisor` form takes integers, got {dtypes.name(dtype)}",
        )
        return [ins[0]]
    check(
        args["divisor"] is None,
        "Mod: give the divisor either as the `divisor` argument or as input 1, not both",
    )
    check(args["fmod"] in (0, 1), f"Mod: fmod must be 0 or 1, got {args['fmod']}")
    return _infer_broadcast("Mod")(args, ins, n)


define(
    "Mod",
    family="pointwise",
    doc="Elementwise remainder. ONNX's form: Mod(A, B) with numpy broadcasting; fmod=0 gives the sign of "
    "the divisor B (Python's % and numpy.mod, floats included, as in ONNX opset 28's tests), fmod=1 "
    "the sign of the dividend A (C's fmod). Caffe2's form: Mod(X) with the integer `divisor` "
    "argument, the sign of X unless sign_follow_divisor=1. Integer division by 0 gives 0.",
    inputs=(1, 2),
    input_docs=[("A", "dividend"), ("B", "optional: divisor (instead of the `divisor` argument)")],
    output_docs=[("C", "remainder, broadcast shape, same dtype")],
    args=[
        Arg("fmod", ArgType.INT, 0, "two-input form: 1 for the sign of A (C fmod), 0 for the sign of B"),
        Arg("divisor", ArgType.INT, None, "one-input (Caffe2) form: the divisor"),
        Arg(
            "sign_follow_divisor", ArgType.BOOL, False, "one-input form: the result takes the divisor's sign"
        ),
    ],
    inplace={(0, 0), (1, 0)},
    infer=_infer_mod,
    dtypes=MOD_TYPES,
    differentiable=False,
)


# -- Where -----------------------------------------------------------------------------------------
def _where_shape(args: Mapping[str, Any], c, x, y) -> tuple[int | None, ...] | None:
    """The output shape of Where(C, X, Y) (None if a rank is unknown)."""
    if x.shape is None or y.shape is None:
        return None
    xy = broadcast_shapes("Where", x.shape, y.shape)
    if c.shape is None:
        return None
    if args["broadcast_on_rows"]:
        check(
            len(c.shape) == 1 and len(xy) >= 1,
            f"Where: with broadcast_on_rows=1, C {list(c.shape)} must be 1-D and X, Y at least 1-D",
        )
        check(
            c.shape[0] is None or xy[0] is None or c.shape[0] == xy[0],
            f"Where: with broadcast_on_rows=1, C {list(c.shape)} must have one entry per row of X and Y "
            f"{list(xy)}",
        )
        return xy
    out = broadcast_shapes("Where", c.shape, xy)
    return out


def _infer_where(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    c, x, y = ins
    check(
        c.dtype is None or c.dtype == dtypes.BOOL,
        f"Where: condition C must be bool, got {dtypes.name(c.dtype)}",
    )
    dtype = same_dtype("Where", [x, y])
    return [TensorInfo(_where_shape(args, c, x, y), dtype)]


_WHERE_ARGS = [
    Arg(
        "broadcast_on_rows",
        ArgType.BOOL,
        False,
        "C is 1-D and selects whole rows (first dim) of X and Y (else C broadcasts the numpy way)",
    )
]

define(
    "Where",
    family="pointwise",
    doc="Elementwise C ? X : Y. C, X and Y broadcast the numpy way (or, with broadcast_on_rows=1, C is "
    "1-D with one entry per row of X and Y, as in Caffe2).",
    inputs=3,
    input_docs=[("C", "bool condition"), ("X", "values where C"), ("Y", "values where not C, same dtype")],
    output_docs=[("Z", "broadcast shape, X's dtype")],
    args=_WHERE_ARGS,
    inplace={(1, 0), (2, 0)},
    infer=_infer_where,
    dtypes=WHERE_TYPES,
    type_input=1,
)


# -- gradient ops ----------------------------------------------------------------------------------
def _infer_grad(name: str, names: list[str]):
    """Two same-shaped inputs (``names``: their order, dY and X or Y) -> dX shaped and typed like dY."""
    k = 1 - names.index("dY")
    what = names[k]

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        a, dy = ins[k], ins[1 - k]
        dtype = same_dtype(name, ins)
        if a.shape is not None and dy.shape is not None:
            check(
                len(a.shape) == len(dy.shape)
                and all(p is None or q is None or p == q for p, q in zip(a.shape, dy.shape)),
                f"{name}: {what} {list(a.shape)} and dY {list(dy.shape)} must have one shape",
            )
        return [TensorInfo(dy.shape if dy.shape is not None else a.shape, dtype)]

    return infer


# (op, gradient inputs as Caffe2 ordered them, formula)
GRADIENT_OPS: dict[str, tuple[str, str]] = {
    "Sin": ("X,dY", "dX = cos(X) * dY"),
    "Cos": ("X,dY", "dX = -sin(X) * dY"),
    "Tan": ("X,dY", "dX = dY / cos(X)^2"),
    "Asin": ("X,dY", "dX = dY / sqrt(1 - X^2)"),
    "Acos": ("X,dY", "dX = -dY / sqrt(1 - X^2)"),
    "Atan": ("X,dY", "dX = dY / (1 + X^2)"),
    "Sinh": ("dY,X", "dX = cosh(X) * dY"),
    "Cosh": ("dY,X", "dX = sinh(X) * dY"),
    "Asinh": ("X,dY", "dX = dY / sqrt(X^2 + 1)"),
    "Acosh": ("X,dY", "dX = dY / sqrt(X^2 - 1)"),
    "Atanh": ("X,dY", "dX = dY / (1 - X^2)"),
    "Erf": ("X,dY", "dX = 2 / sqrt(pi) * exp(-X^2) * dY"),
    "Gelu": ("dY,X", "dX = (Phi(X) + X * phi(X)) * dY (fast_gelu: the tanh form's derivative)"),
    "Reciprocal": ("Y,dY", "dX = -Y^2 * dY"),
}

_DOCS = {"X": "forward input", "Y": "forward output", "dY": "gradient of Y"}

for _op, (_order, _formula) in GRADIENT_OPS.items():
    _names = _order.split(",")
    define(
        f"{_op}Gradient",
        family="pointwise",
        doc=f"{_formula}.",
        inputs=2,
        input_docs=[(k, _DOCS[k]) for k in _names],
        output_docs=[("dX", "gradient of X")],
        args=[Arg("fast_gelu", ArgType.BOOL, False, "the forward op's fast_gelu")] if _op == "Gelu" else [],
        inplace={(_names.index("dY"), 0)},
        infer=_infer_grad(f"{_op}Gradient", _names),
        gradient_op=True,
        differentiable=False,
    )


def _infer_where_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    c, x, y, dz = ins
    dtype = same_dtype("WhereGradient", [x, y, dz])
    out = _where_shape(args, c, x, y)
    check(
        out is None
        or dz.shape is None
        or (
            len(out) == len(dz.shape) and all(p is None or q is None or p == q for p, q in zip(out, dz.shape))
        ),
        f"WhereGradient: dZ {list(dz.shape or ())} must have Where's output shape {list(out or ())}",
    )
    return [TensorInfo(x.shape, dtype), TensorInfo(y.shape, dtype)]


define(
    "WhereGradient",
    family="pointwise",
    doc="Gradients of Z = Where(C, X, Y): dX = dZ where C else 0, dY = dZ where not C else 0, each summed "
    "to its input's shape. X and Y are read only for their shapes.",
    inputs=4,
    outputs=2,
    input_docs=[
        ("C", "bool condition"),
        ("X", "forward input"),
        ("Y", "forward input"),
        ("dZ", "gradient of Z"),
    ],
    output_docs=[("dX", "gradient of X"), ("dY", "gradient of Y")],
    args=_WHERE_ARGS,
    infer=_infer_where_gradient,
    type_input=3,
    gradient_op=True,
    differentiable=False,
)


# -- gradient makers -------------------------------------------------------------------------------
def _unary_grad(g: GradientContext) -> GradientOps:
    order = GRADIENT_OPS[g.op.type][0].split(",")
    if "X" in order:
        g.refuse_inplace(0)
    blobs = {"X": g.I(0), "Y": g.O(0), "dY": g.GO(0)}
    args = g.forward_args("fast_gelu") if g.op.type == "Gelu" else {}
    return g.single(f"{g.op.type}Gradient", [blobs[k] for k in order], [g.GI(0)], **args)


gradient(*GRADIENT_OPS)(_unary_grad)


@gradient("Where")
def _where_grad(g: GradientContext) -> GradientOps:
    # X and Y are read for their shapes only: one the op overwrote in place had the output's shape.
    ins = [g.I(0), g.I(1), g.I(2), g.GO(0)]
    args = {"broadcast_on_rows": 1} if g.args["broadcast_on_rows"] else {}
    return GradientOps(
        [g.make("WhereGradient", ins, [g.GI(1), g.GI(2)], **args)],
        [None, g.GI(1), g.GI(2)],
    )
