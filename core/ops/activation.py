"""Activations: Relu, Sigmoid, Tanh, Softmax, LeakyRelu, PRelu, Elu, Selu, Softplus, and their gradients.

Caffe2's activation gradients read the forward *output* Y (not X), so the forward op may run in
place: ReluGradient(Y, dY) -> dX. PRelu is the exception: its gradient reads X and the slope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaffa.errors import SchemaError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_as_input, same_dtype

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

for _name, _formula in (("Relu", "max(x, 0)"), ("Sigmoid", "1 / (1 + exp(-x))"), ("Tanh", "tanh(x)")):
    define(
        _name,
        family="activation",
        doc=f"Elementwise {_formula}.",
        inputs=1,
        input_docs=[("X", "input")],
        output_docs=[("Y", "output, same shape and dtype")],
        inplace="one_to_one",
        infer=same_as_input(0),
    )


def _infer_softmax(args, ins, n):
    if ins[0].shape is not None:
        norm_axis(args["axis"], len(ins[0].shape), "Softmax")
    return [ins[0]]


define(
    "Softmax",
    family="activation",
    doc="Softmax over the trailing dims: X is viewed as [prod(dims[:axis]), prod(dims[axis:])] "
    "(Caffe2's coerced-2D rule) and each row is normalized.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("Y", "probabilities, same shape")],
    args=[Arg("axis", ArgType.INT, 1, "first axis of the normalized block")],
    inplace="one_to_one",
    infer=_infer_softmax,
)

_ELEMENTWISE = [
    (
        "LeakyRelu",
        "Elementwise x if x > 0 else alpha * x.",
        [Arg("alpha", ArgType.FLOAT, 0.01, "slope for x <= 0")],
    ),
    (
        "Elu",
        "Elementwise x if x > 0 else alpha * (exp(x) - 1).",
        [Arg("alpha", ArgType.FLOAT, 1.0, "scale of the negative part")],
    ),
    (
        "Selu",
        "Elementwise scale * (x if x > 0 else alpha * (exp(x) - 1)) (self-normalizing defaults).",
        [
            Arg("alpha", ArgType.FLOAT, SELU_ALPHA, "scale of the negative part"),
            Arg("scale", ArgType.FLOAT, SELU_SCALE, "overall scale"),
        ],
    ),
    ("Softplus", "Elementwise log(1 + exp(x)).", []),
]

for _name, _doc, _args in _ELEMENTWISE:
    define(
        _name,
        family="activation",
        doc=_doc,
        inputs=1,
        input_docs=[("X", "input")],
        output_docs=[("Y", "output, same shape and dtype")],
        args=_args,
        inplace="one_to_one",
        infer=same_as_input(0),
    )


def prelu_channels(op: str, x: tuple[int | None, ...], order: str) -> int | None:
    """The channel count PRelu's slope must match: dim 1 (NCHW) or the last dim (NHWC)."""
    check(order in ("NCHW", "NHWC"), f"{op}: order must be NCHW or NHWC, got {order!r}")
    if order == "NCHW":
        check(len(x) >= 2, f"{op}: X {list(x)} needs a channel axis 1 (order NCHW) for a per-channel slope")
        return x[1]
    check(len(x) >= 1, f"{op}: X {list(x)} needs a channel axis (order NHWC) for a per-channel slope")
    return x[-1]


def _check_prelu(op: str, args: Mapping[str, Any], x: TensorInfo, slope: TensorInfo) -> None:
    check(args["order"] in ("NCHW", "NHWC"), f"{op}: order must be NCHW or NHWC, got {args['order']!r}")
    if slope.shape is None:
        return
    n = prod(slope.shape)
    if n == 1 or n is None or x.shape is None:
        return  # one slope shared by every channel
    c = prelu_channels(op, x.shape, args["order"])
    check(
        c is None or n == c,
        f"{op}: slope {list(slope.shape)} must have 1 or C={c} elements for X {list(x.shape)} "
        f"(order {args['order']})",
    )


def _infer_prelu(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    dtype = same_dtype("PRelu", ins)
    _check_prelu("PRelu", args, ins[0], ins[1])
    return [TensorInfo(ins[0].shape, dtype)]


_ORDER = Arg("order", ArgType.STRING, "NCHW", "NCHW: channels on axis 1; NHWC: on the last axis")

define(
    "PRelu",
    family="activation",
    doc="Elementwise x if x > 0 else slope[c] * x, with one learned slope per channel c (or one "
    "slope shared by all).",
    inputs=2,
    input_docs=[("X", "input"), ("slope", "[C] per-channel slopes, or one element")],
    output_docs=[("Y", "output, shape of X")],
    args=[_ORDER],
    inplace={(0, 0)},
    infer=_infer_prelu,
)


# -- gradient ops ----------------------------------------------------------------------------------
def _infer_elementwise_grad(name: str, first: str = "Y"):
    """Gradient ops over (Y or X, dY) of one shape: dX is shaped and typed like dY."""

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        y, dy = ins
        dtype = same_dtype(name, ins)
        if y.shape is not None and dy.shape is not None:
            check(
                len(y.shape) == len(dy.shape)
                and all(a is None or b is None or a == b for a, b in zip(y.shape, dy.shape)),
                f"{name}: {first} {list(y.shape)} and dY {list(dy.shape)} must have one shape",
            )
        return [TensorInfo(dy.shape if dy.shape is not None else y.shape, dtype)]

    return infer


_GRADIENTS = [
    ("Sigmoid", "dX = dY * Y * (1 - Y).", []),
    ("Tanh", "dX = dY * (1 - Y^2).", []),
    (
        "Softmax",
        "dX = Y * (dY - sum(dY * Y)), the sum over each row of the coerced-2D view at `axis`.",
        [Arg("axis", ArgType.INT, 1, "first axis of the normalized block")],
    ),
    (
        "LeakyRelu",
        "dX = dY where Y > 0, else alpha * dY (reads Y, so alpha must be >= 0).",
        [Arg("alpha", ArgType.FLOAT, 0.01)],
    ),
    ("Elu", "dX = dY where Y > 0, else dY * (Y + alpha).", [Arg("alpha", ArgType.FLOAT, 1.0)]),
    (
        "Selu",
        "dX = scale * dY where Y > 0, else dY * (Y + alpha * scale).",
        [Arg("alpha", ArgType.FLOAT, SELU_ALPHA), Arg("scale", ArgType.FLOAT, SELU_SCALE)],
    ),
    ("Softplus", "dX = dY * (1 - exp(-Y)).", []),
]

define(
    "ReluGradient",
    family="activation",
    doc="dX = dY where Y > 0, else 0.",
    inputs=2,
    input_docs=[("Y", "forward output"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X")],
    infer=same_as_input(1),
    gradient_op=True,
    differentiable=False,
)

for _fwd, _doc, _args in _GRADIENTS:
    define(
        f"{_fwd}Gradient",
        family="activation",
        doc=_doc,
        inputs=2,
        input_docs=[("Y", "forward output"), ("dY", "gradient of Y")],
        output_docs=[("dX", "gradient of X")],
        args=_args,
        inplace={(1, 0)},
        infer=_infer_elementwise_grad(f"{_fwd}Gradient"),
        gradient_op=True,
        differentiable=False,
    )


def _infer_prelu_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _, dy, x, slope = ins
    dtype = same_dtype("PReluGradient", ins)
    _infer_elementwise_grad("PReluGradient", "X")(args, [x, dy], 1)
    _check_prelu("PReluGradient", args, x, slope)
    return [TensorInfo(x.shape, dtype), TensorInfo(slope.shape, dtype)]


define(
    "PReluGradient",
    family="activation",
    doc="dX = dY where X > 0, else slope[c] * dY; dslope[c] = sum of X * dY over channel c where X <= 0 "
    "(over everything for a shared slope).",
    inputs=4,
    outputs=2,
    input_docs=[
        ("Y", "forward output (unused)"),
        ("dY", "gradient of Y"),
        ("X", "forward input"),
        ("slope", ""),
    ],
    output_docs=[("dX", "gradient of X"), ("dslope", "gradient of slope, its shape")],
    args=[_ORDER],
    infer=_infer_prelu_gradient,
    gradient_op=True,
    differentiable=False,
)


# -- gradient makers -------------------------------------------------------------------------------
@gradient("Relu")
def _relu_grad(g: GradientContext) -> GradientOps:
    return g.single("ReluGradient", [g.O(0), g.GO(0)], [g.GI(0)])


@gradient("Sigmoid", "Tanh", "Softmax", "LeakyRelu", "Elu", "Selu", "Softplus")
def _from_output_grad(g: GradientContext) -> GradientOps:
    return g.single(f"{g.op.type}Gradient", [g.O(0), g.GO(0)], [g.GI(0)], **g.forward_args())


@gradient("PRelu")
def _prelu_grad(g: GradientContext) -> GradientOps:
    if g.I(0) in g.op.output:
        raise SchemaError(
            f"the gradient of PRelu needs input 0 ('{g.I(0)}'), which the op overwrites in place; "
            f"write the output to a new blob"
        )
    return g.single(
        "PReluGradient",
        [g.O(0), g.GO(0), g.I(0), g.I(1)],
        [g.GI(0), g.GI(1)],
        **g.forward_args("order"),
    )
