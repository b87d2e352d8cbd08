"""ONNX translators onto the index family (see kaffa.ops.index).

ArgMax, ArgMin, TopK, GatherElements, ScatterElements (and the deprecated Scatter), GatherND,
ScatterND, Trilu, OneHot, Range, CumSum, CumProd, EyeLike, ConstantOfShape, NonZero, Compress,
Hardmax, ReverseSequence: each onto the kaffa op of the same name. Integer operands ONNX passes as
tensors (TopK's K, CumSum's axis) become arguments when they are constants and stay inputs
otherwise. Hardmax before opset 13 (the input coerced to 2-D at `axis`) becomes Flatten -> Hardmax
-> ResizeLike.
"""

from __future__ import annotations

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported


@translator("ArgMax", "ArgMin")
def _arg_reduce(ctx: Context, node: Node) -> None:
    ctx.op(
        node.op_type,
        node.inputs[:1],
        node.outputs[:1],
        axis=int(node.attr("axis", 0)),
        keepdims=int(node.attr("keepdims", 1)),
        select_last_index=int(node.attr("select_last_index", 0)),
    )


@translator("TopK")
def _top_k(ctx: Context, node: Node) -> None:
    ins = node.inputs[:1]
    k = None
    if ctx.opset < 10:
        k = int(node.attr("k"))
    else:
        value = ctx.const(node.input(1))
        if value is not None:
            k = int(np.asarray(value).reshape(-1)[0])
        else:
            ins = [node.inputs[0], node.inputs[1]]
    ctx.op(
        "TopK",
        ins,
        node.outputs[:2],
        k=k,
        axis=int(node.attr("axis", -1)),
        largest=int(node.attr("largest", 1)),
        sorted=int(node.attr("sorted", 1)),
    )


@translator("GatherElements")
def _gather_elements(ctx: Context, node: Node) -> None:
    ctx.op("GatherElements", node.inputs[:2], node.outputs[:1], axis=int(node.attr("axis", 0)))


@translator("ScatterElements", "Scatter")
def _scatter_elements(ctx: Context, node: Node) -> None:
    ctx.op(
        "ScatterElements",
        node.inputs[:3],
        node.outputs[:1],
        axis=int(node.attr("axis", 0)),
        reduction=str(node.attr("reduction", "none")),
    )


@translator("GatherND")
def _gather_nd(ctx: Context, node: Node) -> None:
    ctx.op("GatherND", node.inputs[:2], node.outputs[:1], batch_dims=int(node.attr("batch_dims", 0)))


@translator("ScatterND")
def _scatter_nd(ctx: Context, node: Node) -> None:
    ctx.op("ScatterND", node.inputs[:3], node.outputs[:1], reduction=str(node.attr("reduction", "none")))


@translator("Trilu")
def _trilu(ctx: Context, node: Node) -> None:
    ins = [node.inputs[0]]
    k = None
    if node.input(1):
        value = ctx.const(node.input(1))
        if value is not None:
            k = int(np.asarray(value).reshape(-1)[0])
        else:
            ins.append(node.inputs[1])
    ctx.op("Trilu", ins, node.outputs[:1], upper=int(node.attr("upper", 1)), k=k)


@translator("OneHot")
def _one_hot(ctx: Context, node: Node) -> None:
    ctx.op("OneHot", node.inputs[:3], node.outputs[:1], axis=int(node.attr("axis", -1)))


@translator("Range")
def _range(ctx: Context, node: Node) -> None:
    ctx.op("Range", node.inputs[:3], node.outputs[:1])


@translator("CumSum", "CumProd")
def _cum(ctx: Context, node: Node) -> None:
    ins = [node.inputs[0]]
    value = ctx.const(node.input(1))
    axis = None
    if value is not None:
        axis = int(np.asarray(value).reshape(-1)[0])
    elif node.input(1):
        ins.append(node.inputs[1])
    ctx.op(
        node.op_type,
        ins,
        node.outputs[:1],
        axis=axis,
        exclusive=int(node.attr("exclusive", 0)),
        reverse=int(node.attr("reverse", 0)),
    )


@translator("EyeLike")
def _eye_like(ctx: Context, node: Node) -> None:
    dtype = None
    if node.attr("dtype") is not None:
        from onnx import helper

        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attr("dtype"))))
    ctx.op("EyeLike", node.inputs[:1], node.outputs[:1], k=int(node.attr("k", 0)), dtype=dtype)


@translator("ConstantOfShape")
def _constant_of_shape(ctx: Context, node: Node) -> None:
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    if value.size != 1:
        raise unsupported(f"a value of shape {list(value.shape)} (one element expected)")
    ctx.op(
        "ConstantOfShape",
        node.inputs[:1],
        node.outputs[:1],
        value=float(value.reshape(())),
        dtype=value.dtype,
    )


@translator("NonZero")
def _non_zero(ctx: Context, node: Node) -> None:
    ctx.op("NonZero", node.inputs[:1], node.outputs[:1])


@translator("Compress")
def _compress(ctx: Context, node: Node) -> None:
    axis = node.attr("axis")
    ctx.op("Compress", node.inputs[:2], node.outputs[:1], axis=None if axis is None else int(axis))


@translator("Hardmax")
def _hardmax(ctx: Context, node: Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    if ctx.opset >= 13:
        ctx.op("Hardmax", [x], [y], axis=int(node.attr("axis", -1)))
        return
    # Before 13: coerced to 2-D at `axis` (default 1); the max runs over the flattened tail.
    rank = ctx.rank(x, " (Hardmax before opset 13 coerces it to 2-D)")
    axis = int(node.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        raise unsupported(f"axis {node.attr('axis')} is out of range for rank {rank}")
    if rank == 2 and axis == 1:
        ctx.op("Hardmax", [x], [y], axis=1)
        return
    flat, hard = ctx.temp(x + "_2d"), ctx.temp(y + "_2d")
    ctx.op("Flatten", [x], [flat], axis=axis)
    ctx.op("Hardmax", [flat], [hard], axis=1)
    ctx.op("ResizeLike", [hard, x], [y])


@translator("ReverseSequence")
def _reverse_sequence(ctx: Context, node: Node) -> None:
    ctx.op(
        "ReverseSequence",
        node.inputs[:2],
        node.outputs[:1],
        batch_axis=int(node.attr("batch_axis", 1)),
        time_axis=int(node.attr("time_axis", 0)),
    )
