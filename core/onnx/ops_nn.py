"""Translators for ONNX layers: Conv, ConvTranspose, pooling, normalization, Gemm/MatMul, Softmax,
Dropout, LRN."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported

# ONNX auto_pad -> kaffa legacy_pad (SAME_UPPER is Caffe2's SAME: the odd pad cell goes at the end).
_AUTO_PAD = {"NOTSET": 0, "VALID": 1, "SAME_UPPER": 2}


def _window(ctx: Context, node: Node, nsp: int, kernels: list[int] | None) -> dict[str, Any]:
    """kaffa window arguments from ONNX kernel_shape/strides/pads/dilations/auto_pad/ceil_mode."""
    args: dict[str, Any] = {}
    if kernels is not None:
        args["kernels"] = [int(k) for k in kernels]
    strides = node.attr("strides") or [1] * nsp
    dilations = node.attr("dilations") or [1] * nsp
    args["strides"] = [int(s) for s in strides]
    if any(d != 1 for d in dilations):
        args["dilations"] = [int(d) for d in dilations]
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad == "SAME_LOWER":
        x = ctx.shape(node.inputs[0])
        sizes = None if x is None else x[2:]
        if kernels is None or sizes is None or any(s is None for s in sizes):
            raise unsupported("auto_pad SAME_LOWER needs static spatial sizes")
        begins, ends = [], []
        for size, k, s, d in zip(sizes, kernels, strides, dilations):
            out = -(-int(size) // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - int(size), 0)
            begins.append(total - total // 2)
            ends.append(total // 2)
        args["pads"] = begins + ends
    elif auto_pad in _AUTO_PAD:
        if _AUTO_PAD[auto_pad]:
            args["legacy_pad"] = _AUTO_PAD[auto_pad]
        else:
            pads = node.attr("pads") or [0] * (2 * nsp)
            if any(p < 0 for p in pads):
                raise unsupported(f"negative pads {list(pads)}")
            args["pads"] = [int(p) for p in pads]
    else:
        raise unsupported(f"auto_pad {auto_pad!r}")
    if node.attr("ceil_mode", 0):
        if args.get("legacy_pad"):
            raise unsupported("ceil_mode with auto_pad")
        args["legacy_pad"] = _ceil_mode(ctx, node, kernels, strides, dilations, args["pads"])
    return args


def _ceil_mode(ctx: Context, node: Node, kernels, strides, dilations, pads) -> int:
    """kaffa's legacy_pad for ONNX ceil_mode: 3 (Caffe's ceil mode), or 0 where the floor size is
    the same. ONNX drops a last window that starts in the end padding even without begin pads,
    Caffe only with them; with static sizes pick whichever rule gives ONNX's sizes."""
    x = ctx.shape(node.inputs[0])
    sizes = None if x is None else x[2:]
    if kernels is None or sizes is None or any(s is None for s in sizes):
        return 3
    nsp = len(sizes)
    onnx_out, caffe_out, floor_out = [], [], []
    for i, (size, k, s, d) in enumerate(zip(sizes, kernels, strides, dilations)):
        pb, pe = pads[i], pads[nsp + i]
        total = int(size) + pb + pe - (d * (k - 1) + 1)
        ceil = -(-total // s) + 1
        late = (ceil - 1) * s >= int(size) + pb  # the last window would start in the end padding
        onnx_out.append(ceil - 1 if late else ceil)
        caffe_out.append(ceil - 1 if late and pb > 0 else ceil)
        floor_out.append(total // s + 1)
    if onnx_out == caffe_out:
        return 3
    if onnx_out == floor_out:
        return 0
    raise unsupported(f"ceil_mode output sizes {onnx_out} (kaffa's ceil mode gives {caffe_out})")


def _spatial_rank(ctx: Context, node: Node, kernels: list[int] | None) -> int:
    if kernels:
        return len(kernels)
    return ctx.rank(node.inputs[0]) - 2


@translator("Conv")
def _conv(ctx: Context, node: Node) -> None:
    w_shape = ctx.shape(node.inputs[1])
    kernels = node.attr("kernel_shape") or (list(w_shape[2:]) if w_shape is not None else None)
    if kernels is None or any(k is None for k in kernels):
        raise unsupported("the kernel size is unknown (no kernel_shape and no static filter shape)")
    args = _window(ctx, node, len(kernels), kernels)
    ins = [i for i in node.inputs[:3] if i]
    ctx.op("Conv", ins, node.outputs[:1], group=int(node.attr("group", 1)), **args)


@translator("ConvTranspose")
def _conv_transpose(ctx: Context, node: Node) -> None:
    w_shape = ctx.shape(node.inputs[1])
    kernels = node.attr("kernel_shape") or (list(w_shape[2:]) if w_shape is not None else None)
    if kernels is None or any(k is None for k in kernels):
        raise unsupported("the kernel size is unknown")
    if any(d != 1 for d in node.attr("dilations") or []):
        raise unsupported("dilated ConvTranspose")
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if node.attr("output_shape") or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        args = _transpose_pads_for_shape(ctx, node, [int(k) for k in kernels], auto_pad)
    else:
        if auto_pad not in ("NOTSET", "VALID"):
            raise unsupported(f"auto_pad {auto_pad}")
        args = _window(ctx, node, len(kernels), kernels)
        args.pop("dilations", None)
        adjs = node.attr("output_padding")
        if adjs and any(adjs):
            args["adjs"] = [int(a) for a in adjs]
    ins = [i for i in node.inputs[:3] if i]
    ctx.op("ConvTranspose", ins, node.outputs[:1], group=int(node.attr("group", 1)), **args)


def _transpose_pads_for_shape(ctx: Context, node: Node, kernels: list[int], auto_pad: str) -> dict[str, Any]:
    """ConvTranspose's pads and adjs for an output_shape (or auto_pad SAME: input * stride), as
    ONNX splits the total padding (SAME_UPPER: the odd cell at the end); a negative end pad is
    extra output cells (kaffa's adj)."""
    x = ctx.shape(node.inputs[0])
    nsp = len(kernels)
    sizes = None if x is None else x[2:]
    if sizes is None or any(s is None for s in sizes):
        raise unsupported("output_shape or auto_pad SAME with non-static spatial sizes")
    strides = [int(s) for s in node.attr("strides") or [1] * nsp]
    op_pad = [int(a) for a in node.attr("output_padding") or [0] * nsp]
    target = [int(v) for v in node.attr("output_shape") or []]
    if len(target) == nsp + 2:
        target = target[2:]
    if not target:
        target = [int(size) * s for size, s in zip(sizes, strides)]
    begins, ends, adjs = [], [], []
    for size, k, s, o, out in zip(sizes, kernels, strides, op_pad, target):
        total = s * (int(size) - 1) + o + k - out
        pb = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        pe = total - pb
        adj = o - min(pe, 0)
        if pb < 0 or adj >= s:
            raise unsupported(f"output size {out} from input size {size} (stride {s}, kernel {k})")
        begins.append(pb)
        ends.append(max(pe, 0))
        adjs.append(adj)
    args: dict[str, Any] = {"kernels": kernels, "strides": strides, "pads": begins + ends}
    if any(adjs):
        args["adjs"] = adjs
    return args


def _pool(kaffa_type: str):
    def translate(ctx: Context, node: Node) -> None:
        kernels = [int(k) for k in node.attr("kernel_shape")]
        args = _window(ctx, node, len(kernels), kernels)
        if kaffa_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
            # The Indices output: kaffa.ops.sampling's MaxPoolWithIndices.
            order = int(node.attr("storage_order", 0))
            ctx.op("MaxPoolWithIndices", node.inputs[:1], node.outputs[:2], storage_order=order, **args)
            return
        if kaffa_type == "AveragePool" and node.attr("count_include_pad", 0):
            args["count_include_pad"] = True  # the declared pads count, not ceil mode's overhang
        ctx.op(kaffa_type, node.inputs[:1], node.outputs[:1], **args)

    return translate


translator("MaxPool")(_pool("MaxPool"))
translator("AveragePool")(_pool("AveragePool"))


@translator("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: Context, node: Node) -> None:
    kind = "AveragePool" if node.op_type == "GlobalAveragePool" else "MaxPool"
    ctx.op(kind, node.inputs[:1], node.outputs[:1], global_pooling=True)


@translator("BatchNormalization")
def _batch_norm(ctx: Context, node: Node) -> None:
    if node.attr("training_mode", 0):
        _batch_norm_training(ctx, node)
        return
    if len([o for o in node.outputs if o]) > 1:
        raise unsupported("training mode (running statistics outputs)")
    x_rank = ctx.shape(node.inputs[0])
    if x_rank is not None and len(x_rank) < 2:
        raise unsupported("an input of rank < 2")
    ctx.op(
        "SpatialBN",
        node.inputs[:5],
        node.outputs[:1],
        is_test=True,
        epsilon=float(node.attr("epsilon", 1e-5)),
    )


def _batch_norm_training(ctx: Context, node: Node) -> None:
    """training_mode=1 (opset >= 14): normalize with the batch mean and biased variance over all
    dims but 1; running_mean/var = momentum * input + (1 - momentum) * batch statistic. Composed
    of kaffa ops, so gradients flow through the batch statistics too."""
    x, scale, bias, mean, var = node.inputs[:5]
    rank = ctx.rank(x)
    if rank < 2:
        raise unsupported("an input of rank < 2")
    axes = [0, *range(2, rank)]
    y = node.outputs[0]
    m_keep = ctx.temp(y + "_batch_mean_keep")
    ctx.op("ReduceMean", [x], [m_keep], axes=axes, keepdims=True)
    centered = ctx.temp(y + "_centered")
    ctx.op("Sub", [x, m_keep], [centered])
    sq = ctx.temp(y + "_sq")
    ctx.op("Sqr", [centered], [sq])
    b_var = ctx.temp(y + "_batch_var")
    ctx.op("ReduceMean", [sq], [b_var], axes=axes, keepdims=False)
    b_mean = ctx.temp(y + "_batch_mean")
    ctx.op("ReduceMean", [x], [b_mean], axes=axes, keepdims=False)
    eps = float(node.attr("epsilon", 1e-5))
    ctx.op("SpatialBN", [x, scale, bias, b_mean, b_var], [y], is_test=True, epsilon=eps)
    momentum = float(node.attr("momentum", 0.9))
    outs = [*node.outputs, "", ""]
    for running, batch, out in ((mean, b_mean, outs[1]), (var, b_var, outs[2])):
        if not out:
            continue
        kept, new = ctx.temp(out + "_kept"), ctx.temp(out + "_new")
        ctx.op("Scale", [running], [kept], scale=momentum)
        ctx.op("Scale", [batch], [new], scale=1.0 - momentum)
        ctx.op("Add", [kept, new], [out])


@translator("LayerNormalization")
def _layer_norm(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    rank = ctx.rank(x)
    axis = ctx.norm_axis(int(node.attr("axis", -1)), rank)
    shape = ctx.shape(x)
    assert shape is not None
    ins = [x]
    affine = False
    norm_shape = shape[axis:]
    if any(d is None for d in norm_shape):
        raise unsupported("the normalized dims must be static")
    d = int(np.prod(norm_shape))
    scale = node.input(1)
    bias = node.input(2)
    gamma = ctx.const(scale) if scale else None
    beta = (ctx.const(bias) if bias else np.zeros_like(gamma)) if gamma is not None else None
    if gamma is not None and beta is not None:
        g = np.broadcast_to(gamma, norm_shape).reshape(d)
        b = np.broadcast_to(beta, norm_shape).reshape(d)
        ins += [ctx.add_const(x + "_gamma", g), ctx.add_const(x + "_beta", b)]
        affine = True
    outs = list(node.outputs) + [""] * 3
    out = outs[0]
    # Scale / B that are not constants: normalize, then Mul and Add (broadcasting) afterwards.
    post = bool(scale) and not affine
    y = ctx.temp(out + "_norm") if post else out
    mean, std = ctx.temp(out + "_mean"), ctx.temp(out + "_std")
    ctx.op(
        "LayerNorm",
        ins,
        [y, mean, std],
        axis=axis,
        epsilon=float(node.attr("epsilon", 1e-5)),
        elementwise_affine=affine,
    )
    if post:
        scaled = ctx.temp(out + "_scaled") if bias else out
        ctx.op("Mul", [y, scale], [scaled])
        if bias:
            ctx.op("Add", [scaled, bias], [out])
    # ONNX's Mean / InvStdDev have X's rank (1s from axis on); kaffa's mean / std dims[:axis] + [1].
    stat_shape = [int(v) if v is not None else 0 for v in shape[:axis]] + [1] * (rank - axis)
    if outs[1]:
        ctx.op("Reshape", [mean], [outs[1], ctx.temp(out + "_old")], shape=stat_shape)
    if outs[2]:
        inv = ctx.temp(out + "_inv")
        ctx.op("Pow", [std], [inv], exponent=-1.0)
        ctx.op("Reshape", [inv], [outs[2], ctx.temp(out + "_old")], shape=stat_shape)


@translator("LRN")
def _lrn(ctx: Context, node: Node) -> None:
    ctx.op(
        "LRN",
        node.inputs[:1],
        node.outputs[:1],
        size=int(node.attr("size")),
        alpha=float(node.attr("alpha", 1e-4)),
        beta=float(node.attr("beta", 0.75)),
        bias=float(node.attr("bias", 1.0)),
    )


@translator("Dropout")
def _dropout(ctx: Context, node: Node) -> None:
    # Inference: the output is the input. A mask output (if asked for) is all true.
    training = node.input(2)
    if training and bool(ctx.need_const(training, "training_mode")):
        # Training with ratio 0 drops nothing: the same as inference.
        ratio = ctx.need_const(node.input(1), "ratio") if node.input(1) else np.asarray(0.5)
        if float(np.asarray(ratio).reshape(-1)[0]) != 0.0:
            raise unsupported("training_mode=True with a ratio > 0 (a random mask)")
    outs = [o for o in node.outputs[:2] if o]
    if len(outs) == 2:
        ctx.op("Dropout", node.inputs[:1], node.outputs[:2], is_test=True)
    else:
        ctx.op("Copy", node.inputs[:1], node.outputs[:1])


def _softmax_last_axis(ctx: Context, node: Node, kind: str) -> None:
    """opset >= 13: softmax along one axis. The last axis is kaffa's Softmax at rank-1;
    another axis is moved last, and back."""
    x, out = node.inputs[0], node.outputs[0]
    rank = ctx.rank(x)
    axis = ctx.norm_axis(int(node.attr("axis", -1)), rank)
    y = out if kind == "Softmax" else ctx.temp(out + "_softmax")
    if axis == rank - 1:
        ctx.op("Softmax", [x], [y], axis=axis)
    else:
        perm = [i for i in range(rank) if i != axis] + [axis]
        inv = list(np.argsort(perm))
        moved = ctx.temp(x + "_moved")
        ctx.op("Transpose", [x], [moved], axes=perm)
        sm = ctx.temp(out + "_sm")
        ctx.op("Softmax", [moved], [sm], axis=rank - 1)
        ctx.op("Transpose", [sm], [y], axes=[int(i) for i in inv])
    if kind == "LogSoftmax":
        ctx.op("Log", [y], [out])


def _softmax_coerced(ctx: Context, node: Node, kind: str) -> None:
    """opset < 13: the input is coerced to 2-D at ``axis`` (Caffe2's rule, kaffa's Softmax)."""
    x, out = node.inputs[0], node.outputs[0]
    axis = int(node.attr("axis", 1))
    if axis < 0:
        axis += ctx.rank(x)
    y = out if kind == "Softmax" else ctx.temp(out + "_softmax")
    ctx.op("Softmax", [x], [y], axis=axis)
    if kind == "LogSoftmax":
        ctx.op("Log", [y], [out])


@translator("Softmax", "LogSoftmax")
def _softmax(ctx: Context, node: Node) -> None:
    if ctx.opset >= 13:
        _softmax_last_axis(ctx, node, node.op_type)
    else:
        _softmax_coerced(ctx, node, node.op_type)


@translator("Gemm")
def _gemm(ctx: Context, node: Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    c = node.input(2)
    out = node.outputs[0]
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    b_val = ctx.const(b)
    c_val = ctx.const(c) if c else None
    if not trans_a and b_val is not None and b_val.ndim == 2:
        # FC: Y = X · Wᵀ + bias, W [N, K].
        w = b_val if trans_b else b_val.T
        if alpha != 1.0:
            w = w * np.asarray(alpha, dtype=w.dtype)
        n = w.shape[0]
        ins = [a, ctx.add_const(b + "_fc_w", np.ascontiguousarray(w))]
        bias_ok = c_val is None and not c
        if c_val is not None and c_val.size in (1, n) and (c_val.ndim < 2 or c_val.shape[0] == 1):
            bias = np.broadcast_to(c_val.reshape(-1), (n,)) * np.asarray(beta, dtype=c_val.dtype)
            ins.append(ctx.add_const(c + "_fc_b", bias.astype(w.dtype)))
            bias_ok = True
        fc_out = out if bias_ok else ctx.temp(out + "_fc")
        ctx.op("FC", ins, [fc_out])
        if not bias_ok:
            _add_bias(ctx, fc_out, c, beta, out)
        return
    mm = out if not c else ctx.temp(out + "_mm")
    scaled = mm if alpha == 1.0 else ctx.temp(out + "_ab")
    ctx.op("MatMul", [a, b], [scaled], trans_a=bool(trans_a), trans_b=bool(trans_b))
    if alpha != 1.0:
        ctx.op("Scale", [scaled], [mm], scale=alpha)
    if c:
        _add_bias(ctx, mm, c, beta, out)


def _add_bias(ctx: Context, y: str, c: str, beta: float, out: str) -> None:
    if beta == 1.0:
        ctx.op("Add", [y, c], [out])
    elif beta != 0.0:
        cb = ctx.temp(c + "_beta")
        ctx.op("Scale", [c], [cb], scale=beta)
        ctx.op("Add", [y, cb], [out])
    else:
        ctx.op("Copy", [y], [out])


@translator("MatMul")
def _matmul(ctx: Context, node: Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra < 1 or rb < 1:
        raise unsupported("0-d operands")
    if ra == 1 or rb == 1:
        # Promote 1-D operands to matrices and drop the added dim afterwards (numpy's rule).
        a2, b2 = a, b
        if ra == 1:
            a2 = ctx.temp(a + "_row")
            ctx.op("ExpandDims", [a], [a2], dims=[0])
        if rb == 1:
            b2 = ctx.temp(b + "_col")
            ctx.op("ExpandDims", [b], [b2], dims=[1])
        y = ctx.temp(out + "_mm")
        _matmul_nd(ctx, a2, b2, max(ra, 2), max(rb, 2), y)
        rank_y = max(max(ra, 2), max(rb, 2))
        drop = ([rank_y - 2] if ra == 1 else []) + ([rank_y - 1] if rb == 1 else [])
        ctx.op("Squeeze", [y], [out], dims=drop)
        return
    _matmul_nd(ctx, a, b, ra, rb, out)


def _matmul_nd(ctx: Context, a: str, b: str, ra: int, rb: int, out: str) -> None:
    b_val = ctx.const(b)
    if ra == 2 and rb == 2:
        ctx.op("MatMul", [a, b], [out])
    elif rb == 2 and b_val is not None:
        # [..., K] · [K, N]: FC over the last axis with W = Bᵀ.
        w = ctx.add_const(b + "_fc_w", np.ascontiguousarray(b_val.T))
        ctx.op("FC", [a, w], [out], axis=ra - 1)
    else:
        ctx.op("BatchMatMul", [a, b], [out], broadcast=True)
