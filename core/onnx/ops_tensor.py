"""Translators for elementwise ONNX ops, activations, reductions and tensor plumbing (Reshape,
Flatten, Transpose, Squeeze/Unsqueeze, Concat, Split, Shape, Gather, Slice, Pad, ...)."""

from __future__ import annotations

import numpy as np

from kaffa import dtypes as _dt
from kaffa.onnx.importer import Context, Node, translator, unsupported

# -- elementwise -----------------------------------------------------------------------------------
_UNARY = {
    "Relu": "Relu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "Exp": "Exp",
    "Log": "Log",
    "Sqrt": "Sqrt",
    "Abs": "Abs",
    "Neg": "Negative",
    "Softplus": "Softplus",
    "Not": "Not",
    "Identity": "Copy",
}


def _unary(ctx: Context, node: Node) -> None:
    ctx.op(_UNARY[node.op_type], node.inputs[:1], node.outputs[:1])


for _t in _UNARY:
    translator(_t)(_unary)


@translator("LeakyRelu")
def _leaky_relu(ctx: Context, node: Node) -> None:
    ctx.op("LeakyRelu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 0.01)))


@translator("Elu")
def _elu(ctx: Context, node: Node) -> None:
    ctx.op("Elu", node.inputs[:1], node.outputs[:1], alpha=float(node.attr("alpha", 1.0)))


@translator("Selu")
def _selu(ctx: Context, node: Node) -> None:
    ctx.op(
        "Selu",
        node.inputs[:1],
        node.outputs[:1],
        alpha=float(node.attr("alpha", 1.67326319217681884765625)),
        scale=float(node.attr("gamma", 1.05070102214813232421875)),
    )


@translator("PRelu")
def _prelu(ctx: Context, node: Node) -> None:
    x, slope = node.inputs[0], node.inputs[1]
    value = ctx.const(slope)
    flat = None
    if value is not None and value.size == 1:
        flat = value.reshape(1)
    elif value is not None:
        # kaffa's PRelu has one slope per channel (axis 1): ONNX's slope may broadcast that way.
        x_shape = ctx.shape(x)
        rank = len(x_shape) if x_shape is not None else value.ndim + 1
        shaped = value.reshape((1,) * max(rank - value.ndim, 0) + value.shape)
        if shaped.ndim == rank and all(d == 1 for i, d in enumerate(shaped.shape) if i != 1):
            flat = shaped.reshape(-1)
    if flat is not None:
        ctx.op("PRelu", [x, ctx.add_const(slope + "_c", flat)], node.outputs[:1])
        return
    # Any other slope broadcasts against X the numpy way: Y = X < 0 ? slope * X : X.
    neg = ctx.temp(x + "_neg")
    ctx.op("LT", [x, _scalar(ctx, x, 0.0)], [neg])
    scaled = ctx.temp(x + "_scaled")
    ctx.op("Mul", [x, slope], [scaled])
    ctx.op("Where", [neg, scaled, x], node.outputs[:1])


def _hard_sigmoid_into(ctx: Context, x: str, out: str, alpha: float, beta: float) -> None:
    scaled = ctx.temp(x + "_hs_scaled")
    ctx.op("Scale", [x], [scaled], scale=alpha)
    shifted = ctx.temp(x + "_hs_shifted")
    dtype = ctx.dtype(x) or np.dtype(np.float32)
    ctx.op("Add", [scaled, ctx.add_const(x + "_hs_beta", beta, dtype)], [shifted])
    ctx.op("Clip", [shifted], [out], min=0.0, max=1.0)


@translator("HardSigmoid")
def _hard_sigmoid(ctx: Context, node: Node) -> None:
    _hard_sigmoid_into(
        ctx, node.inputs[0], node.outputs[0], float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    )


@translator("HardSwish")
def _hard_swish(ctx: Context, node: Node) -> None:
    gate = ctx.temp(node.outputs[0] + "_gate")
    _hard_sigmoid_into(ctx, node.inputs[0], gate, 1.0 / 6.0, 0.5)
    ctx.op("Mul", [node.inputs[0], gate], node.outputs[:1])


@translator("Clip")
def _clip(ctx: Context, node: Node) -> None:
    if ctx.opset < 11:
        lo, hi = node.attr("min"), node.attr("max")
    else:
        lo = float(ctx.need_const(node.input(1), "Clip's min")) if node.input(1) else None
        hi = float(ctx.need_const(node.input(2), "Clip's max")) if node.input(2) else None
    dtype = ctx.dtype(node.inputs[0])
    if lo == 0.0 and hi is None and (dtype is None or dtype.kind == "f"):  # Relu is float-only
        ctx.op("Relu", node.inputs[:1], node.outputs[:1])
        return
    ctx.op(
        "Clip",
        node.inputs[:1],
        node.outputs[:1],
        min=None if lo is None else float(lo),
        max=None if hi is None else float(hi),
    )


_BINARY = {
    "Add": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "Div": "Div",
    "Equal": "EQ",
    "Less": "LT",
    "Greater": "GT",
    "And": "And",
    "Or": "Or",
}


def _binary(ctx: Context, node: Node) -> None:
    if ctx.opset < 7 and node.attr("broadcast", 0):  # pragma: no cover - opset < 7 is refused
        raise unsupported("legacy broadcast")
    ctx.op(_BINARY[node.op_type], node.inputs[:2], node.outputs[:1])


for _t in _BINARY:
    translator(_t)(_binary)


@translator("Pow")
def _pow(ctx: Context, node: Node) -> None:
    exponent = ctx.const(node.inputs[1])
    if exponent is not None and exponent.size == 1:
        e = float(exponent.reshape(()))
        if e == 2.0:
            ctx.op("Sqr", node.inputs[:1], node.outputs[:1])
        else:
            ctx.op("Pow", node.inputs[:1], node.outputs[:1], exponent=e)
        return
    x, y = node.inputs[0], node.inputs[1]
    dx, dy = ctx.dtype(x), ctx.dtype(y)
    if dx is not None and dy is not None and dx != dy:
        # ONNX lets the exponent have its own type; kaffa's Pow takes one: cast it to X's.
        cast = ctx.temp(y + "_as_x")
        _cast_to(ctx, y, cast, np.dtype(dx))
        y = cast
    ctx.op("Pow", [x, y], node.outputs[:1])


def _broadcast_shape(ctx: Context, names: list[str]) -> tuple[int | None, ...] | None:
    shapes = [ctx.shape(n) for n in names]
    if any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)  # type: ignore[arg-type]
    out: list[int | None] = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0}  # type: ignore[arg-type]
        dims.discard(1)
        out.append(None if None in dims or len(dims) > 1 else (dims.pop() if dims else 1))
    return tuple(out)


@translator("Sum", "Max", "Min", "Mean")
def _variadic(ctx: Context, node: Node) -> None:
    ins = [i for i in node.inputs if i]
    out = node.outputs[0]
    shapes = [ctx.shape(i) for i in ins]
    same = all(s is not None and s == shapes[0] and None not in s for s in shapes)
    if len(ins) == 1:
        ctx.op("Copy", ins, [out])
        return
    if same:
        ctx.op(node.op_type, ins, [out])
        return
    if node.op_type == "Sum":
        acc = ins[0]
        for k, nxt in enumerate(ins[1:]):
            dst = out if k == len(ins) - 2 else ctx.temp(out + "_acc")
            ctx.op("Add", [acc, nxt], [dst])
            acc = dst
        return
    # Max/Min/Mean take inputs of one shape: broadcast each by adding zeros of the result shape.
    target = _broadcast_shape(ctx, ins)
    if target is None or None in target:
        raise unsupported("inputs that broadcast against each other with non-static shapes")
    expanded = []
    for i in ins:
        if ctx.shape(i) == target:
            expanded.append(i)
            continue
        dtype = ctx.dtype(i) or np.dtype(np.float32)
        zeros = ctx.add_const(i + "_zeros", np.zeros(target, dtype))
        e = ctx.temp(i + "_bcast")
        ctx.op("Add", [i, zeros], [e])
        expanded.append(e)
    ctx.op(node.op_type, expanded, [out])


@translator("Cast")
def _cast(ctx: Context, node: Node) -> None:
    from onnx import helper

    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attr("to"))))
    _cast_to(ctx, node.inputs[0], node.outputs[0], dtype, **_cast_attrs(node))


@translator("CastLike")
def _cast_like(ctx: Context, node: Node) -> None:
    dtype = ctx.dtype(node.inputs[1])
    if dtype is None:
        raise unsupported(f"the dtype of target_type '{node.inputs[1]}' is unknown")
    value = ctx.const(node.inputs[0])
    if value is not None and np.dtype(dtype) in _dt.ALL_TYPES:
        # Only target_type's dtype matters: a constant stays a constant (Pad values, -inf...).
        ctx.consts[node.outputs[0]] = value.astype(dtype)
        return
    _cast_to(ctx, node.inputs[0], node.outputs[0], np.dtype(dtype), **_cast_attrs(node))


def _cast_attrs(node: Node) -> dict:
    """Cast's saturate (float8 targets) and round_mode (float8e8m0) where they differ from the
    defaults, which kaffa's Cast shares with ONNX's (saturate=1, round_mode="up")."""
    out: dict = {}
    if not node.attr("saturate", 1):
        out["saturate"] = False
    if node.attr("round_mode", "up") != "up":
        out["round_mode"] = node.attr("round_mode")
    return out


def _cast_to(ctx: Context, x: str, out: str, dtype: np.dtype, **cast_args: object) -> None:
    from kaffa.ops.unary import castable

    try:
        code = _dt.from_numpy(dtype)
    except ValueError:
        raise unsupported(f"cast to {dtype}") from None
    if dtype.kind == "O" or not castable(dtype):
        raise unsupported(f"cast to {dtype} (kaffa casts numeric, bool and ml_dtypes types)")
    ctx.op("Cast", [x], [out], to=code, **cast_args)


# -- reductions ------------------------------------------------------------------------------------
_REDUCE = {
    "ReduceMean": "ReduceMean",
    "ReduceSum": "ReduceSum",
    "ReduceMax": "ReduceMax",
    "ReduceProd": "ReduceProd",
}
# Opset from which an op takes its axes as an input rather than an attribute.
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _reduce_args(ctx: Context, node: Node) -> tuple[list[int] | None, bool, bool]:
    """(sorted non-negative axes or None for all, keepdims, noop) of an ONNX Reduce* node."""
    x = node.inputs[0]
    if ctx.opset >= _AXES_INPUT_SINCE.get(node.op_type, 18):
        axes = node.input(1)
        axes_v = ctx.need_const(axes, "axes").reshape(-1).tolist() if axes else []
    else:
        axes_v = list(node.attr("axes") or [])
    keepdims = bool(node.attr("keepdims", 1))
    if not axes_v:
        return None, keepdims, bool(node.attr("noop_with_empty_axes", 0))
    rank = ctx.rank(x)
    return sorted({ctx.norm_axis(int(a), rank) for a in axes_v}), keepdims, False


def _emit_reduce(ctx: Context, node: Node, kaffa_type: str, x: str, out: str) -> None:
    axes, keep, noop = _reduce_args(ctx, node)
    if noop:
        ctx.op("Copy", [x], [out])
    else:
        ctx.op(kaffa_type, [x], [out], axes=axes, keepdims=keep)


def _reduce_empty(ctx: Context, node: Node, fill: float) -> bool:
    """A reduction over a statically empty axis has no data to read: its output is the constant
    ``fill`` (ONNX: the reduction's identity). True if the node was handled that way."""
    x, out = node.inputs[0], node.outputs[0]
    shape, dtype = ctx.shape(x), ctx.dtype(x)
    axes, keep, noop = _reduce_args(ctx, node)
    if noop or shape is None or None in shape or dtype is None:
        return False
    axes = list(range(len(shape))) if axes is None else axes
    if not any(shape[a] == 0 for a in axes):
        return False
    if dtype.kind == "b":  # any() of nothing is False, all() of nothing True
        fill = fill > 0
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        fill = info.min if fill < 0 else info.max if fill > 0 else 0
    out_shape = [1 if k in axes else d for k, d in enumerate(shape) if keep or k not in axes]
    ctx.consts[out] = np.full(out_shape, fill, dtype=dtype)
    return True


def _reduce_bool(ctx: Context, node: Node, kaffa_type: str, negate: bool) -> bool:
    """ReduceMax/ReduceMin of bool (any/all): through int32, with min(b) = -max(-b)."""
    x, out = node.inputs[0], node.outputs[0]
    if ctx.dtype(x) != np.dtype(bool):
        return False
    as_int = ctx.temp(x + "_int")
    _cast_to(ctx, x, as_int, np.dtype(np.int32))
    if negate:
        neg = ctx.temp(x + "_neg")
        ctx.op("Negative", [as_int], [neg])
        as_int = neg
    red = ctx.temp(out + "_int")
    _emit_reduce(ctx, node, kaffa_type, as_int, red)
    if negate:
        back = ctx.temp(out + "_neg")
        ctx.op("Negative", [red], [back])
        red = back
    _cast_to(ctx, red, out, np.dtype(bool))
    return True


def _reduce(ctx: Context, node: Node) -> None:
    if node.op_type == "ReduceMax" and (
        _reduce_empty(ctx, node, -np.inf) or _reduce_bool(ctx, node, "ReduceMax", False)
    ):
        return
    _emit_reduce(ctx, node, _REDUCE[node.op_type], node.inputs[0], node.outputs[0])


for _t in _REDUCE:
    translator(_t)(_reduce)


@translator("ReduceMin")
def _reduce_min(ctx: Context, node: Node) -> None:
    # min(x) = -max(-x)
    if _reduce_empty(ctx, node, np.inf) or _reduce_bool(ctx, node, "ReduceMax", True):
        return
    x, out = node.inputs[0], node.outputs[0]
    neg = ctx.temp(x + "_neg")
    ctx.op("Negative", [x], [neg])
    red = ctx.temp(out + "_max")
    _emit_reduce(ctx, node, "ReduceMax", neg, red)
    ctx.op("Negative", [red], [out])


# ReduceX = post(ReduceSum(pre(x))).
_REDUCE_SUM_OF = {
    "ReduceL1": ("Abs", None),
    "ReduceL2": ("Sqr", "Sqrt"),
    "ReduceSumSquare": ("Sqr", None),
    "ReduceLogSum": (None, "Log"),
}


@translator(*_REDUCE_SUM_OF)
def _reduce_sum_of(ctx: Context, node: Node) -> None:
    pre, post = _REDUCE_SUM_OF[node.op_type]
    x, out = node.inputs[0], node.outputs[0]
    if pre:
        xp = ctx.temp(x + "_" + pre.lower())
        ctx.op(pre, [x], [xp])
        x = xp
    summed = ctx.temp(out + "_sum") if post else out
    _emit_reduce(ctx, node, "ReduceSum", x, summed)
    if post:
        ctx.op(post, [summed], [out])


@translator("ReduceLogSumExp")
def _reduce_log_sum_exp(ctx: Context, node: Node) -> None:
    # log(sum(exp(x - m))) + m, m = max(x) over the axes (so exp does not overflow).
    if _reduce_empty(ctx, node, -np.inf):  # log(0)
        return
    x, out = node.inputs[0], node.outputs[0]
    axes, keep, noop = _reduce_args(ctx, node)
    if noop:
        ctx.op("Copy", [x], [out])
        return
    m_keep = ctx.temp(out + "_max_keep")
    ctx.op("ReduceMax", [x], [m_keep], axes=axes, keepdims=True)
    shifted = ctx.temp(out + "_shifted")
    ctx.op("Sub", [x, m_keep], [shifted])
    e = ctx.temp(out + "_exp")
    ctx.op("Exp", [shifted], [e])
    s = ctx.temp(out + "_sum")
    ctx.op("ReduceSum", [e], [s], axes=axes, keepdims=keep)
    lg = ctx.temp(out + "_log")
    ctx.op("Log", [s], [lg])
    m = m_keep
    if not keep:
        m = ctx.temp(out + "_max")
        ctx.op("ReduceMax", [x], [m], axes=axes, keepdims=False)
    ctx.op("Add", [lg, m], [out])


# -- activations and elementwise ops composed of kaffa ops -------------------------------------------
def _scalar(ctx: Context, like: str, value: float) -> str:
    """A 0-d constant of ``like``'s dtype (float32 if unknown)."""
    dtype = ctx.dtype(like) or np.dtype(np.float32)
    return ctx.add_const(like + "_scalar", np.asarray(value, dtype=dtype))


def _as_type_of(ctx: Context, mask: str, like: str, hint: str) -> str:
    """Cast a bool ``mask`` to ``like``'s dtype."""
    out = ctx.temp(hint)
    _cast_to(ctx, mask, out, np.dtype(ctx.dtype(like) or np.float32))
    return out


@translator("GreaterOrEqual", "LessOrEqual")
def _compare_or_equal(ctx: Context, node: Node) -> None:
    # a >= b is not (a < b); a <= b is not (a > b)
    out = node.outputs[0]
    strict = ctx.temp(out + "_strict")
    ctx.op("LT" if node.op_type == "GreaterOrEqual" else "GT", node.inputs[:2], [strict])
    ctx.op("Not", [strict], [out])


@translator("Xor")
def _xor(ctx: Context, node: Node) -> None:
    out = node.outputs[0]
    same = ctx.temp(out + "_eq")
    ctx.op("EQ", node.inputs[:2], [same])
    ctx.op("Not", [same], [out])


@translator("Celu")
def _celu(ctx: Context, node: Node) -> None:
    # celu(x, a) = a * elu(x / a, 1)
    alpha = float(node.attr("alpha", 1.0))
    x, out = node.inputs[0], node.outputs[0]
    if alpha == 1.0:
        ctx.op("Elu", [x], [out], alpha=1.0)
        return
    xs, e = ctx.temp(x + "_div_alpha"), ctx.temp(out + "_elu")
    ctx.op("Scale", [x], [xs], scale=1.0 / alpha)
    ctx.op("Elu", [xs], [e], alpha=1.0)
    ctx.op("Scale", [e], [out], scale=alpha)


@translator("Softsign")
def _softsign(ctx: Context, node: Node) -> None:
    # x / (1 + |x|)
    x, out = node.inputs[0], node.outputs[0]
    a, d = ctx.temp(x + "_abs"), ctx.temp(x + "_den")
    ctx.op("Abs", [x], [a])
    ctx.op("Add", [a, _scalar(ctx, x, 1.0)], [d])
    ctx.op("Div", [x, d], [out])


@translator("Swish")
def _swish(ctx: Context, node: Node) -> None:
    # x * sigmoid(alpha * x)
    x, out = node.inputs[0], node.outputs[0]
    alpha = float(node.attr("alpha", 1.0))
    ax = x
    if alpha != 1.0:
        ax = ctx.temp(x + "_ax")
        ctx.op("Scale", [x], [ax], scale=alpha)
    s = ctx.temp(x + "_sigmoid")
    ctx.op("Sigmoid", [ax], [s])
    ctx.op("Mul", [x, s], [out])


@translator("Mish")
def _mish(ctx: Context, node: Node) -> None:
    # x * tanh(softplus(x))
    x, out = node.inputs[0], node.outputs[0]
    sp, t = ctx.temp(x + "_softplus"), ctx.temp(x + "_tanh")
    ctx.op("Softplus", [x], [sp])
    ctx.op("Tanh", [sp], [t])
    ctx.op("Mul", [x, t], [out])


@translator("ThresholdedRelu")
def _thresholded_relu(ctx: Context, node: Node) -> None:
    # x * (x > alpha)
    x, out = node.inputs[0], node.outputs[0]
    gt = ctx.temp(x + "_gt")
    ctx.op("GT", [x, _scalar(ctx, x, float(node.attr("alpha", 1.0)))], [gt])
    ctx.op("Mul", [x, _as_type_of(ctx, gt, x, x + "_mask")], [out])


@translator("Shrink")
def _shrink(ctx: Context, node: Node) -> None:
    # (x < -lambd) * (x + bias) + (x > lambd) * (x - bias)
    x, out = node.inputs[0], node.outputs[0]
    lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))
    lo, hi = ctx.temp(x + "_lo"), ctx.temp(x + "_hi")
    ctx.op("LT", [x, _scalar(ctx, x, -lambd)], [lo])
    ctx.op("GT", [x, _scalar(ctx, x, lambd)], [hi])
    up, down = ctx.temp(x + "_up"), ctx.temp(x + "_down")
    b = _scalar(ctx, x, bias)
    ctx.op("Add", [x, b], [up])
    ctx.op("Sub", [x, b], [down])
    a, c = ctx.temp(x + "_a"), ctx.temp(x + "_c")
    ctx.op("Mul", [_as_type_of(ctx, lo, x, x + "_lo_m"), up], [a])
    ctx.op("Mul", [_as_type_of(ctx, hi, x, x + "_hi_m"), down], [c])
    ctx.op("Add", [a, c], [out])


@translator("Sign")
def _sign(ctx: Context, node: Node) -> None:
    # (x > 0) - (x < 0)
    x, out = node.inputs[0], node.outputs[0]
    pos, neg = ctx.temp(x + "_pos"), ctx.temp(x + "_neg")
    zero = _scalar(ctx, x, 0)
    ctx.op("GT", [x, zero], [pos])
    ctx.op("LT", [x, zero], [neg])
    ctx.op("Sub", [_as_type_of(ctx, pos, x, x + "_p"), _as_type_of(ctx, neg, x, x + "_n")], [out])


@translator("IsNaN")
def _isnan(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    same = ctx.temp(x + "_eq")
    ctx.op("EQ", [x, x], [same])
    ctx.op("Not", [same], [out])


@translator("IsInf")
def _isinf(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    pos, neg = int(node.attr("detect_positive", 1)), int(node.attr("detect_negative", 1))
    checks = []
    for on, value in ((pos, np.inf), (neg, -np.inf)):
        if on:
            c = ctx.temp(x + "_inf")
            ctx.op("EQ", [x, _scalar(ctx, x, value)], [c])
            checks.append(c)
    if not checks:
        ctx.op("LT", [x, x], [out])  # all false
    elif len(checks) == 1:
        ctx.op("Copy", checks, [out])
    else:
        ctx.op("Or", checks, [out])


@translator("Size")
def _size(ctx: Context, node: Node) -> None:
    shape = ctx.shape(node.inputs[0])
    if shape is None or None in shape:
        raise unsupported("Size of a tensor with a non-static shape")
    ctx.consts[node.outputs[0]] = np.asarray(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)


# -- tensor plumbing -------------------------------------------------------------------------------
@translator("Constant")
def _constant(ctx: Context, node: Node) -> None:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            dtype = np.float32 if key.startswith("value_float") else (np.int64 if key != "value" else None)
            ctx.consts[node.outputs[0]] = np.asarray(value, dtype=dtype)
            return
    raise unsupported(f"a Constant given by {sorted(node.attrs)}")


@translator("Flatten")
def _flatten(ctx: Context, node: Node) -> None:
    axis = int(node.attr("axis", 1))
    if axis < 0:
        axis += ctx.rank(node.inputs[0])
    ctx.op("Flatten", node.inputs[:1], node.outputs[:1], axis=axis)


@translator("Reshape")
def _reshape(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if ctx.opset < 5:  # pragma: no cover - opset < 7 is refused
        shape = node.attr("shape")
    else:
        value = ctx.const(node.input(1))
        shape = None if value is None else [int(v) for v in value.reshape(-1)]
    if shape is not None:
        if node.attr("allowzero", 0) and 0 in shape:
            # A literal 0 dim: the result is empty (X must be too), whatever X holds.
            x_shape, dtype = ctx.shape(x), ctx.dtype(x)
            if -1 in shape or dtype is None or (x_shape is not None and 0 not in x_shape):
                raise unsupported(f"allowzero=1 with a 0 in the shape {shape} for X {x_shape}")
            ctx.consts[out] = np.zeros(shape, dtype)
            return
        ctx.op("Reshape", [x], [out, ctx.temp(out + "_old_shape")], shape=shape)
        return
    if node.attr("allowzero", 0):
        raise unsupported("allowzero=1 with a computed shape", node.inputs[1])
    ctx.op("Reshape", [x, node.inputs[1]], [out, ctx.temp(out + "_old_shape")])


@translator("Transpose")
def _transpose(ctx: Context, node: Node) -> None:
    perm = node.attr("perm")
    ctx.op("Transpose", node.inputs[:1], node.outputs[:1], axes=None if perm is None else list(perm))


def _axes(ctx: Context, node: Node, since: int) -> list[int] | None:
    if ctx.opset >= since:
        name = node.input(1)
        return None if not name else [int(a) for a in ctx.need_const(name, "axes").reshape(-1)]
    axes = node.attr("axes")
    return None if axes is None else [int(a) for a in axes]


@translator("Squeeze")
def _squeeze(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    axes = _axes(ctx, node, 13)
    shape = ctx.shape(x)
    if axes is None:
        if shape is None or None in shape:
            raise unsupported("Squeeze without axes needs a static input shape")
        axes = [i for i, d in enumerate(shape) if d == 1]
    else:
        rank = ctx.rank(x) if any(a < 0 for a in axes) else 0
        axes = [a + rank if a < 0 else a for a in axes]
    if not axes:
        ctx.op("Copy", [x], node.outputs[:1])
        return
    ctx.op("Squeeze", [x], node.outputs[:1], dims=sorted(set(axes)))


@translator("Unsqueeze")
def _unsqueeze(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    axes = _axes(ctx, node, 13)
    if not axes:
        raise unsupported("Unsqueeze without axes")
    if any(a < 0 for a in axes):
        out_rank = ctx.rank(x) + len(axes)
        axes = [a + out_rank if a < 0 else a for a in axes]
    ctx.op("ExpandDims", [x], node.outputs[:1], dims=sorted(set(axes)))


@translator("Concat")
def _concat(ctx: Context, node: Node) -> None:
    ins = [i for i in node.inputs if i]
    axis = int(node.attr("axis", 1))
    if axis < 0:
        axis += ctx.rank(ins[0])
    ctx.op("Concat", ins, node.outputs[:1], axis=axis)


@translator("Split")
def _split(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    outs = list(node.outputs)
    if any(not o for o in outs):
        raise unsupported("an omitted output")
    axis = int(node.attr("axis", 0))
    if axis < 0:
        axis += ctx.rank(x)
    if ctx.opset >= 13:
        split = node.input(1)
        sizes = [int(s) for s in ctx.need_const(split, "split").reshape(-1)] if split else None
    else:
        sizes = node.attr("split")
    if sizes is None:
        shape = ctx.shape(x)
        dim = None if shape is None else shape[axis]
        if dim is not None and dim % len(outs):
            # opset 18: the last part is smaller.
            part = -(-dim // len(outs))
            sizes = [part] * (len(outs) - 1) + [dim - part * (len(outs) - 1)]
    ctx.op("Split", [x], outs, axis=axis, split=None if sizes is None else list(sizes))


@translator("Shape")
def _shape(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    start, end = node.attr("start"), node.attr("end")
    if start is None and end is None:
        ctx.op("Shape", [x], node.outputs[:1])
        return
    rank = ctx.rank(x)
    axes = list(range(rank))[slice(start, end)]
    ctx.op("Shape", [x], node.outputs[:1], axes=axes)


@translator("Gather")
def _gather(ctx: Context, node: Node) -> None:
    data, idx = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    r = ctx.rank(data)
    axis = ctx.norm_axis(int(node.attr("axis", 0)), r)
    idx_val = ctx.const(idx)
    if idx_val is not None and (idx_val < 0).any():
        shape = ctx.shape(data)
        dim = None if shape is None else shape[axis]
        if dim is None:
            raise unsupported("negative indices into a dim of unknown size")
        idx = ctx.add_const(idx + "_pos", np.where(idx_val < 0, idx_val + dim, idx_val))
    elif idx_val is None and ctx.shape(data) is not None and ctx.shape(data)[axis] is not None:
        # ONNX indices may count from the end (-dim .. -1); kaffa's Gather takes 0 .. dim-1.
        dtype = ctx.dtype(idx) or np.dtype(np.int64)
        neg = ctx.temp(idx + "_neg")
        ctx.op("LT", [idx, ctx.add_const(idx + "_zero", np.zeros((), dtype))], [neg])
        shifted = ctx.temp(idx + "_shifted")
        ctx.op("Add", [idx, ctx.add_const(idx + "_dim", np.asarray(ctx.shape(data)[axis], dtype))], [shifted])
        pos = ctx.temp(idx + "_pos")
        ctx.op("Where", [neg, shifted, idx], [pos])
        idx = pos
    _gather_along(ctx, data, idx, out, axis, r, ctx.rank(idx) if axis else 0)


def _gather_along(ctx: Context, data: str, idx: str, out: str, axis: int, r: int, q: int) -> None:
    """ONNX Gather along ``axis`` of a rank-``r`` data with rank-``q`` indices (kaffa's Gather
    takes axis 0: other axes are moved there and back)."""
    if axis == 0:
        ctx.op("Gather", [data, idx], [out])
        return
    perm = [axis] + [i for i in range(r) if i != axis]
    moved = ctx.temp(data + "_moved")
    ctx.op("Transpose", [data], [moved], axes=perm)
    g = ctx.temp(out + "_gathered")
    ctx.op("Gather", [moved, idx], [g])
    # g: [*idx, d0 .. d(axis-1), d(axis+1) ..]; wanted: [d0 .. d(axis-1), *idx, d(axis+1) ..]
    back = list(range(q, q + axis)) + list(range(q)) + list(range(q + axis, q + r - 1))
    ctx.op("Transpose", [g], [out], axes=back)


@translator("Slice")
def _slice(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    if ctx.opset < 10:
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes = node.attr("axes")
        steps = None
    else:
        starts = [int(v) for v in ctx.need_const(node.inputs[1], "starts").reshape(-1)]
        ends = [int(v) for v in ctx.need_const(node.inputs[2], "ends").reshape(-1)]
        axes_name, steps_name = node.input(3), node.input(4)
        axes = [int(v) for v in ctx.need_const(axes_name, "axes").reshape(-1)] if axes_name else None
        steps = [int(v) for v in ctx.need_const(steps_name, "steps").reshape(-1)] if steps_name else None
    rank = ctx.rank(x) if axes is None or any(a < 0 for a in axes) else max(axes) + 1
    if axes is None:
        axes = list(range(len(starts)))
    axes = [a + rank if a < 0 else a for a in axes]
    strided = [(a, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps or []) if st != 1]
    if strided:
        # Other steps: the unit-step axes slice as usual, then each strided axis gathers its indices
        # (numpy's slicing of range(dim), which clamps as ONNX does), so its dim must be known.
        shape, rank = ctx.shape(x), ctx.rank(x)
        unit = [(a, s, e) for a, s, e, st in zip(axes, starts, ends, steps) if st == 1]
        y = x
        if unit:
            y = ctx.temp(x + "_sliced")
            _slice_unit(ctx, x, y, *(list(v) for v in zip(*unit)))
        for k, (a, s, e, st) in enumerate(strided):
            if shape is None or shape[a] is None:
                raise unsupported(f"step {st} on axis {a} of unknown size")
            picked = np.arange(shape[a], dtype=np.int64)[slice(s, e, st)]
            dst = node.outputs[0] if k == len(strided) - 1 else ctx.temp(x + f"_strided{a}")
            _gather_along(ctx, y, ctx.add_const(x + f"_step_idx{a}", picked), dst, a, rank, 1)
            y = dst
        return
    _slice_unit(ctx, x, node.outputs[0], starts, ends, axes)


def _slice_unit(ctx: Context, x: str, out: str, starts: list[int], ends: list[int], axes: list[int]) -> None:
    """kaffa's Slice for ONNX starts/ends with step 1 on (non-negative) ``axes``."""
    n = max(axes) + 1
    k_starts, k_ends = [0] * n, [-1] * n
    big = 2**62
    for a, s, e in zip(axes, starts, ends):
        # ONNX: a negative index i means dim + i; kaffa: dim + 1 + i.
        k_starts[a] = max(s, -big) - 1 if s < 0 else min(s, big)
        k_ends[a] = -1 if e >= big else (max(e, -big) - 1 if e < 0 else e)
        if e < -big:
            raise unsupported("an end before the start of the axis")
    ctx.op("Slice", [x], [out], starts=k_starts, ends=k_ends)


@translator("Tile")
def _tile(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    repeats = [int(r) for r in ctx.need_const(node.inputs[1], "repeats").reshape(-1)]
    steps = [(axis, r) for axis, r in enumerate(repeats) if r != 1]
    if not steps:
        ctx.op("Copy", [x], [out])
        return
    cur = x
    for k, (axis, r) in enumerate(steps):
        dst = out if k == len(steps) - 1 else ctx.temp(out + "_tile")
        ctx.op("Tile", [cur], [dst], tiles=r, axis=axis)
        cur = dst


@translator("Expand")
def _expand(ctx: Context, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = [int(d) for d in ctx.need_const(node.inputs[1], "shape").reshape(-1)]
    x_shape = ctx.shape(x)
    if x_shape is None or None in x_shape:
        raise unsupported("Expand of an input with a non-static shape")
    target = np.broadcast_shapes(tuple(x_shape), tuple(shape))  # type: ignore[arg-type]
    dtype = ctx.dtype(x) or np.dtype(np.float32)
    if dtype == np.bool_:
        raise unsupported("Expand of a bool tensor")
    ctx.op("Add", [x, ctx.add_const(x + "_zeros", np.zeros(target, dtype))], [out])


@translator("Pad")
def _pad(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    mode = node.attr("mode", "constant")
    if ctx.opset < 11:
        pads = list(node.attr("pads") or node.attr("paddings"))
        value = float(node.attr("value", 0.0))
    else:
        pads = [int(p) for p in ctx.need_const(node.inputs[1], "pads").reshape(-1)]
        cv = node.input(2)
        value = float(ctx.need_const(cv, "constant_value").reshape(())) if cv else 0.0
        if node.input(3):
            axes = [int(a) for a in ctx.need_const(node.input(3), "axes").reshape(-1)]
            rank = ctx.rank(x)
            full = [0] * (2 * rank)
            for k, a in enumerate(axes):
                a = a + rank if a < 0 else a
                full[a], full[a + rank] = pads[k], pads[k + len(axes)]
            pads = full
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if any(p < 0 for p in pads):
        raise unsupported("negative pads (cropping)")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise unsupported(f"mode {mode!r}")
    padded = [a for a in range(rank) if begins[a] or ends[a]]
    if not padded:
        ctx.op("Copy", [x], node.outputs[:1])
        return
    # kaffa's PadImage pads the axes after the first two: lead with unit axes where needed.
    extra = max(0, 2 - padded[0])
    src, out = x, node.outputs[0]
    if extra:
        src, out = ctx.temp(x + "_lifted"), ctx.temp(out + "_lifted")
        ctx.op("ExpandDims", [x], [src], dims=list(range(extra)))
        begins, ends = [0] * extra + begins, [0] * extra + ends
    ctx.op(
        "PadImage",
        [src],
        [out],
        pads=begins[2:] + ends[2:],
        mode=mode,
        value=value if mode == "constant" else None,
    )
    if extra:
        ctx.op("Squeeze", [out], node.outputs[:1], dims=list(range(extra)))
