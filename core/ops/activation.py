"""Activations: Relu, Sigmoid, Tanh, Softmax."""

from __future__ import annotations

from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, define, norm_axis, same_as_input

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


# -- gradients -------------------------------------------------------------------------------------
# Caffe2's activation gradients read the forward *output* Y (not X), so the forward op may run in
# place: ReluGradient(Y, dY) -> dX.
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


@gradient("Relu")
def _relu_grad(g: GradientContext) -> GradientOps:
    return g.single("ReluGradient", [g.O(0), g.GO(0)], [g.GI(0)])
