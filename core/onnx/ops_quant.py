"""Translators for ONNX quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, BitCast (one kaffa op each, kaffa.ops.quant).

kaffa's ops take the output dtype as an argument (``to``) rather than from the zero point's dtype,
so a zero point that the init net stores widened (GivenTensorIntFill holds int32) still quantizes
to the right type; constants of types no GivenTensor*Fill holds (uint8, int4, float8, ...) are
stored widened and cast back by the predict net.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes as _dt
from kaffa.onnx.importer import Context, Node, translator, unsupported
from kaffa.onnx.ops_nn import _window

_FILLABLE = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_))


def _onnx_dtype(code: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(int(code)))


def _code(dtype: np.dtype) -> int:
    try:
        return _dt.from_numpy(dtype)
    except ValueError:
        raise unsupported(f"dtype {dtype} has no kaffa equivalent") from None


def _typed(ctx: Context, name: str) -> str:
    """``name``, or for a constant no GivenTensor*Fill holds, a widened copy cast back to its dtype."""
    value = ctx.const(name)
    if value is None or value.dtype in _FILLABLE:
        return name
    wide = np.int64 if _dt.is_int(value.dtype) else np.float32  # holds every value exactly
    stored = ctx.add_const(name + "_stored", value.astype(wide))
    out = ctx.temp(name + "_typed")
    ctx.op("Cast", [stored], [out], to=_code(value.dtype))
    return out


def _present(ctx: Context, node: Node, count: int, zero_like: dict[int, int] | None = None) -> list[str]:
    """The first ``count`` inputs without trailing omitted ones; an omitted input before a present
    one becomes a zero of the dtype of the input ``zero_like`` names for it."""
    names = [node.input(i) for i in range(count)]
    while names and not names[-1]:
        names.pop()
    out = []
    for i, n in enumerate(names):
        if n:
            out.append(_typed(ctx, n))
            continue
        like = (zero_like or {}).get(i)
        dtype = ctx.dtype(node.input(like)) if like is not None else None
        if dtype is None:
            raise unsupported(f"input {i} is omitted and its dtype cannot be inferred")
        out.append(_typed(ctx, ctx.add_const(f"{node.name}_zero{i}", np.zeros((), dtype))))
    return out


def _axis_args(node: Node, ctx: Context) -> dict:
    args: dict = {}
    if ctx.opset >= 13:
        args["axis"] = int(node.attr("axis", 1))
    if node.attr("block_size", 0):
        args["block_size"] = int(node.attr("block_size"))
    return args


@translator("QuantizeLinear")
def _quantize(ctx: Context, node: Node) -> None:
    if node.attr("precision", 0):
        raise unsupported("the precision attribute")
    zp = node.input(2)
    if zp:
        to = ctx.dtype(zp)
        if to is None:
            raise unsupported(f"the dtype of y_zero_point '{zp}' is unknown")
    elif node.attr("output_dtype", 0):
        to = _onnx_dtype(node.attr("output_dtype"))
    else:
        to = np.dtype(np.uint8)
    args = _axis_args(node, ctx)
    if not node.attr("saturate", 1):
        args["saturate"] = False
    ctx.op("QuantizeLinear", _present(ctx, node, 3), node.outputs[:1], to=_code(np.dtype(to)), **args)


@translator("DequantizeLinear")
def _dequantize(ctx: Context, node: Node) -> None:
    args = _axis_args(node, ctx)
    if node.attr("output_dtype", 0):
        args["to"] = _code(_onnx_dtype(node.attr("output_dtype")))
    ctx.op("DequantizeLinear", _present(ctx, node, 3), node.outputs[:1], **args)


@translator("DynamicQuantizeLinear")
def _dynamic_quantize(ctx: Context, node: Node) -> None:
    outs = list(node.outputs)
    for k in range(3):  # kaffa's op always has its three outputs
        if k >= len(outs) or not outs[k]:
            outs[k : k + 1] = [ctx.temp(f"{node.name}_unused{k}")]
    ctx.op("DynamicQuantizeLinear", node.inputs[:1], outs[:3])


@translator("MatMulInteger")
def _matmul_integer(ctx: Context, node: Node) -> None:
    ctx.op("MatMulInteger", _present(ctx, node, 4, {2: 0, 3: 1}), node.outputs[:1])


@translator("QLinearMatMul")
def _qlinear_matmul(ctx: Context, node: Node) -> None:
    ctx.op("QLinearMatMul", _present(ctx, node, 8), node.outputs[:1])


def _conv_args(ctx: Context, node: Node, w: str) -> dict:
    w_shape = ctx.shape(w)
    kernels = node.attr("kernel_shape") or (list(w_shape[2:]) if w_shape is not None else None)
    if kernels is None or any(k is None for k in kernels):
        raise unsupported("the kernel size is unknown (no kernel_shape and no static filter shape)")
    return {**_window(ctx, node, len(kernels), kernels), "group": int(node.attr("group", 1))}


@translator("ConvInteger")
def _conv_integer(ctx: Context, node: Node) -> None:
    args = _conv_args(ctx, node, node.inputs[1])
    ctx.op("ConvInteger", _present(ctx, node, 4, {2: 0, 3: 1}), node.outputs[:1], **args)


@translator("QLinearConv")
def _qlinear_conv(ctx: Context, node: Node) -> None:
    args = _conv_args(ctx, node, node.inputs[3])
    ctx.op("QLinearConv", _present(ctx, node, 9), node.outputs[:1], **args)


@translator("BitCast")
def _bitcast(ctx: Context, node: Node) -> None:
    to = _onnx_dtype(node.attr("to"))
    if to.kind == "O":
        raise unsupported("BitCast to STRING")
    ctx.op("BitCast", node.inputs[:1], node.outputs[:1], to=_code(to))
