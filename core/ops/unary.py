"""Unary math: Exp, Log, Sqrt, Sqr, Abs, Negative, Clip, Pow, Scale, Cast, StopGradient (schemas,
shape inference, gradient makers).

Gradients reuse forward ops as Caffe2 did: Exp -> Mul(Y, dY), Log -> Div(dY, X), Sqrt -> Scale +
Div by Y, Sqr -> Scale + Mul by X, Negative -> Negative, Scale -> Scale, Pow (exponent argument)
-> Pow + Mul + Scale. A maker that reads X refuses when the op overwrote X in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.ops.math import BINARY_ARGS, broadcast_shapes, canon_binary, legacy_b_shape
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, same_as_input, same_dtype

# Caffe2's Clip defaults: numeric_limits<float>::lowest() and max(), i.e. no bound.
FLOAT_LOWEST = float(np.finfo(np.float32).min)
FLOAT_MAX = float(np.finfo(np.float32).max)


def define_unary(
    name: str, doc: str, types: tuple[np.dtype, ...] = dtypes.FLOAT_TYPES, family: str = "unary", **kw: Any
) -> None:
    """An elementwise Y = f(X) schema: one input, same shape and dtype out, in place allowed."""
    kw.setdefault("inplace", "one_to_one")
    kw.setdefault("infer", same_as_input(0))
    define(
        name,
        family=family,
        doc=doc,
        inputs=1,
        input_docs=[("X", "input")],
        output_docs=[("Y", "output, same shape and dtype")],
        dtypes=types,
        **kw,
    )


define_unary("Exp", "Elementwise e^x.")
define_unary("Log", "Elementwise natural log (x <= 0 gives -inf / NaN).")
define_unary("Sqrt", "Elementwise square root (x < 0 gives NaN).")
define_unary("Sqr", "Elementwise x^2.")
define_unary("Abs", "Elementwise |x|.", dtypes.NUMERIC_TYPES)
define_unary("Negative", "Elementwise -x.", dtypes.NUMERIC_TYPES)
define_unary("Scale", "Elementwise x * scale.", args=[Arg("scale", ArgType.FLOAT, 1.0, "the factor")])
define_unary(
    "Clip",
    "Elementwise min(max(x, min), max). Integer inputs clip to ceil(min) and floor(max).",
    dtypes.ALL_NUMERIC_TYPES,
    args=[
        Arg("min", ArgType.FLOAT, FLOAT_LOWEST, "lower bound (default: none)"),
        Arg("max", ArgType.FLOAT, FLOAT_MAX, "upper bound (default: none)"),
    ],
)
define_unary(
    "StopGradient",
    "Identity; gradients do not flow back through it.",
    dtypes.ALL_TYPES,
    differentiable=False,
)


# -- Pow ---------------------------------------------------------------------------------------------
def _infer_pow(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    if len(ins) == 1:
        check(args["exponent"] is not None, "Pow: give the exponent as the `exponent` argument or as input 1")
        return [ins[0]]
    check(
        args["exponent"] is None,
        "Pow: give the exponent either as the `exponent` argument or as input 1, not both",
    )
    x, e = ins
    dtype = same_dtype("Pow", ins)
    if x.shape is None or e.shape is None:
        return [TensorInfo(None, dtype)]
    if args["broadcast"]:
        legacy_b_shape("Pow", x.shape, e.shape, args["axis"])
        return [TensorInfo(x.shape, dtype)]
    return [TensorInfo(broadcast_shapes("Pow", x.shape, e.shape), dtype)]


define(
    "Pow",
    family="unary",
    doc="Elementwise x^exponent. The exponent is the `exponent` argument, or input 1: a tensor that "
    "broadcasts with X the numpy way (or Caffe2's legacy broadcast=1: it lines up inside X at `axis`). "
    "Integer X: exact integer powers for exponents >= 0 (overflow wraps); otherwise the float64 power "
    "truncated toward zero, as C's (int)pow(x, e) (2^-1 = 0).",
    inputs=(1, 2),
    input_docs=[("X", "base"), ("exponent", "optional: exponent tensor (instead of the argument)")],
    output_docs=[("Y", "X^exponent, the broadcast shape")],
    args=[Arg("exponent", ArgType.FLOAT, None, "the exponent (without input 1)"), *BINARY_ARGS],
    inplace={(0, 0), (1, 0)},
    canonicalize=canon_binary,
    infer=_infer_pow,
    dtypes=dtypes.NUMERIC_TYPES,
)


# -- Cast --------------------------------------------------------------------------------------------
_CAST_TARGETS = frozenset([*dtypes.ALL_NUMERIC_TYPES, dtypes.BOOL])
CAST_ROUND_MODES = ("up", "down", "nearest")


def castable(dtype: np.dtype | None) -> bool:
    """A dtype Cast reads and writes: numpy's numeric types, bool, and ml_dtypes' storage types."""
    return dtype is None or np.dtype(dtype) in _CAST_TARGETS or dtypes.is_extended(dtype)


def _infer_cast(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    to = np.dtype(args["to"])
    check(castable(to), f"Cast: cannot cast to {dtypes.name(to)}")
    check(castable(ins[0].dtype), f"Cast: cannot cast from {dtypes.name(ins[0].dtype)}")
    check(
        args["round_mode"] in CAST_ROUND_MODES,
        f"Cast: round_mode must be one of {', '.join(CAST_ROUND_MODES)}, got {args['round_mode']!r}",
    )
    return [TensorInfo(ins[0].shape, to)]


define(
    "Cast",
    family="unary",
    doc="Elementwise conversion to dtype `to` (a TensorProto.DataType number or name such as "
    '"FLOAT", "int32", "BFLOAT16"). Float to integer truncates toward zero (to a 2/4-bit integer it then '
    "wraps, keeping the low bits); to bool tests x != 0. To the float8 formats it rounds to nearest even; "
    "with `saturate` (default) values beyond the format's range, infinities included, become its largest "
    "finite value of their sign, without it they overflow to inf or NaN as the format has them. "
    "float4_e2m1fn has neither and always saturates. To float8_e8m0fnu (a power of two, sign dropped) "
    "`round_mode` picks the exponent: up (default), down, or nearest; NaN and inf become NaN. "
    "The narrow types (bfloat16, float8, float4, 2/4-bit integers) need the ml_dtypes package.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "X as dtype `to`, same shape")],
    args=[
        Arg("to", ArgType.DTYPE, REQUIRED, "the output dtype"),
        Arg("from_type", ArgType.DTYPE, None, "X's dtype (Caffe2 needs it for the gradient; optional here)"),
        Arg("saturate", ArgType.BOOL, True, "to float8: clamp out-of-range values to the largest finite one"),
        Arg("round_mode", ArgType.STRING, "up", "to float8_e8m0fnu: up, down or nearest"),
    ],
    infer=_infer_cast,
    dtypes=(*dtypes.ALL_NUMERIC_TYPES, dtypes.BOOL),
)


# -- gradient ops ----------------------------------------------------------------------------------
def _infer_grad(name: str, first: str):
    """(X or Y, dY) of one shape -> dX shaped and typed like dY."""

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        a, dy = ins
        dtype = same_dtype(name, ins)
        if a.shape is not None and dy.shape is not None:
            check(
                len(a.shape) == len(dy.shape)
                and all(p is None or q is None or p == q for p, q in zip(a.shape, dy.shape)),
                f"{name}: {first} {list(a.shape)} and dY {list(dy.shape)} must have one shape",
            )
        return [TensorInfo(dy.shape if dy.shape is not None else a.shape, dtype)]

    return infer


define(
    "AbsGradient",
    family="unary",
    doc="dX = sign(X) * dY (0 at X = 0).",
    inputs=2,
    input_docs=[("X", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X")],
    inplace={(1, 0)},
    infer=_infer_grad("AbsGradient", "X"),
    gradient_op=True,
    differentiable=False,
)

define(
    "ClipGradient",
    family="unary",
    doc="dX = dY where min < Y < max, else 0.",
    inputs=2,
    input_docs=[("Y", "forward output"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X")],
    args=[Arg("min", ArgType.FLOAT, FLOAT_LOWEST), Arg("max", ArgType.FLOAT, FLOAT_MAX)],
    inplace={(1, 0)},
    infer=_infer_grad("ClipGradient", "Y"),
    gradient_op=True,
    differentiable=False,
)


def _infer_cast_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, dy = ins
    if x.shape is not None and dy.shape is not None:
        check(
            len(x.shape) == len(dy.shape)
            and all(p is None or q is None or p == q for p, q in zip(x.shape, dy.shape)),
            f"CastGradient: X {list(x.shape)} and dY {list(dy.shape)} must have one shape",
        )
    return [TensorInfo(dy.shape if dy.shape is not None else x.shape, x.dtype)]


define(
    "CastGradient",
    family="unary",
    doc="dX = dY cast back to X's dtype (X is read for its dtype only). The gradient of a Cast "
    "without `from_type`; with it, the gradient is a plain Cast as in Caffe2.",
    inputs=2,
    input_docs=[("X", "forward input"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X, X's dtype")],
    infer=_infer_cast_gradient,
    dtypes=dtypes.ALL_TYPES,
    gradient_op=True,
    differentiable=False,
)


def _infer_pow_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, e, y, dy = ins
    dtype = same_dtype("PowGradient", ins)
    out = _infer_pow({**args, "exponent": None}, [x, e], 1)[0].shape
    for what, info in (("Y", y), ("dY", dy)):
        check(
            out is None
            or info.shape is None
            or (
                len(out) == len(info.shape)
                and all(p is None or q is None or p == q for p, q in zip(out, info.shape))
            ),
            f"PowGradient: {what} {list(info.shape or ())} must have the shape of X^E, {list(out or ())}",
        )
    return [TensorInfo(x.shape, dtype), TensorInfo(e.shape, dtype)]


define(
    "PowGradient",
    family="unary",
    doc="Gradients of Y = X^E for an exponent tensor E: dX = E * X^(E-1) * dY and dE = Y * log(X) * dY "
    "(defined for X > 0), each summed to its input's shape.",
    inputs=4,
    outputs=2,
    input_docs=[("X", "base"), ("E", "exponent"), ("Y", "forward output"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X"), ("dE", "gradient of E")],
    args=BINARY_ARGS,
    canonicalize=canon_binary,
    infer=_infer_pow_gradient,
    gradient_op=True,
    differentiable=False,
)


# -- gradient makers -------------------------------------------------------------------------------
@gradient("Exp")
def _exp_grad(g: GradientContext) -> GradientOps:
    return g.single("Mul", [g.O(0), g.GO(0)], [g.GI(0)])


@gradient("Log")
def _log_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(0)
    return g.single("Div", [g.GO(0), g.I(0)], [g.GI(0)])


@gradient("Sqrt")
def _sqrt_grad(g: GradientContext) -> GradientOps:
    half = g.temp("half")
    ops = [g.make("Scale", [g.GO(0)], [half], scale=0.5), g.make("Div", [half, g.O(0)], [g.GI(0)])]
    return GradientOps(ops, [g.GI(0)])


@gradient("Sqr")
def _sqr_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(0)
    twice = g.temp("twice")
    ops = [g.make("Scale", [g.GO(0)], [twice], scale=2.0), g.make("Mul", [twice, g.I(0)], [g.GI(0)])]
    return GradientOps(ops, [g.GI(0)])


@gradient("Abs")
def _abs_grad(g: GradientContext) -> GradientOps:
    g.refuse_inplace(0)
    return g.single("AbsGradient", [g.I(0), g.GO(0)], [g.GI(0)])


@gradient("Negative")
def _negative_grad(g: GradientContext) -> GradientOps:
    return g.single("Negative", [g.GO(0)], [g.GI(0)])


@gradient("Scale")
def _scale_grad(g: GradientContext) -> GradientOps:
    return g.single("Scale", [g.GO(0)], [g.GI(0)], scale=g.args["scale"])


@gradient("Clip")
def _clip_grad(g: GradientContext) -> GradientOps:
    return g.single("ClipGradient", [g.O(0), g.GO(0)], [g.GI(0)], **g.forward_args("min", "max"))


@gradient("Pow")
def _pow_grad(g: GradientContext) -> GradientOps:
    if g.num_inputs == 2:
        g.refuse_inplace(0, 1)
        ins = [g.I(0), g.I(1), g.O(0), g.GO(0)]
        legacy = {"broadcast": 1, "axis": g.args["axis"]} if g.args["broadcast"] else {}
        return g.single("PowGradient", ins, [g.GI(0), g.GI(1)], **legacy)
    # dX = e * X^(e-1) * dY, as Caffe2 builds it (Pow, Mul, Scale).
    g.refuse_inplace(0)
    e = g.args["exponent"]
    pow_e1, prod = g.temp("pow"), g.temp("mul")
    ops = [
        g.make("Pow", [g.I(0)], [pow_e1], exponent=e - 1.0),
        g.make("Mul", [pow_e1, g.GO(0)], [prod]),
        g.make("Scale", [prod], [g.GI(0)], scale=e),
    ]
    return GradientOps(ops, [g.GI(0)])


@gradient("Cast")
def _cast_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None])
    if g.args["from_type"] is not None:
        to, back = g.args["to"], g.args["from_type"]
        return g.single("Cast", [g.GO(0)], [g.GI(0)], to=back, from_type=to)
    return g.single("CastGradient", [g.I(0), g.GO(0)], [g.GI(0)])
