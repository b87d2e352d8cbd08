"""Translators of Caffe's layer types onto kaffa ops (registered in ``kaffa.caffe.LAYERS``).

Each follows the Caffe layer's own C++ (BVLC master) for what its parameters mean; where a
kaffa op lacks a semantic, the layer is composed from several ops (see docs/migrating-from-caffe.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.proto import caffe_pb2

from .translator import Context, layer

P = caffe_pb2
_POOL = P.PoolingParameter
_LRN = P.LRNParameter
_ELT = P.EltwiseParameter


def _simple(ctx: Context, op_type: str, **args: Any) -> None:
    x = ctx.bottom(0)
    ctx.op(op_type, [x], [ctx.top(0, op_type, x)], **args)


# -- inputs and identities ------------------------------------------------------------------------


@layer("Input")
def _input(ctx: Context, lp: Any) -> None:
    shapes = list(lp.input_param.shape)
    if len(shapes) not in (0, 1, len(lp.top)):
        raise ctx.error(f"has {len(lp.top)} tops but {len(shapes)} shapes (give one, or one per top)")
    for i, t in enumerate(lp.top):
        shape = [int(d) for d in shapes[i if len(shapes) > 1 else 0].dim] if shapes else None
        ctx.add_input(t, ctx.input_overrides.get(t, shape))


@layer("Split")
def _split(ctx: Context, lp: Any) -> None:
    x = ctx.bottom(0)
    for i in range(len(lp.top)):
        ctx.alias(i, x)


@layer("Dropout")
def _dropout(ctx: Context, lp: Any) -> None:
    # BVLC's Dropout scales while training, so at test time it is the identity.
    ctx.alias(0, ctx.bottom(0))


@layer("Silence")
def _silence(ctx: Context, lp: Any) -> None:
    """Consumes its bottoms and has no tops: nothing to compute."""


# -- activations ----------------------------------------------------------------------------------


@layer("ReLU")
def _relu(ctx: Context, lp: Any) -> None:
    slope = float(lp.relu_param.negative_slope)
    if slope == 0.0:
        _simple(ctx, "Relu")
    else:
        _simple(ctx, "LeakyRelu", alpha=slope)


@layer("PReLU")
def _prelu(ctx: Context, lp: Any) -> None:
    x = ctx.bottom(0)
    slopes = ctx.blobs(1)[0].reshape(-1)
    shape = ctx.shape(x)
    if lp.prelu_param.channel_shared and slopes.size != 1:
        raise ctx.error(f"channel_shared PReLU has {slopes.size} slopes, not 1")
    if shape is not None and len(shape) > 1 and slopes.size not in (1, shape[1]):
        raise ctx.error(f"has {slopes.size} slopes for {shape[1]} channels")
    ctx.op("PRelu", [x, ctx.param("slope", slopes)], [ctx.top(0, "PRelu", x)])


@layer("Sigmoid")
def _sigmoid(ctx: Context, lp: Any) -> None:
    _simple(ctx, "Sigmoid")


@layer("TanH")
def _tanh(ctx: Context, lp: Any) -> None:
    _simple(ctx, "Tanh")


@layer("AbsVal")
def _absval(ctx: Context, lp: Any) -> None:
    _simple(ctx, "Abs")


@layer("BNLL")
def _bnll(ctx: Context, lp: Any) -> None:
    _simple(ctx, "Softplus")  # log(1 + exp(x))


@layer("ELU")
def _elu(ctx: Context, lp: Any) -> None:
    _simple(ctx, "Elu", alpha=float(lp.elu_param.alpha))


@layer("Power")
def _power(ctx: Context, lp: Any) -> None:
    """y = (shift + scale * x) ^ power, composed from Scale, Add and Pow (identity parts left out)."""
    p = lp.power_param
    x = ctx.bottom(0)
    steps: list[tuple[str, dict[str, Any], list[str]]] = []
    if p.scale != 1.0:
        steps.append(("Scale", {"scale": float(p.scale)}, []))
    if p.shift != 0.0:
        steps.append(("Add", {}, [ctx.param("shift", np.array([p.shift], np.float32))]))
    if p.power != 1.0:
        steps.append(("Pow", {"exponent": float(p.power)}, []))
    if not steps:
        ctx.alias(0, x)
        return
    cur = x
    for k, (op_type, args, extra) in enumerate(steps):
        out = ctx.top(0, op_type, cur) if k == len(steps) - 1 else ctx.temp("power")
        ctx.op(op_type, [cur, *extra], [out], **args)
        cur = out


# -- convolution and fully connected --------------------------------------------------------------


def _per_axis(
    ctx: Context, values: Any, hw: tuple[int, int] | None, nsp: int, default: int | None, what: str
) -> list[int]:
    """Caffe's BaseConvolutionLayer rule for kernel/stride/pad/dilation: ``*_h``/``*_w`` (2-D
    only), else one value for every spatial axis or one per axis."""
    if hw is not None:
        if nsp != 2:
            raise ctx.error(f"{what}_h/{what}_w are for 2-D convolution only ({nsp} spatial axes)")
        return [int(hw[0]), int(hw[1])]
    vals = [int(v) for v in values]
    if not vals:
        if default is None:
            raise ctx.error(f"no {what} size given ({what}_size, or {what}_h and {what}_w)")
        return [default] * nsp
    if len(vals) == 1:
        return vals * nsp
    if len(vals) != nsp:
        raise ctx.error(f"{what} has {len(vals)} values for {nsp} spatial axes")
    return vals


def _conv_geometry(ctx: Context, p: Any, x: str, weight: np.ndarray) -> dict[str, list[int]]:
    rank = ctx.rank(x)
    if ctx.axis(p.axis, x) != 1:
        raise ctx.error(f"channel axis {p.axis} is not supported (kaffa convolves NCHW: axis 1)")
    if rank is not None:
        nsp = rank - 2
    elif weight.ndim >= 3:
        nsp = weight.ndim - 2
    else:
        nsp = 2 if p.HasField("kernel_h") or len(p.kernel_size) <= 1 else len(p.kernel_size)

    def hw(name: str) -> tuple[int, int] | None:
        has_h, has_w = p.HasField(f"{name}_h"), p.HasField(f"{name}_w")
        if has_h != has_w and name == "kernel":
            raise ctx.error("kernel_h and kernel_w must be given together")
        return (getattr(p, f"{name}_h"), getattr(p, f"{name}_w")) if has_h or has_w else None

    return {
        "kernels": _per_axis(ctx, p.kernel_size, hw("kernel"), nsp, None, "kernel"),
        "strides": _per_axis(ctx, p.stride, hw("stride"), nsp, 1, "stride"),
        "pads": _per_axis(ctx, p.pad, hw("pad"), nsp, 0, "pad"),
        "dilations": _per_axis(ctx, p.dilation, None, nsp, 1, "dilation"),
    }


def _filter(ctx: Context, w: np.ndarray, lead: tuple[int, ...], kernels: list[int]) -> np.ndarray:
    """The weight blob in kaffa's layout [lead..., -1, *kernels] (old files store 4-D shapes)."""
    want = int(np.prod(lead)) * int(np.prod(kernels))
    if w.size % want:
        raise ctx.error(f"weight blob {list(w.shape)} does not fit {list(lead)} x kernel {kernels}")
    return w.reshape(*lead, -1, *kernels)


def _bias(ctx: Context, blobs: list[np.ndarray], n: int) -> list[str]:
    if len(blobs) < 2:
        raise ctx.error("bias_term is set but the caffemodel has no bias blob")
    b = blobs[1].reshape(-1)
    if b.size != n:
        raise ctx.error(f"bias blob has {b.size} values for {n} outputs")
    return [ctx.param("b", b)]


@layer("Convolution")
def _convolution(ctx: Context, lp: Any) -> None:
    p = lp.convolution_param
    x = ctx.bottom(0)
    blobs = ctx.blobs(2 if p.bias_term else 1)
    geo = _conv_geometry(ctx, p, x, blobs[0])
    m, g = int(p.num_output), int(p.group)
    w = _filter(ctx, blobs[0], (m,), geo["kernels"])
    inputs = [x, ctx.param("w", w)] + (_bias(ctx, blobs, m) if p.bias_term else [])
    ctx.op(
        "Conv",
        inputs,
        [ctx.top(0, "Conv", x)],
        strides=geo["strides"],
        pads=geo["pads"] * 2,
        dilations=geo["dilations"],
        group=g,
    )


@layer("Deconvolution")
def _deconvolution(ctx: Context, lp: Any) -> None:
    """Caffe's Deconvolution is kaffa's ConvTranspose with the same [C_in, M/group, *K] filter;
    dilation, which ConvTranspose lacks, is applied to the filter (zeros between the taps)."""
    p = lp.convolution_param
    x = ctx.bottom(0)
    blobs = ctx.blobs(2 if p.bias_term else 1)
    geo = _conv_geometry(ctx, p, x, blobs[0])
    m, g = int(p.num_output), int(p.group)
    if m % g:
        raise ctx.error(f"num_output {m} does not divide into {g} groups")
    w = _filter(ctx, blobs[0], (m // g,), geo["kernels"])  # [M/group, C_in, *K] by count only
    w = w.reshape(-1, m // g, *geo["kernels"])  # Caffe's [C_in, M/group, *K]
    if any(d > 1 for d in geo["dilations"]):
        ext = [d * (k - 1) + 1 for k, d in zip(geo["kernels"], geo["dilations"])]
        dilated = np.zeros((*w.shape[:2], *ext), np.float32)
        dilated[(slice(None), slice(None), *(slice(None, None, d) for d in geo["dilations"]))] = w
        w = dilated
    inputs = [x, ctx.param("w", w)] + (_bias(ctx, blobs, m) if p.bias_term else [])
    ctx.op(
        "ConvTranspose",
        inputs,
        [ctx.top(0, "ConvTranspose", x)],
        strides=geo["strides"],
        pads=geo["pads"] * 2,
        group=g,
    )


@layer("InnerProduct")
def _inner_product(ctx: Context, lp: Any) -> None:
    p = lp.inner_product_param
    x = ctx.bottom(0)
    blobs = ctx.blobs(2 if p.bias_term else 1)
    n = int(p.num_output)
    w = blobs[0]
    if n <= 0 or w.size % n:
        raise ctx.error(f"weight blob {list(w.shape)} does not fit num_output {n}")
    k = w.size // n
    # transpose: Caffe stores the weights [K, N] instead of [N, K].
    w = w.reshape(k, n).T if p.transpose else w.reshape(n, k)
    inputs = [x, ctx.param("w", w)] + (_bias(ctx, blobs, n) if p.bias_term else [])
    ctx.op("FC", inputs, [ctx.top(0, "FC", x)], axis=ctx.axis(p.axis, x))


# -- pooling and normalization --------------------------------------------------------------------


def _caffe_pooled(size: int, k: int, s: int, pad: int, any_pad: bool, ceil: bool) -> int:
    """Caffe's PoolingLayer::Reshape output size."""
    span = size + 2 * pad - k
    out = (-(-span // s) if ceil else span // s) + 1
    if any_pad and (out - 1) * s >= size + pad:
        out -= 1  # the last window must start inside the image (or its begin pad)
    return out


@layer("Pooling")
def _pooling(ctx: Context, lp: Any) -> None:
    p = lp.pooling_param
    x = ctx.bottom(0)
    if p.pool == _POOL.STOCHASTIC:
        raise ctx.error("STOCHASTIC pooling has no kaffa op (its test-time form weights by activation)")
    if len(lp.top) > 1:
        raise ctx.error("a second top (the max-pooling mask) is not translated")
    op_type = "MaxPool" if p.pool == _POOL.MAX else "AveragePool"
    extra: dict[str, Any] = {"count_include_pad": True} if op_type == "AveragePool" else {}
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise ctx.error("global_pooling takes no kernel size (Caffe refuses it too)")
        if p.pad or p.pad_h or p.pad_w or p.stride != 1 or p.stride_h > 1 or p.stride_w > 1:
            raise ctx.error("global_pooling needs pad 0 and stride 1 (Caffe refuses it too)")
        ctx.op(op_type, [x], [ctx.top(0, op_type, x)], global_pooling=True, **extra)
        return
    if p.HasField("kernel_size") == (p.HasField("kernel_h") or p.HasField("kernel_w")):
        raise ctx.error("give the kernel size as kernel_size or as kernel_h and kernel_w (one of them)")
    if p.HasField("kernel_size"):
        kh = kw = int(p.kernel_size)
    elif p.HasField("kernel_h") and p.HasField("kernel_w"):
        kh, kw = int(p.kernel_h), int(p.kernel_w)
    else:
        raise ctx.error("kernel_h and kernel_w must be given together")
    ph, pw = (int(p.pad_h), int(p.pad_w)) if p.HasField("pad_h") or p.HasField("pad_w") else (p.pad, p.pad)
    sh, sw = (
        (int(p.stride_h), int(p.stride_w))
        if p.HasField("stride_h") or p.HasField("stride_w")
        else (p.stride,) * 2
    )
    if ph >= kh or pw >= kw:
        raise ctx.error(f"pad {[ph, pw]} must be smaller than the kernel {[kh, kw]} (as Caffe checks)")
    rank = ctx.rank(x)
    if rank is not None and rank != 4:
        raise ctx.error(f"Caffe pools 4-D blobs; the input has rank {rank}")
    ceil = p.round_mode == _POOL.CEIL
    # Ceil mode is kaffa's legacy_pad=3 (Caffe's output size); AVE divides by the window clipped to
    # the declared padding (count_include_pad), not by the ceil-mode overhang.
    args = dict(
        kernels=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw], legacy_pad=3 if ceil else 0, **extra
    )
    shape = ctx.shape(x)
    want = None
    if shape is not None and ceil:
        any_pad = bool(ph or pw)  # Caffe drops a window starting in the end pad when ANY axis is padded
        want = [
            _caffe_pooled(shape[2 + i], k, s, q, any_pad, True)
            for i, (k, s, q) in enumerate([(kh, sh, ph), (kw, sw, pw)])
        ]
    out = ctx.top(0, op_type, x)
    ctx.op(op_type, [x], [out], **args)
    got = ctx.shape(out)
    if want is None or got is None or list(got[2:]) == want:
        return
    # kaffa drops a last window that starts in the end padding axis by axis; Caffe checks every
    # axis once any axis is padded, so an unpadded axis may lose its last window too. Cropping
    # the input to the windows Caffe keeps gives Caffe's windows (and divisors) exactly.
    ctx.ops.pop()
    ends = [-1, -1] + [
        (w - 1) * s + k if w < g else -1 for w, g, s, k in zip(want, got[2:], (sh, sw), (kh, kw))
    ]
    trimmed = ctx.temp("trim")
    ctx.op("Slice", [x], [trimmed], starts=[0, 0, 0, 0], ends=ends)
    ctx.op(op_type, [trimmed], [out], **args)


@layer("LRN")
def _lrn(ctx: Context, lp: Any) -> None:
    p = lp.lrn_param
    x = ctx.bottom(0)
    size = int(p.local_size)
    if size % 2 == 0:
        raise ctx.error(f"local_size must be odd, got {size} (as Caffe checks)")
    if p.norm_region == _LRN.ACROSS_CHANNELS:
        ctx.op(
            "LRN",
            [x],
            [ctx.top(0, "LRN", x)],
            size=size,
            alpha=float(p.alpha),
            beta=float(p.beta),
            bias=float(p.k),
        )
        return
    # WITHIN_CHANNEL, as Caffe builds it: x * (1 + alpha * mean of x^2 over a size x size window,
    # zero-padded, divided by size^2) ^ -beta. (k is not used, as in Caffe.)
    pad = (size - 1) // 2
    sq, avg, scaled, base, power = (ctx.temp(h) for h in ("sq", "avg", "scaled", "base", "pow"))
    ctx.op("Sqr", [x], [sq])
    ctx.op(
        "AveragePool",
        [sq],
        [avg],
        kernels=[size, size],
        strides=[1, 1],
        pads=[pad] * 4,
        legacy_pad=3,
        count_include_pad=True,
    )
    ctx.op("Scale", [avg], [scaled], scale=float(p.alpha))
    ctx.op("Add", [scaled, ctx.param("one", np.ones(1, np.float32))], [base])
    ctx.op("Pow", [base], [power], exponent=-float(p.beta))
    ctx.op("Mul", [x, power], [ctx.top(0, "Mul", x)])


def _channel_param(ctx: Context, value: np.ndarray, x: str, what: str) -> np.ndarray:
    v = value.reshape(-1)
    shape = ctx.shape(x)
    if shape is not None and len(shape) > 1 and v.size != shape[1]:
        raise ctx.error(f"{what} has {v.size} values for {shape[1]} channels")
    return v


def _foldable_scale(ctx: Context, lp: Any) -> Any | None:
    """The Scale layer right after this BatchNorm, if it is the only reader of the BatchNorm's
    output and applies one learned value per channel (what Caffe's BN + Scale pairs are)."""
    nxt = ctx.index + 1
    if len(lp.top) != 1 or nxt >= len(ctx.layers) or ctx.readers(ctx.index, 0) != [nxt]:
        return None
    s = ctx.layers[nxt]
    sp = s.scale_param
    if s.type != "Scale" or len(s.bottom) != 1 or len(s.top) != 1 or s.bottom[0] != lp.top[0]:
        return None
    rank = ctx.rank(ctx.bottom(0))
    axis = sp.axis % rank if rank is not None and -rank <= sp.axis < rank else sp.axis
    return s if axis == 1 and sp.num_axes == 1 else None


@layer("BatchNorm")
def _batch_norm(ctx: Context, lp: Any) -> None:
    """BatchNorm (and a Scale right after it, folded in) as one SpatialBN: Caffe keeps the running
    sums and their scale factor, mean = blobs[0] / blobs[2], var = blobs[1] / blobs[2]."""
    p = lp.batch_norm_param
    x = ctx.bottom(0)
    blobs = ctx.blobs(3)
    factor = float(blobs[2].reshape(-1)[0])
    inv = 0.0 if factor == 0.0 else 1.0 / factor
    mean = _channel_param(ctx, blobs[0], x, "the mean blob").astype(np.float64) * inv
    var = _channel_param(ctx, blobs[1], x, "the variance blob").astype(np.float64) * inv
    scale_lp = _foldable_scale(ctx, lp)
    owner = scale_lp if scale_lp is not None else lp  # whose top the result is and whose params
    gamma, beta = np.ones_like(mean), np.zeros_like(mean)
    if scale_lp is not None:
        sblobs = ctx.blobs(2 if scale_lp.scale_param.bias_term else 1, scale_lp)
        gamma = _channel_param(ctx, sblobs[0], x, "the Scale layer's blob").astype(np.float64)
        if scale_lp.scale_param.bias_term:
            beta = _channel_param(ctx, sblobs[1], x, "the Scale layer's bias").astype(np.float64)
        ctx.skip.add(ctx.index + 1)
    eps = float(p.eps)
    global_stats = p.use_global_stats if p.HasField("use_global_stats") else True  # TEST phase
    if not global_stats:
        _batch_stats_norm(ctx, x, eps, gamma, beta, owner)
        return
    if eps > 0:
        # Named as Caffe2's translator does: <scale layer>_w/_b (or <bn>_scale/_bias), <bn>_mean/_var.
        folded = scale_lp is not None
        inputs = [
            x,
            ctx.param("w" if folded else "scale", gamma, owner),
            ctx.param("b" if folded else "bias", beta, owner),
            ctx.param("mean", mean),
            ctx.param("var", var),
        ]
        ctx.op("SpatialBN", inputs, [ctx.top(0, "SpatialBN", x, owner)], is_test=True, epsilon=eps)
        return
    a = gamma / np.sqrt(var + eps)  # SpatialBN needs epsilon > 0: fold into y = a * x + b instead
    _affine(ctx, x, a, beta - mean * a, 1, owner)


def _batch_stats_norm(
    ctx: Context, x: str, eps: float, gamma: np.ndarray, beta: np.ndarray, owner: Any
) -> None:
    """use_global_stats: false at test time: normalize with the batch's own mean and biased
    variance over N and the spatial axes, as Caffe does."""
    rank = ctx.rank(x)
    if rank is None:
        raise ctx.error("use_global_stats: false needs the input's rank (give the inputs a shape)")
    axes = [0, *range(2, rank)]
    mean, centered, sq, var, std, norm = (
        ctx.temp(h) for h in ("mean", "centered", "sq", "var", "std", "norm")
    )
    ctx.op("ReduceMean", [x], [mean], axes=axes, keepdims=True)
    ctx.op("Sub", [x, mean], [centered])
    ctx.op("Sqr", [centered], [sq])
    ctx.op("ReduceMean", [sq], [var], axes=axes, keepdims=True)
    ctx.op("Add", [var, ctx.param("eps", np.array([eps], np.float32), owner)], [std])
    ctx.op("Sqrt", [std], [std])
    ctx.op("Div", [centered, std], [norm])
    if np.all(gamma == 1) and np.all(beta == 0):
        ctx.op("Copy", [norm], [ctx.top(0, "Copy", x, owner)])
        return
    _affine(ctx, norm, gamma, beta, 1, owner, top_input=x)


def _affine(
    ctx: Context,
    x: str,
    a: np.ndarray,
    b: np.ndarray | None,
    axis: int,
    owner: Any,
    top_input: str | None = None,
) -> None:
    """y = x * a + b with a and b matched inside x at ``axis`` (Caffe2's legacy broadcast)."""
    mul_out = ctx.top(0, "Mul", top_input or x, owner) if b is None else ctx.temp("scaled")
    ctx.op("Mul", [x, ctx.param("scale", a, owner)], [mul_out], broadcast=True, axis=axis)
    if b is not None:
        ctx.op(
            "Add",
            [mul_out, ctx.param("bias", b, owner)],
            [ctx.top(0, "Add", top_input or x, owner)],
            broadcast=True,
            axis=axis,
        )


def _param_shape(ctx: Context, blob: np.ndarray, x: str, axis: int, num_axes: int) -> np.ndarray:
    """A Scale/Bias blob shaped as x.shape[axis : axis + num_axes] (old files store 4-D shapes)."""
    shape = ctx.shape(x)
    if shape is None:
        return blob
    want = shape[axis:] if num_axes < 0 else shape[axis : axis + num_axes]
    if blob.size != int(np.prod(want)):
        raise ctx.error(
            f"parameter blob {list(blob.shape)} does not fit input dims {list(want)} at axis {axis}"
        )
    return blob.reshape(want)


def _broadcast_op(ctx: Context, op_type: str, x: str, other: str, out: str, axis: int) -> None:
    """x (op) other, other matched inside x at ``axis``; a scalar ``other`` broadcasts everywhere."""
    other_shape = ctx.shapes.get(other)
    if other_shape is not None and int(np.prod(other_shape or (1,))) == 1 and len(other_shape) <= 1:
        ctx.op(op_type, [x, other], [out])  # numpy broadcasting of a [] or [1] value
    else:
        ctx.op(op_type, [x, other], [out], broadcast=True, axis=axis)


@layer("Scale")
def _scale(ctx: Context, lp: Any) -> None:
    """Scale (with its optional bias): y = x * scale (+ bias), the scale matched inside x at
    ``axis``, learned (one bottom) or given as the second bottom."""
    p = lp.scale_param
    x = ctx.bottom(0)
    axis = ctx.axis(p.axis, x)
    if len(lp.bottom) > 1:
        s = ctx.bottom(1)
        blobs = ctx.blobs(1) if p.bias_term else []
        bias_blob = blobs[0] if p.bias_term else None
        bias_shape = ctx.shape(s)
    else:
        blobs = ctx.blobs(2 if p.bias_term else 1)
        value = _param_shape(ctx, blobs[0], x, axis, int(p.num_axes))
        s = ctx.param("w", value)
        bias_blob = blobs[1] if p.bias_term else None
        bias_shape = value.shape
    if bias_blob is None:
        _broadcast_op(ctx, "Mul", x, s, ctx.top(0, "Mul", x), axis)
        return
    scaled = ctx.temp("scaled")
    _broadcast_op(ctx, "Mul", x, s, scaled, axis)
    b = bias_blob.reshape(bias_shape) if bias_shape is not None else bias_blob
    _broadcast_op(ctx, "Add", scaled, ctx.param("b", b), ctx.top(0, "Add", x), axis)


@layer("Bias")
def _bias_layer(ctx: Context, lp: Any) -> None:
    p = lp.bias_param
    x = ctx.bottom(0)
    axis = ctx.axis(p.axis, x)
    if len(lp.bottom) > 1:
        b = ctx.bottom(1)
    else:
        b = ctx.param("b", _param_shape(ctx, ctx.blobs(1)[0], x, axis, int(p.num_axes)))
    _broadcast_op(ctx, "Add", x, b, ctx.top(0, "Add", x), axis)


@layer("Softmax")
def _softmax(ctx: Context, lp: Any) -> None:
    """Caffe normalizes along one axis; kaffa's Softmax over all trailing dims from ``axis``. The
    two agree when the axis is the last non-trivial one, else the axis is moved last and back."""
    x = ctx.bottom(0)
    shape = ctx.shapes.get(x)
    if shape is None:
        raise ctx.error("Softmax needs the rank of its input (give the net's inputs a shape)")
    rank = len(shape)
    axis = ctx.axis(lp.softmax_param.axis, x)
    if all(d == 1 for d in shape[axis + 1 :]):
        ctx.op("Softmax", [x], [ctx.top(0, "Softmax", x)], axis=axis)
        return
    perm = [i for i in range(rank) if i != axis] + [axis]
    back = [perm.index(i) for i in range(rank)]
    moved, normed = ctx.temp("moved"), ctx.temp("softmax")
    ctx.op("Transpose", [x], [moved], axes=perm)
    ctx.op("Softmax", [moved], [normed], axis=rank - 1)
    ctx.op("Transpose", [normed], [ctx.top(0, "Transpose", x)], axes=back)


# -- tensor layers --------------------------------------------------------------------------------


@layer("Concat")
def _concat(ctx: Context, lp: Any) -> None:
    p = lp.concat_param
    xs = [ctx.bottom(i) for i in range(len(lp.bottom))]
    axis = int(p.concat_dim) if p.HasField("concat_dim") else ctx.axis(p.axis, xs[0])
    if len(xs) == 1:
        ctx.alias(0, xs[0])  # Caffe copies a single bottom
        return
    ctx.op("Concat", xs, [ctx.top(0, "Concat", xs[0])], axis=axis)


@layer("Eltwise")
def _eltwise(ctx: Context, lp: Any) -> None:
    p = lp.eltwise_param
    xs = [ctx.bottom(i) for i in range(len(lp.bottom))]
    if len(xs) < 2:
        raise ctx.error(f"Eltwise needs at least 2 bottoms, has {len(xs)}")
    coeffs = [float(c) for c in p.coeff]
    if coeffs and len(coeffs) != len(xs):
        raise ctx.error(f"{len(coeffs)} coefficients for {len(xs)} bottoms (give one per bottom)")
    if coeffs and p.operation != _ELT.SUM:
        raise ctx.error("coefficients apply to the SUM operation only (as Caffe checks)")
    if p.operation == _ELT.SUM:
        if all(c == 1.0 for c in coeffs):
            ctx.op("Sum", xs, [ctx.top(0, "Sum", xs[0])])
            return
        # Scaled inputs, then Sum (rather than WeightedSum, which has no ONNX export).
        terms = []
        for x, c in zip(xs, coeffs):
            if c == 1.0:
                terms.append(x)
            else:
                terms.append(ctx.temp("scaled"))
                ctx.op("Scale", [x], [terms[-1]], scale=c)
        ctx.op("Sum", terms, [ctx.top(0, "Sum", terms[0])])
    elif p.operation == _ELT.MAX:
        ctx.op("Max", xs, [ctx.top(0, "Max", xs[0])])
    else:  # PROD: a chain of Mul
        cur = xs[0]
        for k, x in enumerate(xs[1:], start=2):
            out = ctx.top(0, "Mul", xs[0]) if k == len(xs) else ctx.temp("prod")
            ctx.op("Mul", [cur, x], [out])
            cur = out


@layer("Flatten")
def _flatten(ctx: Context, lp: Any) -> None:
    p = lp.flatten_param
    x = ctx.bottom(0)
    rank = ctx.rank(x)
    if rank is None and p.axis == 1 and p.end_axis == -1:
        ctx.op("Flatten", [x], [ctx.top(0, "Flatten", x)], axis=1)
        return
    if rank is None:
        raise ctx.error("Flatten with axis/end_axis needs the input's rank (give the inputs a shape)")
    axis, end = ctx.axis(p.axis, x), ctx.axis(p.end_axis, x, "end_axis")
    if end < axis:
        raise ctx.error(f"end_axis {p.end_axis} comes before axis {p.axis}")
    if axis == 1 and end == rank - 1:
        ctx.op("Flatten", [x], [ctx.top(0, "Flatten", x)], axis=1)
        return
    shape = ctx.need_shape(x, "Flatten with these axes")
    dims = [*shape[:axis], -1, *shape[end + 1 :]]
    if axis > 0:
        dims[0] = 0  # keep the batch size free
    ctx.op("Reshape", [x], [ctx.top(0, "Reshape", x)], shape=dims)


@layer("Reshape")
def _reshape(ctx: Context, lp: Any) -> None:
    """Caffe's Reshape replaces dims [axis, axis + num_axes) of the input with ``shape`` (0 copies
    the input's dim there, -1 is inferred)."""
    p = lp.reshape_param
    x = ctx.bottom(0)
    dims = [int(d) for d in p.shape.dim]
    if sum(1 for d in dims if d == -1) > 1:
        raise ctx.error("at most one dim may be -1")
    rank = ctx.rank(x)
    start = int(p.axis)
    if start < 0:
        if rank is None:
            raise ctx.error("a negative axis needs the input's rank (give the inputs a shape)")
        start += rank + 1
    if p.num_axes < -1:
        raise ctx.error(f"num_axes must be >= -1, got {p.num_axes}")
    if rank is not None and not 0 <= start <= rank:
        raise ctx.error(f"axis {p.axis} is out of range for an input of rank {rank}")
    tail: list[int] = []
    if p.num_axes != -1:
        end = start + int(p.num_axes)
        if rank is None:
            raise ctx.error("num_axes needs the input's rank (give the inputs a shape)")
        if end > rank:
            raise ctx.error(f"axis {start} + num_axes {p.num_axes} exceeds the input's rank {rank}")
        if end < rank:
            if len(dims) == end - start:
                tail = [0] * (rank - end)  # same positions: copy the dims
            else:
                tail = list(ctx.need_shape(x, "Reshape with num_axes")[end:])
    target = [0] * start + dims + tail
    ctx.op("Reshape", [x], [ctx.top(0, "Reshape", x)], shape=target)


@layer("Crop")
def _crop(ctx: Context, lp: Any) -> None:
    """bottom[0] cropped to bottom[1]'s dims from ``axis`` on, starting at the offsets."""
    p = lp.crop_param
    x, ref = ctx.bottom(0), ctx.bottom(1)
    rank = ctx.rank(x)
    if rank is None:
        raise ctx.error("Crop needs the rank of its first input (give the net's inputs a shape)")
    axis = ctx.axis(p.axis, x)
    ref_shape = ctx.need_shape(ref, "Crop (the reference bottom)")
    if len(ref_shape) != rank:
        raise ctx.error(f"the bottoms have ranks {rank} and {len(ref_shape)}")
    n = rank - axis
    offs = [int(o) for o in p.offset]
    if len(offs) == 0:
        offs = [0] * n
    elif len(offs) == 1:
        offs = offs * n
    elif len(offs) != n:
        raise ctx.error(f"{len(offs)} offsets for {n} cropped axes (give 0, 1 or {n})")
    ends = [o + ref_shape[axis + i] for i, o in enumerate(offs)]
    shape = ctx.shape(x)
    if shape is not None:
        for i, e in enumerate(ends):
            if e > shape[axis + i]:
                raise ctx.error(
                    f"crop of axis {axis + i} to {ref_shape[axis + i]} at offset {offs[i]} exceeds the "
                    f"input's {shape[axis + i]}"
                )
    ctx.op("Slice", [x], [ctx.top(0, "Slice", x)], starts=[0] * axis + offs, ends=[-1] * axis + ends)


@layer("Slice")
def _slice(ctx: Context, lp: Any) -> None:
    p = lp.slice_param
    x = ctx.bottom(0)
    axis = int(p.slice_dim) if p.HasField("slice_dim") else ctx.axis(p.axis, x)
    n = len(lp.top)
    if n == 1:
        ctx.alias(0, x)
        return
    points = [int(s) for s in p.slice_point]
    args: dict[str, Any] = {"axis": axis}
    if points:
        if len(points) != n - 1:
            raise ctx.error(f"{len(points)} slice points for {n} tops (need {n - 1})")
        dim = ctx.need_shape(x, "Slice with slice_point")[axis]
        bounds = [0, *points, dim]
        sizes = [int(s) for s in np.diff(bounds)]
        if any(s <= 0 for s in sizes):
            raise ctx.error(f"slice points {points} do not increase within the axis size {dim}")
        args["split"] = sizes
    else:
        shape = ctx.shape(x)
        if shape is not None and shape[axis] % n:
            raise ctx.error(f"axis size {shape[axis]} does not split into {n} equal parts")
    ctx.op("Split", [x], [ctx.top(i, "Split", x) for i in range(n)], **args)
