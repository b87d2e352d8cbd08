"""Index and selection ops: ArgMax, ArgMin, TopK, GatherElements/ScatterElements, GatherND/ScatterND,
Trilu, OneHot, Range, CumSum, NonZero, Compress and friends (schemas, shape inference, gradients).

Names and arguments follow ONNX, with Caffe2's where Caffe2 had the op (ArgMax/ArgMin: ``axis``
default -1, ``keepdims`` default 1; TopK: ``k`` as an argument, ``axis`` default -1). Integer
operands that ONNX passes as tensors (TopK's K, Trilu's k, CumSum's axis) may also be given as
arguments; an input overrides the argument.

Output shapes that depend on values (NonZero, Compress, Range, OneHot's depth, ConstantOfShape's
shape, TopK with K as an input) are inferred with unknown (None) dims.

Gradients: GatherElements and TopK scatter dY back with ScatterElements(reduction="add") into
ZerosLike of the input; GatherND likewise with ScatterND. ScatterElements/ScatterND (reduction
none or add) route dY to data (zeroed where updates overwrote it) and gather dY for the updates.
CumSum's gradient is CumSum in the other direction; CumProd's is CumProdGradient; Trilu's is
Trilu of dY; ReverseSequence is its own gradient; Compress has CompressGradient. ArgMax, ArgMin,
Hardmax, OneHot, Range, EyeLike, ConstantOfShape and NonZero have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import SchemaError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import (
    Arg,
    ArgType,
    TensorInfo,
    check,
    define,
    norm_axis,
)

INT32 = np.dtype(np.int32)
INT64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)
F32 = np.dtype(np.float32)

REDUCTIONS = ("none", "add", "mul", "max", "min")


def _check_int(op: str, what: str, info: TensorInfo) -> None:
    check(
        info.dtype is None or info.dtype in (INT32, INT64),
        f"{op}: {what} must be int32 or int64, got {dtypes.name(info.dtype)}",
    )


def _check_scalar_input(op: str, what: str, info: TensorInfo) -> None:
    check(
        info.shape is None or (len(info.shape) <= 1 and info.shape in ((), (1,), (None,))),
        f"{op}: {what} must hold one value, got shape {list(info.shape or ())}",
    )


# -- ArgMax / ArgMin ---------------------------------------------------------------------------------
def _infer_arg_reduce(op: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if x.shape is None:
            return [TensorInfo(None, INT64)]
        check(len(x.shape) >= 1, f"{op}: the input is a scalar; it needs an axis")
        axis = norm_axis(args["axis"], len(x.shape), op)
        check(x.shape[axis] != 0, f"{op}: axis {axis} of input shape {list(x.shape)} is empty")
        if args["keepdims"]:
            out = (*x.shape[:axis], 1, *x.shape[axis + 1 :])
        else:
            out = (*x.shape[:axis], *x.shape[axis + 1 :])
        return [TensorInfo(out, INT64)]

    return infer


for _name, _what in (("ArgMax", "largest"), ("ArgMin", "smallest")):
    define(
        _name,
        family="index",
        doc=f"Index (int64) of the {_what} element along `axis`; the first one among equals, or the "
        "last with select_last_index=1. keepdims=1 keeps the axis with size 1.",
        inputs=1,
        input_docs=[("X", "tensor of rank >= 1")],
        output_docs=[("Indices", "int64 indices")],
        args=[
            Arg("axis", ArgType.INT, -1, "the axis to reduce"),
            Arg("keepdims", ArgType.BOOL, True, "keep the reduced axis with size 1"),
            Arg("select_last_index", ArgType.BOOL, False, "among equal values, take the last"),
        ],
        infer=_infer_arg_reduce(_name),
        dtypes=dtypes.NUMERIC_TYPES,
        differentiable=False,
    )


# -- TopK --------------------------------------------------------------------------------------------
def _infer_topk(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if len(ins) > 1:
        _check_int("TopK", "K", ins[1])
        _check_scalar_input("TopK", "K", ins[1])
    else:
        check(args["k"] >= 0, f"TopK: k must be given (argument or input 1) and >= 0, got {args['k']}")
    if x.shape is None:
        return [TensorInfo(None, x.dtype), TensorInfo(None, INT64)][:n]
    check(len(x.shape) >= 1, "TopK: the input is a scalar; it needs an axis")
    axis = norm_axis(args["axis"], len(x.shape), "TopK")
    k = None if len(ins) > 1 else args["k"]
    if k is not None and x.shape[axis] is not None:
        check(k <= x.shape[axis], f"TopK: k={k} exceeds axis {axis} of input shape {list(x.shape)}")
    out = (*x.shape[:axis], k, *x.shape[axis + 1 :])
    return [TensorInfo(out, x.dtype), TensorInfo(out, INT64)][:n]


define(
    "TopK",
    family="index",
    doc="The k largest (or smallest, largest=0) elements along `axis` and their int64 indices, "
    "sorted (ties: lower index first). k comes from the argument or from input 1 (one int).",
    inputs=(1, 2),
    outputs=(1, 2),
    input_docs=[("X", "tensor of rank >= 1"), ("K", "1-element int64 (optional)")],
    output_docs=[("Values", "top k values"), ("Indices", "their int64 indices along axis")],
    args=[
        Arg("k", ArgType.INT, -1, "how many (input 1 overrides it)"),
        Arg("axis", ArgType.INT, -1, "the axis to select along"),
        Arg("largest", ArgType.BOOL, True, "the largest (else the smallest) elements"),
        Arg("sorted", ArgType.BOOL, True, "sorted output (kaffa always sorts)"),
    ],
    infer=_infer_topk,
    # int8 ... uint32 too; cpu also takes uint64, left out here because the conformance reference reads
    # integers as int64, which misorders uint64 values above 2**63.
    dtypes=tuple(d for d in dtypes.ALL_NUMERIC_TYPES if d != np.uint64),
    grad_outputs=(0,),
)


# -- GatherElements / ScatterElements -----------------------------------------------------------------
def _infer_gather_elements(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    data, idx = ins
    _check_int("GatherElements", "indices", idx)
    if data.shape is not None and idx.shape is not None:
        check(
            len(data.shape) == len(idx.shape) and len(data.shape) >= 1,
            f"GatherElements: data shape {list(data.shape)} and indices shape {list(idx.shape)} "
            "need one rank (>= 1)",
        )
        norm_axis(args["axis"], len(data.shape), "GatherElements")
    return [TensorInfo(idx.shape, data.dtype)]


define(
    "GatherElements",
    family="index",
    doc="out[i][j][k] = data[indices[i][j][k]][j][k] (for axis 0; likewise on other axes). "
    "Negative indices count from the end.",
    inputs=2,
    input_docs=[("data", "tensor of rank r >= 1"), ("indices", "int32/int64 of rank r")],
    output_docs=[("output", "indices' shape")],
    args=[Arg("axis", ArgType.INT, 0, "the axis to gather along")],
    infer=_infer_gather_elements,
    dtypes=dtypes.ALL_TYPES,
)


def _check_reduction(op: str):
    def canon(args: dict[str, Any]) -> dict[str, Any]:
        check(
            args["reduction"] in REDUCTIONS,
            f"{op}: reduction must be one of {', '.join(REDUCTIONS)}, got {args['reduction']!r}",
        )
        return args

    return canon


def _infer_scatter_elements(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    data, idx, upd = ins
    _check_int("ScatterElements", "indices", idx)
    if data.shape is not None and idx.shape is not None:
        check(
            len(data.shape) == len(idx.shape) and len(data.shape) >= 1,
            f"ScatterElements: data shape {list(data.shape)} and indices shape {list(idx.shape)} "
            "need one rank (>= 1)",
        )
        norm_axis(args["axis"], len(data.shape), "ScatterElements")
    if idx.shape is not None and upd.shape is not None:
        check(
            len(idx.shape) == len(upd.shape)
            and all(a is None or b is None or a == b for a, b in zip(idx.shape, upd.shape)),
            f"ScatterElements: indices shape {list(idx.shape)} and updates shape {list(upd.shape)} differ",
        )
    return [data]


define(
    "ScatterElements",
    family="index",
    doc="A copy of data with output[indices[i][j]][j] = updates[i][j] (for axis 0; likewise on other "
    "axes); reduction add/mul/max/min combines instead of overwriting. Negative indices count from "
    "the end.",
    inputs=3,
    input_docs=[
        ("data", "tensor of rank r >= 1"),
        ("indices", "int32/int64 of rank r"),
        ("updates", "indices' shape"),
    ],
    output_docs=[("output", "data's shape")],
    args=[
        Arg("axis", ArgType.INT, 0, "the axis to scatter along"),
        Arg("reduction", ArgType.STRING, "none", "none, add, mul, max or min"),
    ],
    canonicalize=_check_reduction("ScatterElements"),
    inplace={(0, 0)},
    infer=_infer_scatter_elements,
    dtypes=dtypes.ALL_TYPES,
)


# -- GatherND / ScatterND ---------------------------------------------------------------------------
def _infer_gather_nd(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    data, idx = ins
    _check_int("GatherND", "indices", idx)
    b = args["batch_dims"]
    check(b >= 0, f"GatherND: batch_dims must be >= 0, got {b}")
    if data.shape is None or idx.shape is None:
        return [TensorInfo(None, data.dtype)]
    check(len(idx.shape) >= 1, "GatherND: indices is a scalar; it needs a last dim")
    check(
        b < len(data.shape) and b < len(idx.shape),
        f"GatherND: batch_dims {b} needs data and indices of rank > {b}, got shapes "
        f"{list(data.shape)} and {list(idx.shape)}",
    )
    k = idx.shape[-1]
    if k is None:
        return [TensorInfo(None, data.dtype)]
    check(
        1 <= k <= len(data.shape) - b,
        f"GatherND: indices' last dim {k} must be in [1, {len(data.shape) - b}] for data shape "
        f"{list(data.shape)}",
    )
    return [TensorInfo((*idx.shape[:-1], *data.shape[b + k :]), data.dtype)]


define(
    "GatherND",
    family="index",
    doc="Slices of data addressed by the last dim of indices: out[i...] = data[b..., indices[i...]] "
    "(the first batch_dims dims shared by data and indices). Negative indices count from the end.",
    inputs=2,
    input_docs=[("data", "tensor"), ("indices", "int32/int64, last dim indexes data")],
    output_docs=[("output", "indices.shape[:-1] + data.shape[batch_dims + k:]")],
    args=[Arg("batch_dims", ArgType.INT, 0, "leading dims shared by data and indices")],
    infer=_infer_gather_nd,
    dtypes=dtypes.ALL_TYPES,
)


def _infer_scatter_nd(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    data, idx, upd = ins
    _check_int("ScatterND", "indices", idx)
    b = args["batch_dims"]
    check(b >= 0, f"ScatterND: batch_dims must be >= 0, got {b}")
    if (
        data.shape is not None
        and idx.shape is not None
        and upd.shape is not None
        and idx.shape[-1:] != (None,)
    ):
        check(len(idx.shape) >= 1, "ScatterND: indices is a scalar; it needs a last dim")
        k = idx.shape[-1]
        check(
            1 <= k <= len(data.shape) - b,
            f"ScatterND: indices' last dim {k} must be in [1, {len(data.shape) - b}] for data shape "
            f"{list(data.shape)}",
        )
        want = (*idx.shape[:-1], *data.shape[b + k :])
        check(
            len(upd.shape) == len(want)
            and all(a is None or c is None or a == c for a, c in zip(upd.shape, want)),
            f"ScatterND: updates shape {list(upd.shape)}, want {list(want)} (indices {list(idx.shape)}, "
            f"data {list(data.shape)})",
        )
    return [data]


define(
    "ScatterND",
    family="index",
    doc="A copy of data with output[indices[i...]] = updates[i...] (slices addressed by the last dim "
    "of indices); reduction add/mul/max/min combines instead of overwriting. batch_dims (a kaffa "
    "extension, default 0 as in ONNX) shares leading dims as GatherND does.",
    inputs=3,
    input_docs=[("data", "tensor"), ("indices", "int32/int64"), ("updates", "the slices")],
    output_docs=[("output", "data's shape")],
    args=[
        Arg("reduction", ArgType.STRING, "none", "none, add, mul, max or min"),
        Arg("batch_dims", ArgType.INT, 0, "leading dims shared by data and indices"),
    ],
    canonicalize=_check_reduction("ScatterND"),
    inplace={(0, 0)},
    infer=_infer_scatter_nd,
    dtypes=dtypes.ALL_TYPES,
)


# -- Trilu -------------------------------------------------------------------------------------------
def _infer_trilu(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if len(ins) > 1:
        _check_int("Trilu", "k", ins[1])
        _check_scalar_input("Trilu", "k", ins[1])
    if x.shape is not None:
        check(len(x.shape) >= 2, f"Trilu: input shape {list(x.shape)} needs rank >= 2")
    return [x]


define(
    "Trilu",
    family="index",
    doc="The upper (upper=1: j - i >= k) or lower (upper=0: j - i <= k) triangle of the last two "
    "dims, zeros elsewhere. k comes from the argument or from input 1 (one int).",
    inputs=(1, 2),
    input_docs=[("X", "tensor of rank >= 2"), ("k", "int64 scalar diagonal offset (optional)")],
    output_docs=[("Y", "X's shape")],
    args=[
        Arg("upper", ArgType.BOOL, True, "keep the upper triangle"),
        Arg("k", ArgType.INT, 0, "diagonal offset"),
    ],
    inplace={(0, 0)},
    infer=_infer_trilu,
    dtypes=dtypes.ALL_TYPES,
)


# -- OneHot ------------------------------------------------------------------------------------------
def _infer_one_hot(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    idx, depth, values = ins
    _check_scalar_input("OneHot", "depth", depth)
    if values.shape is not None:
        check(
            values.shape in ((2,), (None,)), f"OneHot: values must have shape [2], got {list(values.shape)}"
        )
    if idx.shape is None:
        return [TensorInfo(None, values.dtype)]
    rank = len(idx.shape) + 1
    axis = norm_axis(args["axis"], rank, "OneHot")
    return [TensorInfo((*idx.shape[:axis], None, *idx.shape[axis:]), values.dtype)]


define(
    "OneHot",
    family="index",
    doc="values[1] where the position along the new axis `axis` equals the index, values[0] "
    "elsewhere; output shape indices.shape with depth inserted at axis. Indices in [-depth, depth) "
    "(negative count from the end); others give an all-off row.",
    inputs=3,
    input_docs=[("indices", "numeric"), ("depth", "scalar number of classes"), ("values", "[off, on]")],
    output_docs=[("output", "values' dtype")],
    args=[Arg("axis", ArgType.INT, -1, "where the one-hot axis goes in the output")],
    infer=_infer_one_hot,
    dtypes=dtypes.ALL_TYPES,
    type_input=2,
    differentiable=False,
)


# -- Range -------------------------------------------------------------------------------------------
def _infer_range(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    for i, what in enumerate(("start", "limit", "delta")):
        _check_scalar_input("Range", what, ins[i])
    dt = [i.dtype for i in ins if i.dtype is not None]
    check(all(d == dt[0] for d in dt), f"Range: start, limit, delta must share one dtype, got {dt}")
    return [TensorInfo((None,), dt[0] if dt else None)]


define(
    "Range",
    family="index",
    doc="start, start + delta, ... while < limit (> limit for negative delta): "
    "max(ceil((limit - start) / delta), 0) elements.",
    inputs=3,
    input_docs=[("start", "scalar"), ("limit", "scalar, exclusive"), ("delta", "scalar step")],
    output_docs=[("output", "1-D, the inputs' dtype")],
    infer=_infer_range,
    dtypes=dtypes.NUMERIC_TYPES,
    differentiable=False,
)


# -- CumSum / CumProd ---------------------------------------------------------------------------------
_CUM_ARGS = [
    Arg("axis", ArgType.INT, 0, "the axis (input 1 overrides it)"),
    Arg("exclusive", ArgType.BOOL, False, "leave out the element itself (the first is 0, or 1)"),
    Arg("reverse", ArgType.BOOL, False, "accumulate from the end"),
]


def _infer_cum(op: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x = ins[0]
        if len(ins) > 1:
            _check_int(op, "axis", ins[1])
            _check_scalar_input(op, "axis", ins[1])
        if x.shape is not None:
            check(len(x.shape) >= 1, f"{op}: the input is a scalar; it needs an axis")
            if len(ins) == 1:
                norm_axis(args["axis"], len(x.shape), op)
        return [x]

    return infer


for _name, _what in (("CumSum", "sum"), ("CumProd", "product")):
    define(
        _name,
        family="index",
        doc=f"Cumulative {_what} along `axis` (or the int scalar input 1); exclusive=1 leaves out the "
        "element itself, reverse=1 runs from the end.",
        inputs=(1, 2),
        input_docs=[("x", "tensor of rank >= 1"), ("axis", "int32/int64 scalar (optional)")],
        output_docs=[("y", "x's shape")],
        args=_CUM_ARGS,
        inplace={(0, 0)},
        infer=_infer_cum(_name),
        dtypes=dtypes.NUMERIC_TYPES,
    )


def _infer_cumprod_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    return [ins[0]]


define(
    "CumProdGradient",
    family="index",
    doc="dx_i = sum_j dy_j * prod over the factors of y_j other than x_i (exact with zeros in x).",
    inputs=(3, 4),
    input_docs=[("x", "forward input"), ("y", "forward output"), ("dy", "gradient"), ("axis", "(optional)")],
    output_docs=[("dx", "gradient of x")],
    args=_CUM_ARGS,
    infer=_infer_cumprod_grad,
    dtypes=dtypes.FLOAT_TYPES,
    gradient_op=True,
    differentiable=False,
)


# -- EyeLike, ConstantOfShape ------------------------------------------------------------------------
def _infer_eye_like(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is not None:
        check(len(x.shape) == 2, f"EyeLike: input shape {list(x.shape)} must be 2-D")
    return [TensorInfo(x.shape, args["dtype"] or x.dtype)]


define(
    "EyeLike",
    family="index",
    doc="A 2-D tensor of X's shape with ones on the k-th diagonal (k > 0 above the main one), zeros "
    "elsewhere, in `dtype` (default X's).",
    inputs=1,
    input_docs=[("X", "2-D tensor (only its shape is read)")],
    output_docs=[("Y", "identity-like")],
    args=[
        Arg("k", ArgType.INT, 0, "the diagonal"),
        Arg("dtype", ArgType.DTYPE, None, "output dtype (default: X's)"),
    ],
    infer=_infer_eye_like,
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)


def _infer_constant_of_shape(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    s = ins[0]
    _check_int("ConstantOfShape", "shape", s)
    if s.shape is not None:
        check(len(s.shape) == 1, f"ConstantOfShape: shape must be 1-D, got shape {list(s.shape)}")
        if s.shape[0] is not None:
            return [TensorInfo((None,) * s.shape[0], args["dtype"])]
    return [TensorInfo(None, args["dtype"])]


define(
    "ConstantOfShape",
    family="index",
    doc="A tensor of the shape held in input 0 (1-D int64), filled with `value` cast to `dtype`.",
    inputs=1,
    input_docs=[("shape", "1-D int64 dims")],
    output_docs=[("output", "filled tensor")],
    args=[
        Arg("value", ArgType.FLOAT, 0.0, "the fill value"),
        Arg("dtype", ArgType.DTYPE, F32, "output dtype"),
    ],
    infer=_infer_constant_of_shape,
    dtypes=dtypes.ALL_TYPES,
    type_input=None,
    differentiable=False,
)


# -- NonZero, Compress -------------------------------------------------------------------------------
def _infer_nonzero(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    return [TensorInfo(None if x.shape is None else (len(x.shape), None), INT64)]


define(
    "NonZero",
    family="index",
    doc="The int64 indices of the non-zero elements, [rank, count], in row-major order (np.nonzero).",
    inputs=1,
    input_docs=[("X", "tensor")],
    output_docs=[("Y", "int64 [rank(X), count]")],
    infer=_infer_nonzero,
    dtypes=dtypes.ALL_TYPES,
    differentiable=False,
)


def _infer_compress(op: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x, cond = ins[0], ins[1]
        check(
            cond.dtype is None or cond.dtype == BOOL,
            f"{op}: condition must be bool, got {dtypes.name(cond.dtype)}",
        )
        if cond.shape is not None:
            check(len(cond.shape) == 1, f"{op}: condition must be 1-D, got shape {list(cond.shape)}")
        if op == "CompressGradient":
            return [TensorInfo(x.shape, ins[2].dtype)]
        if args["axis"] is None:
            return [TensorInfo((None,), x.dtype)]
        if x.shape is None:
            return [TensorInfo(None, x.dtype)]
        axis = norm_axis(args["axis"], len(x.shape), op)
        return [TensorInfo((*x.shape[:axis], None, *x.shape[axis + 1 :]), x.dtype)]

    return infer


_COMPRESS_ARGS = [Arg("axis", ArgType.INT, None, "the axis (default: the flattened input)")]

define(
    "Compress",
    family="index",
    doc="The slices of input along `axis` (or elements of the flattened input) where condition is "
    "true; condition may be shorter than the axis (the rest is dropped).",
    inputs=2,
    input_docs=[("input", "tensor"), ("condition", "1-D bool")],
    output_docs=[("output", "selected slices")],
    args=_COMPRESS_ARGS,
    infer=_infer_compress("Compress"),
    dtypes=dtypes.ALL_TYPES,
)

define(
    "CompressGradient",
    family="index",
    doc="Zeros of input's shape with dY placed at the slices Compress selected.",
    inputs=3,
    input_docs=[("input", "forward input (for its shape)"), ("condition", "1-D bool"), ("dY", "gradient")],
    output_docs=[("dX", "gradient of input")],
    args=_COMPRESS_ARGS,
    infer=_infer_compress("CompressGradient"),
    dtypes=dtypes.FLOAT_TYPES,
    type_input=2,
    gradient_op=True,
    differentiable=False,
)


# -- Hardmax, ReverseSequence ---------------------------------------------------------------------------
def _infer_hardmax(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    if x.shape is not None:
        check(len(x.shape) >= 1, "Hardmax: the input is a scalar; it needs an axis")
        norm_axis(args["axis"], len(x.shape), "Hardmax")
    return [x]


define(
    "Hardmax",
    family="index",
    doc="1 at the first maximum along `axis`, 0 elsewhere (same dtype).",
    inputs=1,
    input_docs=[("input", "tensor")],
    output_docs=[("output", "one-hot of the argmax")],
    args=[Arg("axis", ArgType.INT, -1, "the axis")],
    infer=_infer_hardmax,
    dtypes=dtypes.NUMERIC_TYPES,
    differentiable=False,
)


def _infer_reverse_sequence(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, lens = ins
    _check_int("ReverseSequence", "sequence_lens", lens)
    b, t = args["batch_axis"], args["time_axis"]
    check({b, t} == {0, 1}, f"ReverseSequence: batch_axis {b} and time_axis {t} must be 0 and 1")
    if x.shape is not None:
        check(len(x.shape) >= 2, f"ReverseSequence: input shape {list(x.shape)} needs rank >= 2")
        if lens.shape is not None:
            check(
                len(lens.shape) == 1
                and (lens.shape[0] is None or x.shape[b] is None or lens.shape[0] == x.shape[b]),
                f"ReverseSequence: sequence_lens shape {list(lens.shape)} does not match batch axis {b} "
                f"of input shape {list(x.shape)}",
            )
    return [x]


define(
    "ReverseSequence",
    family="index",
    doc="For each batch entry b, reverse the first sequence_lens[b] steps along time_axis; the rest "
    "is copied.",
    inputs=2,
    input_docs=[("input", "tensor of rank >= 2"), ("sequence_lens", "int64 [batch]")],
    output_docs=[("Y", "input's shape")],
    args=[
        Arg("batch_axis", ArgType.INT, 1, "the batch axis (0 or 1)"),
        Arg("time_axis", ArgType.INT, 0, "the time axis (1 or 0)"),
    ],
    infer=_infer_reverse_sequence,
    dtypes=dtypes.ALL_TYPES,
)


# -- gradient makers -------------------------------------------------------------------------------
def _scatter_back(g: GradientContext, like: str, idx: str, grad: str, out: str, op: str, **args: Any) -> list:
    zeros = g.temp("zeros")
    return [
        g.make("ZerosLike", [like], [zeros]),
        g.make(op, [zeros, idx, grad], [out], reduction="add", **args),
    ]


@gradient("TopK")
def _topk_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:
        return GradientOps([], [None] * g.num_inputs)
    if g.num_outputs < 2:
        raise SchemaError("the gradient of TopK needs its Indices output (give TopK two outputs)")
    ops = _scatter_back(g, g.I(0), g.O(1), g.GO(0), g.GI(0), "ScatterElements", axis=g.args["axis"])
    return GradientOps(ops, [g.GI(0)] + [None] * (g.num_inputs - 1))


@gradient("GatherElements")
def _gather_elements_grad(g: GradientContext) -> GradientOps:
    ops = _scatter_back(g, g.I(0), g.I(1), g.GO(0), g.GI(0), "ScatterElements", axis=g.args["axis"])
    return GradientOps(ops, [g.GI(0), None])


@gradient("GatherND")
def _gather_nd_grad(g: GradientContext) -> GradientOps:
    ops = _scatter_back(g, g.I(0), g.I(1), g.GO(0), g.GI(0), "ScatterND", batch_dims=g.args["batch_dims"])
    return GradientOps(ops, [g.GI(0), None])


def _scatter_grad(gather: str, extra: dict[str, Any]):
    def maker(g: GradientContext) -> GradientOps:
        red = g.args["reduction"]
        if red not in ("none", "add"):
            raise SchemaError(f"{g.op.type} has a gradient only for reduction none or add, not {red!r}")
        ops = []
        if red == "add":
            ops.append(g.make("Copy", [g.GO(0)], [g.GI(0)]))
        else:  # overwritten positions get no gradient
            zeros = g.temp("zeros")
            ops.append(g.make("ZerosLike", [g.I(2)], [zeros]))
            ops.append(g.make(g.op.type, [g.GO(0), g.I(1), zeros], [g.GI(0)], **extra(g)))
        ops.append(g.make(gather, [g.GO(0), g.I(1)], [g.GI(2)], **extra(g)))
        return GradientOps(ops, [g.GI(0), None, g.GI(2)])

    return maker


gradient("ScatterElements")(_scatter_grad("GatherElements", lambda g: {"axis": g.args["axis"]}))
gradient("ScatterND")(_scatter_grad("GatherND", lambda g: {"batch_dims": g.args["batch_dims"]}))


@gradient("Trilu")
def _trilu_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "Trilu",
        [g.GO(0), *g.op.input[1:]],
        [g.GI(0)],
        [g.GI(0)] + [None] * (g.num_inputs - 1),
        **g.forward_args(),
    )


@gradient("CumSum")
def _cumsum_grad(g: GradientContext) -> GradientOps:
    args = {**g.forward_args(), "reverse": int(not g.args["reverse"])}
    return g.single(
        "CumSum", [g.GO(0), *g.op.input[1:]], [g.GI(0)], [g.GI(0)] + [None] * (g.num_inputs - 1), **args
    )


@gradient("CumProd")
def _cumprod_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "CumProdGradient",
        [g.I(0), g.O(0), g.GO(0), *g.op.input[1:]],
        [g.GI(0)],
        [g.GI(0)] + [None] * (g.num_inputs - 1),
        **g.forward_args(),
    )


@gradient("Compress")
def _compress_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "CompressGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)], [g.GI(0), None], **g.forward_args()
    )


@gradient("ReverseSequence")
def _reverse_sequence_grad(g: GradientContext) -> GradientOps:
    return g.single("ReverseSequence", [g.GO(0), g.I(1)], [g.GI(0)], [g.GI(0), None], **g.forward_args())
