"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceProd, SumElements (schemas, shape inference,
gradient makers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaffa import dtypes
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, same_dtype


def reduced_axes(op: str, axes: Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """The normalized, sorted axes to reduce; none given (or an empty list) means all of them."""
    if not axes:
        return tuple(range(rank))
    out = [norm_axis(a, rank, op, "axes entry") for a in axes]
    check(len(set(out)) == len(out), f"{op}: axes {list(axes)} name an axis twice (rank {rank})")
    return tuple(sorted(out))


def reduced_shape(
    shape: Sequence[int | None], axes: tuple[int, ...], keepdims: bool
) -> tuple[int | None, ...]:
    if keepdims:
        return tuple(1 if k in axes else d for k, d in enumerate(shape))
    return tuple(d for k, d in enumerate(shape) if k not in axes)


def _infer_reduce(name: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if x.shape is None:
            return [TensorInfo(None, x.dtype)]
        axes = reduced_axes(name, args["axes"], len(x.shape))
        if name == "ReduceMax":
            check(
                all(x.shape[k] != 0 for k in axes),
                f"ReduceMax: cannot reduce an empty axis of X {list(x.shape)} (axes {list(axes)})",
            )
        return [TensorInfo(reduced_shape(x.shape, axes, args["keepdims"]), x.dtype)]

    return infer


_REDUCE_ARGS = [
    Arg("axes", ArgType.INTS, None, "axes to reduce (default: all)"),
    Arg("keepdims", ArgType.BOOL, True, "keep reduced axes as size-1 dims"),
]

for _name, _what, _types in (
    ("ReduceSum", "sum", dtypes.NUMERIC_TYPES),
    ("ReduceMean", "mean", dtypes.FLOAT_TYPES),
    ("ReduceMax", "maximum", dtypes.NUMERIC_TYPES),
    ("ReduceProd", "product", dtypes.NUMERIC_TYPES),
):
    define(
        _name,
        family="reduce",
        doc=f"The {_what} of X over `axes` (default: all axes); keepdims=1 keeps them as size-1 dims.",
        inputs=1,
        input_docs=[("X", "input")],
        output_docs=[("Y", f"{_what}, X's dtype")],
        args=_REDUCE_ARGS,
        infer=_infer_reduce(_name),
        dtypes=_types,
    )


def _infer_reduce_gradient(name: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        dy, x, y = ins
        dtype = same_dtype(name, [dy, x, y])
        if x.shape is not None and dy.shape is not None:
            axes = reduced_axes(name, args["axes"], len(x.shape))
            want = reduced_shape(x.shape, axes, args["keepdims"])
            check(
                len(want) == len(dy.shape)
                and all(a is None or b is None or a == b for a, b in zip(want, dy.shape)),
                f"{name}: dY {list(dy.shape)} is not X {list(x.shape)} reduced over {list(axes)}",
            )
        return [TensorInfo(x.shape, dtype)]

    return infer


for _name, _rule in (
    ("ReduceSumGradient", "dY broadcast back over the reduced axes"),
    ("ReduceMeanGradient", "dY / (number of reduced elements), broadcast back over the reduced axes"),
    ("ReduceMaxGradient", "dY where X equals the maximum Y (every tie gets it), else 0"),
    ("ReduceProdGradient", "dY times the product of the other reduced elements (zeros included)"),
):
    define(
        _name,
        family="reduce",
        doc=f"dX = {_rule}. X gives the shape; Y is read by ReduceMaxGradient only.",
        inputs=3,
        input_docs=[("dY", "gradient of Y"), ("X", "forward input"), ("Y", "forward output")],
        output_docs=[("dX", "gradient of X")],
        args=_REDUCE_ARGS,
        infer=_infer_reduce_gradient(_name),
        gradient_op=True,
        differentiable=False,
    )


@gradient("ReduceSum", "ReduceMean", "ReduceMax", "ReduceProd")
def _reduce_grad(g: GradientContext) -> GradientOps:
    return g.single(
        f"{g.op.type}Gradient",
        [g.GO(0), g.I(0), g.O(0)],
        [g.GI(0)],
        axes=g.args["axes"] or None,
        keepdims=int(g.args["keepdims"]),
    )


def _infer_sum_elements(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    return [TensorInfo((), ins[0].dtype)]


define(
    "SumElements",
    family="reduce",
    doc="The sum of all elements of X (their mean with average=1), as a scalar (shape []).",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("sum", "scalar, X's dtype")],
    args=[Arg("average", ArgType.BOOL, False, "divide by the number of elements")],
    infer=_infer_sum_elements,
)


def _infer_sum_elements_gradient(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, dy = ins
    dtype = same_dtype("SumElementsGradient", ins)
    check(
        dy.shape is None or all(d is None or d == 1 for d in dy.shape),
        f"SumElementsGradient: dY must have one element, got shape {list(dy.shape or ())}",
    )
    return [TensorInfo(x.shape, dtype)]


define(
    "SumElementsGradient",
    family="reduce",
    doc="dX = dY (divided by X's size with average=1) at every element of X.",
    inputs=2,
    input_docs=[("X", "forward input (its shape)"), ("dY", "gradient of the sum, one element")],
    output_docs=[("dX", "gradient of X")],
    args=[Arg("average", ArgType.BOOL, False, "divide by the number of elements")],
    infer=_infer_sum_elements_gradient,
    gradient_op=True,
    differentiable=False,
)


@gradient("SumElements")
def _sum_elements_grad(g: GradientContext) -> GradientOps:
    return g.single("SumElementsGradient", [g.I(0), g.GO(0)], [g.GI(0)], average=int(g.args["average"]))
