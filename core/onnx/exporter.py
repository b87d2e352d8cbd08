"""kaffa -> ONNX: ``export_model`` and one small function per kaffa op type.

    model = export_model(init_net, predict_net, inputs={"data": (np.float32, ("N", 3, 224, 224))})

The init net is run once on cpu to get the parameter values; they become initializers. Shapes
flow through the predict net by kaffa's own shape inference, so an exporter knows the ranks it
needs (Softmax's coerced-2D axis, FC's flatten axis). A dim given as a string (or None) in
``inputs`` stays symbolic in the ONNX graph.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaffa import dtypes as _dt
from kaffa.errors import KaffaError, ModelFormatError
from kaffa.ops.geometry import CAFFE_LEGACY_POOLING, SAME, VALID, Window, split_pads
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import SCHEMAS, TensorInfo, infer_net

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "OnnxExportError", "export_model", "exporter"]

DEFAULT_OPSET = 17
_I64_MAX = 2**63 - 1


class OnnxExportError(ModelFormatError):
    """A kaffa net (or an op of it) cannot be written as ONNX."""


class _Unexportable(Exception):
    pass


ExportFn = Callable[["_Ctx", OperatorDef, dict[str, Any]], None]
EXPORTERS: dict[str, ExportFn] = {}


def exporter(*op_types: str) -> Callable[[ExportFn], ExportFn]:
    """Register an exporter for kaffa op types. It gets the context, the op and its parsed
    (canonical) arguments, and adds ONNX nodes with ``ctx.node``."""

    def register(fn: ExportFn) -> ExportFn:
        for t in op_types:
            EXPORTERS[t] = fn
        return fn

    return register


class _Ctx:
    def __init__(self, opset: int, params: dict[str, np.ndarray], infos: dict[str, TensorInfo]):
        from onnx import helper

        self.helper = helper
        self.opset = opset
        self.params = params
        self.infos = infos
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.taken: set[str] = set(params) | set(infos)
        self._count = 0

    def temp(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}__onnx{self._count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        name = self.temp(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def i64(self, hint: str, values: Sequence[int]) -> str:
        return self.const(hint, np.asarray(values, dtype=np.int64))

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: Any) -> None:
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), list(outputs), **attrs))

    def info(self, name: str) -> TensorInfo:
        return self.infos.get(name, TensorInfo())

    def rank(self, name: str) -> int:
        shape = self.info(name).shape
        if shape is None:
            raise _Unexportable(f"the rank of '{name}' is unknown (give the input shapes)")
        return len(shape)

    def dtype(self, name: str) -> np.dtype:
        return self.info(name).dtype or np.dtype(np.float32)

    def param(self, name: str) -> np.ndarray | None:
        return self.params.get(name)


def _fail(reason: str) -> _Unexportable:
    return _Unexportable(reason)


# -- layers ----------------------------------------------------------------------------------------
def _window_attrs(ctx: _Ctx, x: str, args: dict[str, Any], kernels: Sequence[int], pool: bool) -> dict:
    n = len(kernels)
    win = Window.from_args(args, n, kernels=list(kernels))
    attrs: dict[str, Any] = {"kernel_shape": list(win.kernels), "strides": list(win.strides)}
    if any(d != 1 for d in win.dilations):
        attrs["dilations"] = list(win.dilations)
    if win.legacy_pad == VALID:
        attrs["auto_pad"] = "VALID"
    elif win.legacy_pad == SAME:
        attrs["auto_pad"] = "SAME_UPPER"
    elif win.legacy_pad == CAFFE_LEGACY_POOLING:
        shape = ctx.info(x).shape
        sizes = None if shape is None else shape[2:]
        if sizes is None or any(s is None for s in sizes):
            # Caffe's ceil mode; ONNX's differs only for a last window starting past the input.
            attrs["ceil_mode"] = 1
            attrs["pads"] = [*win.pads_begin, *win.pads_end]
        else:
            # Explicit end pads reproduce Caffe's output size exactly; pooling ignores padding.
            _, begins, ends = win.resolve([int(s) for s in sizes])  # type: ignore[arg-type]
            attrs["pads"] = [*begins, *ends]
            if pool and args.get("count_include_pad") and tuple(ends) != tuple(win.pads_end):
                raise _fail("count_include_pad with Caffe ceil-mode overhang")
    else:
        attrs["pads"] = [*win.pads_begin, *win.pads_end]
    return attrs


def _nchw(args: dict[str, Any], what: str) -> None:
    if args.get("order", "NCHW") != "NCHW":
        raise _fail(f"{what} in {args['order']} order (ONNX is NCHW)")


@exporter("Conv", "FusedConv")
def _conv(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, op.type)
    w = ctx.info(op.input[1]).shape
    kernels = args.get("kernels") or (None if w is None else list(w[2:]))
    if kernels is None or any(k is None for k in kernels):
        raise _fail("the kernel size is unknown")
    if len(kernels) == 1 and w is not None:
        kernels = list(kernels) * (len(w) - 2)
    attrs = _window_attrs(ctx, op.input[0], args, kernels, pool=False)
    if op.type == "Conv":
        ctx.node("Conv", list(op.input), op.output[:1], group=int(args["group"]), **attrs)
        return
    # FusedConv (written by kaffa.passes for the cpu backend) goes out as the standard nodes it
    # stands for: Conv, then Add of Z, then Relu or Clip.
    y, act = op.output[0], args["activation"]
    conv_out = ctx.temp(y + "_conv") if len(op.input) > 3 or act else y
    ctx.node("Conv", list(op.input[:3]), [conv_out], group=int(args["group"]), **attrs)
    if len(op.input) > 3:
        summed = ctx.temp(y + "_sum") if act else y
        ctx.node("Add", [conv_out, op.input[3]], [summed])
        conv_out = summed
    if act == "Relu":
        ctx.node("Relu", [conv_out], [y])
    elif act == "Clip":
        dtype = ctx.dtype(op.input[0])
        lo = ctx.const(y + "_min", np.asarray(args["min"]).astype(dtype))
        hi = ctx.const(y + "_max", np.asarray(args["max"]).astype(dtype))
        ctx.node("Clip", [conv_out, lo, hi], [y])


@exporter("ConvTranspose")
def _conv_transpose(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, "ConvTranspose")
    w = ctx.info(op.input[1]).shape
    if w is None or any(k is None for k in w[2:]):
        raise _fail("the kernel size is unknown")
    kernels = [int(k) for k in w[2:]]  # type: ignore[union-attr]
    if args.get("legacy_pad") in (VALID, SAME):
        args = {**args, "pads": [0], "legacy_pad": 0}
    attrs = _window_attrs(ctx, op.input[0], args, kernels, pool=False)
    adjs = args.get("adjs") or [0]
    adjs = adjs * len(kernels) if len(adjs) == 1 else adjs
    ctx.node(
        "ConvTranspose",
        list(op.input),
        op.output[:1],
        group=int(args["group"]),
        output_padding=[int(a) for a in adjs] if any(adjs) else None,
        **attrs,
    )


def _pool(onnx_type: str):
    def export(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
        _nchw(args, op.type)
        x = op.input[0]
        if args["global_pooling"]:
            ctx.node(f"Global{onnx_type}", [x], op.output[:1])
            return
        kernels = list(args["kernels"])
        if len(kernels) == 1:
            kernels = kernels * (ctx.rank(x) - 2)
        attrs = _window_attrs(ctx, x, args, kernels, pool=True)
        if onnx_type == "AveragePool":
            attrs["count_include_pad"] = int(bool(args.get("count_include_pad")))
            if "dilations" in attrs:
                raise _fail("dilated AveragePool")
        ctx.node(onnx_type, [x], op.output[:1], **attrs)

    return export


exporter("MaxPool")(_pool("MaxPool"))
exporter("AveragePool")(_pool("AveragePool"))


@exporter("SpatialBN")
def _spatial_bn(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, "SpatialBN")
    if not args["is_test"] and len(op.output) > 1:
        raise _fail("training-mode SpatialBN (export an is_test=1 net)")
    ctx.node("BatchNormalization", list(op.input[:5]), op.output[:1], epsilon=float(args["epsilon"]))


@exporter("LayerNorm")
def _layer_norm(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    shape = ctx.info(x).shape
    rank = ctx.rank(x)
    axis = args["axis"] + rank if args["axis"] < 0 else args["axis"]
    norm = shape[axis:]  # type: ignore[index]
    if any(d is None for d in norm):
        raise _fail("the normalized dims must be static")
    dtype = ctx.dtype(x)
    if args["elementwise_affine"]:
        scale, bias = op.input[1], op.input[2]
        for name in (scale, bias):
            if ctx.param(name) is None:
                raise _fail(f"LayerNorm's '{name}' must be a parameter")
        s = ctx.const(scale + "_nd", ctx.param(scale).reshape(norm))  # type: ignore[union-attr]
        b = ctx.const(bias + "_nd", ctx.param(bias).reshape(norm))  # type: ignore[union-attr]
    else:
        s = ctx.const(x + "_ones", np.ones(norm, dtype))
        b = ctx.const(x + "_zeros", np.zeros(norm, dtype))
    ctx.node("LayerNormalization", [x, s, b], op.output[:1], axis=axis, epsilon=float(args["epsilon"]))


@exporter("LRN")
def _lrn(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, "LRN")
    if args["size"] % 2 == 0:
        raise _fail("an even LRN size (ONNX's window is not centred the same way)")
    ctx.node(
        "LRN",
        op.input[:1],
        op.output[:1],
        size=int(args["size"]),
        alpha=float(args["alpha"]),
        beta=float(args["beta"]),
        bias=float(args["bias"]),
    )


@exporter("FC")
def _fc(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x, w = op.input[0], op.input[1]
    b = op.input[2] if len(op.input) > 2 else None
    out = op.output[0]
    rank = ctx.rank(x)
    axis = args["axis"] + rank if args["axis"] < 0 else args["axis"]
    w_val = ctx.param(w)
    w_info = ctx.info(w)
    axis_w = args["axis_w"]
    if w_info.shape is None:
        raise _fail("the weight shape is unknown")
    if len(w_info.shape) != 2 or axis_w != 1:
        if w_val is None:
            raise _fail("a weight that is not 2-D must be a parameter")
        aw = axis_w + w_val.ndim if axis_w < 0 else axis_w
        w = ctx.const(w + "_2d", w_val.reshape(int(np.prod(w_val.shape[:aw])), -1))
        n = int(np.prod(w_val.shape[:aw]))
    else:
        n = w_info.shape[0]
    if b is not None and ctx.info(b).shape is not None and len(ctx.info(b).shape) != 1:  # type: ignore[arg-type]
        b_val = ctx.param(b)
        if b_val is None:
            raise _fail("a bias that is not 1-D must be a parameter")
        b = ctx.const(b + "_1d", b_val.reshape(-1))
    if rank == 2 and axis == 1:
        ctx.node("Gemm", [x, w] + ([b] if b else []), [out], transB=1)
        return
    flat = ctx.temp(x + "_flat")
    ctx.node("Flatten", [x], [flat], axis=axis)
    y2 = ctx.temp(out + "_2d")
    ctx.node("Gemm", [flat, w] + ([b] if b else []), [y2], transB=1)
    lead = ctx.temp(x + "_lead")
    ctx.node("Shape", [x], [lead], start=0, end=axis)
    if n is None:
        raise _fail("the number of outputs is unknown")
    target = ctx.temp(out + "_shape")
    ctx.node("Concat", [lead, ctx.i64(out + "_n", [int(n)])], [target], axis=0)
    ctx.node("Reshape", [y2, target], [out])


@exporter("Softmax")
def _softmax(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x, out = op.input[0], op.output[0]
    shape = ctx.info(x).shape
    axis = args["axis"]
    if shape is not None:
        axis = axis + len(shape) if axis < 0 else axis
        if axis == len(shape) - 1:
            ctx.node("Softmax", [x], [out], axis=-1)
            return
    if axis < 0:
        raise _fail("a negative axis on an input of unknown rank")
    flat = ctx.temp(x + "_2d")
    ctx.node("Flatten", [x], [flat], axis=axis)
    sm = ctx.temp(out + "_2d")
    ctx.node("Softmax", [flat], [sm], axis=-1)
    shp = ctx.temp(x + "_shape")
    ctx.node("Shape", [x], [shp])
    ctx.node("Reshape", [sm, shp], [out])


@exporter("Dropout")
def _dropout(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    if not args["is_test"]:
        raise _fail("training-mode Dropout (export an is_test=1 net)")
    if len(op.output) > 1:
        ctx.node("Dropout", op.input[:1], op.output[:2])
    else:
        ctx.node("Identity", op.input[:1], op.output[:1])


@exporter("MatMul")
def _matmul(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ins = []
    for name, axis_key, trans_key in ((op.input[0], "axis_a", "trans_a"), (op.input[1], "axis_b", "trans_b")):
        cur = name
        rank = ctx.rank(name)
        axis = args[axis_key] + rank if args[axis_key] < 0 else args[axis_key]
        if rank != 2 or axis != 1:
            flat = ctx.temp(name + "_2d")
            ctx.node("Flatten", [cur], [flat], axis=axis)
            cur = flat
        if args[trans_key]:
            t = ctx.temp(name + "_t")
            ctx.node("Transpose", [cur], [t], perm=[1, 0])
            cur = t
        ins.append(cur)
    ctx.node("MatMul", ins, op.output[:1])


@exporter("BatchMatMul")
def _batch_matmul(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ins = []
    for name, key in ((op.input[0], "trans_a"), (op.input[1], "trans_b")):
        if args[key]:
            rank = ctx.rank(name)
            perm = [*range(rank - 2), rank - 1, rank - 2]
            t = ctx.temp(name + "_t")
            ctx.node("Transpose", [name], [t], perm=perm)
            name = t
        ins.append(name)
    ctx.node("MatMul", ins, op.output[:1])


# -- elementwise -----------------------------------------------------------------------------------
_SAME_NAME = {
    "Relu": "Relu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "Exp": "Exp",
    "Log": "Log",
    "Sqrt": "Sqrt",
    "Abs": "Abs",
    "Softplus": "Softplus",
    "Not": "Not",
    "Negative": "Neg",
    "Copy": "Identity",
    "StopGradient": "Identity",
    "Sum": "Sum",
    "Max": "Max",
    "Min": "Min",
    "Mean": "Mean",
}


def _same(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node(_SAME_NAME[op.type], list(op.input), op.output[:1])


for _t in _SAME_NAME:
    exporter(_t)(_same)


@exporter("Sqr")
def _sqr(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node("Mul", [op.input[0], op.input[0]], op.output[:1])


@exporter("LeakyRelu", "Elu")
def _alpha_act(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node(op.type, op.input[:1], op.output[:1], alpha=float(args["alpha"]))


@exporter("Selu")
def _selu(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node("Selu", op.input[:1], op.output[:1], alpha=float(args["alpha"]), gamma=float(args["scale"]))


@exporter("PRelu")
def _prelu(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, "PRelu")
    x, slope = op.input[0], op.input[1]
    value = ctx.param(slope)
    rank = ctx.rank(x)
    if value is None:
        raise _fail("a slope that is not a parameter")
    shaped = value.reshape(-1) if value.size == 1 else value.reshape((-1,) + (1,) * (rank - 2))
    ctx.node("PRelu", [x, ctx.const(slope + "_nd", shaped)], op.output[:1])


@exporter("Clip")
def _clip(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    dtype = ctx.dtype(x)
    lo = ctx.const(x + "_min", np.asarray(args["min"]).astype(dtype))
    hi = ctx.const(x + "_max", np.asarray(args["max"]).astype(dtype))
    ctx.node("Clip", [x, lo, hi], op.output[:1])


@exporter("Scale")
def _scale(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    s = ctx.const(x + "_scale", np.asarray(args["scale"]).astype(ctx.dtype(x)))
    ctx.node("Mul", [x, s], op.output[:1])


_BINARY = {
    "Add": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "Div": "Div",
    "EQ": "Equal",
    "LT": "Less",
    "GT": "Greater",
    "And": "And",
    "Or": "Or",
}


def _legacy_broadcast(ctx: _Ctx, a: str, b: str, args: dict[str, Any]) -> str:
    """Caffe2's broadcast=1: B's dims line up with A's starting at ``axis``; unsqueeze the rest."""
    if not args.get("broadcast"):
        return b
    ra, rb = ctx.rank(a), ctx.rank(b)
    axis = args.get("axis", -1)
    if args.get("axis_str"):
        order = args.get("order", "NCHW")
        axis = order.index(args["axis_str"])
    if axis == -1:
        axis = ra - rb
    trailing = ra - axis - rb
    if trailing <= 0:
        return b
    value = ctx.param(b)
    if value is not None:
        return ctx.const(b + "_aligned", value.reshape(value.shape + (1,) * trailing))
    out = ctx.temp(b + "_aligned")
    ctx.node("Unsqueeze", [b, ctx.i64(b + "_axes", list(range(rb, rb + trailing)))], [out])
    return out


def _binary(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    a, b = op.input[0], op.input[1]
    ctx.node(_BINARY[op.type], [a, _legacy_broadcast(ctx, a, b, args)], op.output[:1])


for _t in _BINARY:
    exporter(_t)(_binary)


@exporter("Pow")
def _pow(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    if len(op.input) > 1:
        ctx.node("Pow", [x, _legacy_broadcast(ctx, x, op.input[1], args)], op.output[:1])
    else:
        e = ctx.const(x + "_exponent", np.asarray(args["exponent"]).astype(ctx.dtype(x)))
        ctx.node("Pow", [x, e], op.output[:1])


@exporter("Cast")
def _cast(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    to = ctx.helper.np_dtype_to_tensor_dtype(np.dtype(args["to"]))
    ctx.node("Cast", op.input[:1], op.output[:1], to=int(to))


def _reduce(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    axes = args.get("axes")
    keep = int(bool(args["keepdims"]))
    if axes is None or len(axes) == 0:
        ctx.node(op.type, op.input[:1], op.output[:1], keepdims=keep)
    elif op.type == "ReduceSum" or ctx.opset >= 18:
        ctx.node(op.type, [op.input[0], ctx.i64(op.input[0] + "_axes", axes)], op.output[:1], keepdims=keep)
    else:
        ctx.node(op.type, op.input[:1], op.output[:1], axes=list(axes), keepdims=keep)


for _t in ("ReduceMean", "ReduceSum", "ReduceMax"):
    exporter(_t)(_reduce)


# -- tensor plumbing -------------------------------------------------------------------------------
@exporter("Flatten")
def _flatten(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node("Flatten", op.input[:1], op.output[:1], axis=int(args["axis"]))


@exporter("Reshape")
def _reshape(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    if len(op.input) > 1:
        shape = ctx.temp(op.input[1] + "_i64")
        ctx.node("Cast", [op.input[1]], [shape], to=7)
    else:
        shape = ctx.i64(x + "_target", list(args["shape"]))
    ctx.node("Reshape", [x, shape], op.output[:1])
    if len(op.output) > 1:
        ctx.node("Shape", [x], [op.output[1]])


@exporter("Transpose")
def _transpose(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    axes = args.get("axes") or None
    ctx.node("Transpose", op.input[:1], op.output[:1], perm=None if axes is None else list(axes))


@exporter("Squeeze", "ExpandDims")
def _squeeze(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    kind = "Squeeze" if op.type == "Squeeze" else "Unsqueeze"
    axes = ctx.i64(op.input[0] + "_axes", sorted(set(args["dims"])))
    ctx.node(kind, [op.input[0], axes], op.output[:1])


def _concat_axis(ctx: _Ctx, x: str, args: dict[str, Any]) -> int:
    if args.get("axis") is not None:
        axis = args["axis"]
        return axis if axis >= 0 else axis + ctx.rank(x) + (1 if args.get("add_axis") else 0)
    return 1 if args.get("order", "NCHW") == "NCHW" else ctx.rank(x) - 1 + (1 if args.get("add_axis") else 0)


@exporter("Concat")
def _concat(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    axis = _concat_axis(ctx, op.input[0], args)
    ins = list(op.input)
    if args.get("add_axis"):
        axes = ctx.i64(op.output[0] + "_axis", [axis])
        expanded = []
        for i in ins:
            e = ctx.temp(i + "_expanded")
            ctx.node("Unsqueeze", [i, axes], [e])
            expanded.append(e)
        ins = expanded
    ctx.node("Concat", ins, op.output[:1], axis=axis)
    if len(op.output) > 1:
        sizes = []
        for i in op.input:
            shape = ctx.info(i).shape
            if args.get("add_axis"):
                sizes.append(1)
            elif shape is None or shape[axis] is None:
                raise _fail("Concat's split_info output needs static input shapes")
            else:
                sizes.append(int(shape[axis]))  # type: ignore[arg-type]
        info = ctx.const(op.output[1] + "_value", np.asarray(sizes, np.int32))
        ctx.node("Identity", [info], [op.output[1]])


@exporter("Split")
def _split(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    x = op.input[0]
    axis = _concat_axis(ctx, x, {**args, "add_axis": False})
    ins = [x]
    if len(op.input) > 1:
        cast = ctx.temp(op.input[1] + "_i64")
        ctx.node("Cast", [op.input[1]], [cast], to=7)
        ins.append(cast)
    elif args.get("split"):
        ins.append(ctx.i64(x + "_split", list(args["split"])))
    outs = list(op.output)
    if args.get("add_axis"):
        parts = [ctx.temp(o + "_part") for o in outs]
        ctx.node("Split", ins, parts, axis=axis)
        axes = ctx.i64(x + "_axis", [axis])
        for p, o in zip(parts, outs):
            ctx.node("Squeeze", [p, axes], [o])
    else:
        ctx.node("Split", ins, outs, axis=axis)


@exporter("Shape")
def _shape(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    axes = args.get("axes") or []
    if not axes:
        ctx.node("Shape", op.input[:1], op.output[:1])
        return
    full = ctx.temp(op.input[0] + "_shape")
    ctx.node("Shape", op.input[:1], [full])
    ctx.node("Gather", [full, ctx.i64(op.output[0] + "_axes", axes)], op.output[:1], axis=0)


@exporter("Gather")
def _gather(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    ctx.node("Gather", list(op.input[:2]), op.output[:1], axis=0)


@exporter("Slice")
def _slice(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    if len(op.input) > 1:
        raise _fail("starts/ends given as inputs")
    starts, ends = list(args["starts"]), list(args["ends"])
    # kaffa: a negative index i means dim + 1 + i; ONNX: dim + i.
    o_starts = [s if s >= 0 else (_I64_MAX if s == -1 else s + 1) for s in starts]
    o_ends = [e if e >= 0 else (_I64_MAX if e == -1 else e + 1) for e in ends]
    x = op.input[0]
    ctx.node(
        "Slice",
        [
            x,
            ctx.i64(x + "_starts", o_starts),
            ctx.i64(x + "_ends", o_ends),
            ctx.i64(x + "_axes", list(range(len(starts)))),
        ],
        op.output[:1],
    )


@exporter("Tile")
def _tile(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    if len(op.input) > 1:
        raise _fail("tiles/axis given as inputs")
    x = op.input[0]
    rank = ctx.rank(x)
    axis = args["axis"] + rank if args["axis"] < 0 else args["axis"]
    reps = [1] * rank
    reps[axis] = int(args["tiles"])
    ctx.node("Tile", [x, ctx.i64(x + "_repeats", reps)], op.output[:1])


@exporter("PadImage")
def _pad_image(ctx: _Ctx, op: OperatorDef, args: dict[str, Any]) -> None:
    _nchw(args, "PadImage")
    x = op.input[0]
    rank = ctx.rank(x)
    begins, ends = split_pads(args["pads"], rank - 2)
    pads = ctx.i64(x + "_pads", [0, 0, *begins, 0, 0, *ends])
    mode = args["mode"]
    ins = [x, pads]
    if mode == "constant":
        ins.append(ctx.const(x + "_value", np.asarray(args["value"]).astype(ctx.dtype(x))))
    ctx.node("Pad", ins, op.output[:1], mode=mode)


# -- the driver ------------------------------------------------------------------------------------
def _netdef(net: Any, what: str) -> NetDef:
    from kaffa import serialize
    from kaffa.checkpoint import _as_proto

    if isinstance(net, (str, os.PathLike)):
        return serialize.load_netdef(Path(net))
    try:
        return _as_proto(net)
    except TypeError:
        raise TypeError(
            f"export_model: {what} must be a NetDef, a Net, a ModelHelper or a .pb path, "
            f"got {type(net).__name__}"
        ) from None


def _value_info(helper: Any, name: str, info: TensorInfo, dtype: Any = None) -> Any:
    dt = np.dtype(dtype) if dtype is not None else (info.dtype or np.dtype(np.float32))
    elem = helper.np_dtype_to_tensor_dtype(dt)
    shape = None if info.shape is None else [d if d is not None else None for d in info.shape]
    return helper.make_tensor_value_info(name, elem, shape)


def _fill_output_shapes(model: Any) -> None:
    """Outputs kaffa's inference left without a shape get the one ONNX shape inference finds."""
    from onnx import shape_inference

    if all(o.type.tensor_type.HasField("shape") for o in model.graph.output):
        return
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return
    known = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in model.graph.output:
        vi = known.get(out.name)
        has = out.type.tensor_type.HasField("shape")
        if not has and vi is not None and vi.type.tensor_type.HasField("shape"):
            out.type.tensor_type.shape.CopyFrom(vi.type.tensor_type.shape)


def export_model(
    init_net: Any,
    predict_net: Any,
    inputs: Mapping[str, tuple[Any, Sequence[int | str | None]]],
    opset: int = DEFAULT_OPSET,
    name: str | None = None,
    check: bool = True,
) -> Any:
    """An ``onnx.ModelProto`` computing ``predict_net`` with the parameters ``init_net`` makes.

    ``inputs`` maps every graph input (the predict net's external inputs that the init net does
    not make) to ``(dtype, shape)``; a dim given as a string or None stays symbolic. Raises
    OnnxExportError listing every op that cannot be written."""
    from onnx import checker, helper, numpy_helper

    from kaffa.workspace import Workspace

    init = _netdef(init_net, "init_net")
    predict = _netdef(predict_net, "predict_net")
    ws = Workspace("onnx-export")
    init_cpu = NetDef()
    init_cpu.CopyFrom(init)
    init_cpu.ClearField("device_option")
    for op in init_cpu.op:
        op.ClearField("device_option")
    ws.run_net_once(init_cpu)
    params = {o: np.asarray(ws.fetch_blob(o)) for op in init.op for o in op.output}

    infos: dict[str, TensorInfo] = {n: TensorInfo.of(v) for n, v in params.items()}
    graph_inputs = []
    for in_name, (dtype, shape) in inputs.items():
        dt = _dt.parse(dtype)
        dims = [int(d) if isinstance(d, (int, np.integer)) else None for d in shape]
        infos[in_name] = TensorInfo(tuple(dims), dt)
        graph_inputs.append(
            helper.make_tensor_value_info(
                in_name,
                helper.np_dtype_to_tensor_dtype(dt),
                [int(d) if isinstance(d, (int, np.integer)) else d for d in shape],
            )
        )
    missing = [b for b in predict.external_input if b not in params and b not in inputs]
    if missing:
        raise OnnxExportError(
            f"export_model: the predict net reads {missing}, which the init net does not make; "
            "give their dtype and shape in inputs"
        )
    infer_net(predict.op, infos)

    ctx = _Ctx(opset, params, infos)
    problems = []
    for index, op in enumerate(predict.op):
        if not op.input and op.type.endswith("Fill"):
            ws.run_operator_once(op)  # a constant made in the predict net
            for o in op.output:
                value = np.asarray(ws.fetch_blob(o))
                ctx.params[o] = value
                ctx.initializers[o] = value
            continue
        fn = EXPORTERS.get(op.type)
        if fn is None:
            problems.append(f"  op #{index} {op.type} -> {list(op.output)}: no ONNX export")
            continue
        try:
            fn(ctx, op, SCHEMAS.get(op.type).parse_args(op.arg))
        except (_Unexportable, KaffaError) as e:
            problems.append(f"  op #{index} {op.type} -> {list(op.output)}: {e}")
    if problems:
        raise OnnxExportError(f"{len(problems)} op(s) cannot be exported to ONNX:\n" + "\n".join(problems))

    read = {i for n in ctx.nodes for i in n.input if i}
    initializers = [numpy_helper.from_array(v, n) for n, v in ctx.initializers.items() if n in read]
    initializers += [
        numpy_helper.from_array(params[n], n)
        for n in dict.fromkeys(predict.external_input)
        if n in params and n in read and n not in ctx.initializers
    ]
    made = {o for n in ctx.nodes for o in n.output} | set(ctx.initializers)
    outputs = []
    for out in predict.external_output:
        if out not in made and out not in inputs:
            raise OnnxExportError(f"export_model: nothing in the predict net makes output '{out}'")
        outputs.append(_value_info(helper, out, infos.get(out, TensorInfo())))
    graph = helper.make_graph(
        ctx.nodes, name or predict.name or "kaffa", graph_inputs, outputs, initializer=initializers
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="kaffa", producer_version="0.1.0"
    )
    if opset <= 17:  # onnxruntime builds of 2023+ all read IR 8
        model.ir_version = min(model.ir_version, 8)
    _fill_output_shapes(model)
    if check:
        try:
            checker.check_model(model)
        except Exception as e:
            raise OnnxExportError(f"export_model: the ONNX model does not check: {e}") from e
    return model
