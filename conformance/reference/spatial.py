"""float64 references for the spatial family (see kaffa.ops.spatial).

Resize is written as ONNX describes it, one output coordinate at a time along one axis at a time
(``_interp_1d``). The gradients of the normalizations and of LpPool are vector-Jacobian products
by the complex step (d f / d x_j = Im f(x + i h e_j) / h, exact to rounding for the analytic
forward references below, which therefore write |x| as sqrt(x * x)); Resize's and
ResizeNearest's gradients apply the transposed per-axis maps, read off the 1-D references on unit
vectors. None of this shares code with the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.reference import reference
from kaffa_conformance.reference.complex_step import vjp as _vjp


def _abs_p(x, p):
    """|x|^p, analytic near the real axis (for the complex step)."""
    return (x * x) ** (p / 2)


# -- Resize ----------------------------------------------------------------------------------------


def _source(x_out: int, n_in: int, n_out: int, scale: float, ctm: str, roi):
    """The input coordinate of output cell ``x_out`` (ONNX's coordinate_transformation_mode)."""
    length = scale * n_in  # ONNX uses the unrounded output length
    if ctm == "half_pixel":
        return (x_out + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = n_out / length
        return n_in / 2 * (1 - adjustment) + (x_out + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return -0.5 if length == 1 else (x_out + 0.5) / scale - 0.5
    if ctm == "align_corners":
        return 0.0 if length == 1 else x_out * (n_in - 1) / (length - 1)
    if ctm == "asymmetric":
        return x_out / scale
    start, end = roi  # tf_crop_and_resize
    if length == 1:
        return (end - start) * (n_in - 1) / 2 + start * (n_in - 1)
    return start * (n_in - 1) + x_out * (end - start) * (n_in - 1) / (length - 1)


def _interp_1d(line: np.ndarray, n_out: int, scale: float, args, roi) -> np.ndarray:
    n_in = len(line)
    mode, ctm, a = args["mode"], args["coordinate_transformation_mode"], args["cubic_coeff_a"]
    out = np.zeros(n_out, dtype=line.dtype)
    for o in range(n_out):
        x = _source(o, n_in, n_out, scale, ctm, roi)
        if ctm == "tf_crop_and_resize" and (x < 0 or x > n_in - 1):
            out[o] = args["extrapolation_value"]
            continue
        lo = math.floor(x)
        if mode == "nearest":
            frac = x - lo
            rule = args["nearest_mode"]
            if frac == 0 or rule == "floor":
                i = lo
            elif rule == "ceil":
                i = lo + 1
            elif rule == "round_prefer_floor":
                i = lo if frac <= 0.5 else lo + 1
            else:
                i = lo if frac < 0.5 else lo + 1
            out[o] = line[min(max(i, 0), n_in - 1)]
            continue
        # Kernel taps around x: the window of taps k with weight kernel((k - x) * s).
        s = min(scale, 1.0) if args["antialias"] else 1.0
        support = (1.0 if mode == "linear" else 2.0) / s
        if x == lo:  # ONNX takes an integer coordinate as the right end of [x - 1, x]
            lo, ratio = lo - 1, 1.0
        else:
            ratio = x - lo
        first = math.floor(-support) + 1
        taps, weights = [], []
        for k in range(first, 2 - first):
            t = abs((k - ratio) * s)
            if mode == "linear":
                wgt = max(0.0, 1 - t)
            elif t <= 1:
                wgt = (a + 2) * t**3 - (a + 3) * t**2 + 1
            elif t < 2:
                wgt = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
            else:
                wgt = 0.0
            taps.append(lo + k)
            weights.append(wgt)
        weights = np.array(weights)
        if args["antialias"]:
            weights = weights / weights.sum()
        if args["exclude_outside"]:
            weights = np.array([w if 0 <= t < n_in else 0.0 for t, w in zip(taps, weights)])
            if weights.sum() != 0:
                weights = weights / weights.sum()
        out[o] = sum(w * line[min(max(t, 0), n_in - 1)] for t, w in zip(taps, weights))
    return out


def _plan(args, shape):
    rank = len(shape)
    axes = [a % rank for a in (args["axes"] if args["axes"] is not None else range(rank))]
    out = list(shape)
    roi = args["roi"]
    if args["scales"] is not None:
        factors = list(args["scales"])
        for ax, f in zip(axes, factors):
            out[ax] = math.floor(f * shape[ax])
    else:
        factors = [s / shape[ax] for ax, s in zip(axes, args["sizes"])]
        policy = args["keep_aspect_ratio_policy"]
        if policy == "stretch":
            for ax, s in zip(axes, args["sizes"]):
                out[ax] = s
        else:
            f = min(factors) if policy == "not_larger" else max(factors)
            factors = [f] * len(axes)
            for ax in axes:
                out[ax] = int(f * shape[ax] + 0.5)
    plan = []
    for i, (ax, f) in enumerate(zip(axes, factors)):
        r = None if roi is None else (roi[i], roi[len(axes) + i])
        if math.isclose(f, 1.0) and out[ax] == shape[ax] and (r is None or tuple(r) == (0.0, 1.0)):
            continue
        plan.append((ax, f, r, out[ax]))
    return sorted(plan)


@reference("Resize")
def resize(args, x):
    y = x
    for ax, f, r, n in _plan(args, x.shape):
        y = np.apply_along_axis(_interp_1d, ax, y, n, f, args, r)
    return (y,)


@reference("ResizeGradient")
def resize_gradient(args, dy, x):
    plan = _plan(args, x.shape)
    zero_args = {**args, "extrapolation_value": 0.0}  # the linear part of the map
    g = dy
    for ax, f, r, n in reversed(plan):
        n_in = x.shape[ax]
        w = np.stack([_interp_1d(np.eye(n_in)[j], n, f, zero_args, r) for j in range(n_in)], axis=1)
        g = np.moveaxis(np.tensordot(w.T, g, axes=([1], [ax])), 0, ax)
    return (g,)


def _caffe2_nearest(args, shape):
    h_ax = 2 if args["order"] == "NCHW" else 1
    maps = []
    for ax, s in ((h_ax, args["height_scale"]), (h_ax + 1, args["width_scale"])):
        n_out = int(shape[ax] * s)
        maps.append((ax, [min(int(o / s), shape[ax] - 1) for o in range(n_out)]))
    return maps


@reference("ResizeNearest")
def resize_nearest(args, x):
    y = x
    for ax, src in _caffe2_nearest(args, x.shape):
        y = np.stack([np.take(y, i, axis=ax) for i in src], axis=ax)
    return (y,)


@reference("ResizeNearestGradient")
def resize_nearest_gradient(args, dy, x):
    g = dy
    for ax, src in reversed(_caffe2_nearest(args, x.shape)):
        parts = [np.zeros_like(np.take(g, 0, axis=ax)) for _ in range(x.shape[ax])]
        for o, i in enumerate(src):
            parts[i] = parts[i] + np.take(g, o, axis=ax)
        g = np.stack(parts, axis=ax)
    return (g,)


# -- DepthToSpace / SpaceToDepth -------------------------------------------------------------------


def _d2s_source(c_out: int, b: int, c_in: int, mode: str, bi: int, bj: int) -> int:
    """The input channel DepthToSpace reads for output channel c_out at block offset (bi, bj)."""
    cb = c_in // (b * b)
    return (bi * b + bj) * cb + c_out if mode == "DCR" else c_out * b * b + bi * b + bj


@reference("DepthToSpace")
def depth_to_space(args, x):
    b, mode = args["blocksize"], args["mode"]
    n, c, h, w = x.shape
    y = np.zeros((n, c // (b * b), h * b, w * b), x.dtype)
    for co in range(c // (b * b)):
        for bi in range(b):
            for bj in range(b):
                y[:, co, bi::b, bj::b] = x[:, _d2s_source(co, b, c, mode, bi, bj)]
    return (y,)


@reference("SpaceToDepth")
def space_to_depth(args, x):
    b, mode = args["blocksize"], args["mode"]
    n, c, h, w = x.shape
    y = np.zeros((n, c * b * b, h // b, w // b), x.dtype)
    for ci in range(c):
        for bi in range(b):
            for bj in range(b):
                y[:, _d2s_source(ci, b, c * b * b, mode, bi, bj)] = x[:, ci, bi::b, bj::b]
    return (y,)


# -- LpPool ----------------------------------------------------------------------------------------


def _lp_pool(args, x):
    from kaffa.ops.geometry import Window  # window arithmetic only (sizes and pads), no kernels

    nchw = args["order"] == "NCHW"
    xc = x if nchw else np.moveaxis(x, -1, 1)
    sizes = xc.shape[2:]
    win = Window.from_args(args, len(sizes))
    outs, begins, _ends = win.resolve(sizes)
    p = args["p"]
    y = np.zeros(xc.shape[:2] + tuple(outs), dtype=x.dtype)
    for o in np.ndindex(*outs):
        acc = np.zeros(xc.shape[:2], dtype=x.dtype)
        for k in np.ndindex(*win.kernels):
            pos = [oi * s - b + ki * d for oi, s, b, ki, d in zip(o, win.strides, begins, k, win.dilations)]
            if all(0 <= q < n for q, n in zip(pos, sizes)):
                acc = acc + _abs_p(xc[(slice(None), slice(None), *pos)], p)
        y[(slice(None), slice(None), *o)] = acc ** (1 / p)
    return y if nchw else np.moveaxis(y, 1, -1)


@reference("LpPool")
def lp_pool(args, x):
    return (_lp_pool(args, x),)


@reference("LpPoolGradient")
def lp_pool_gradient(args, x, y, dy):
    return tuple(_vjp(lambda v: _lp_pool(args, v), [x], dy, [0]))


# -- RMSNormalization ------------------------------------------------------------------------------


def _rms(args, x, scale):
    axis = args["axis"] % x.ndim
    rows = x.reshape(math.prod(x.shape[:axis]), -1)
    ms = np.array([np.sum(r * r) / r.size for r in rows])
    y = (rows / np.sqrt(ms + args["epsilon"])[:, None]).reshape(x.shape)
    return y * scale


@reference("RMSNormalization")
def rms_normalization(args, x, scale):
    return (_rms(args, x, scale),)


@reference("RMSNormalizationGradient")
def rms_normalization_gradient(args, x, scale, dy):
    return tuple(_vjp(lambda a, b: _rms(args, a, b), [x, scale], dy, [0, 1]))


# -- InstanceNorm / GroupNorm ----------------------------------------------------------------------


def _group_norm(x, gamma, beta, groups, eps, order):
    """Returns Y, mean [N, G], inv_std [N, G]; loops over samples and groups."""
    xc = x if order == "NCHW" else np.moveaxis(x, -1, 1)
    n, c = xc.shape[:2]
    per = c // groups
    y = np.zeros(xc.shape, dtype=x.dtype)
    mean = np.zeros((n, groups), dtype=x.dtype)
    inv = np.zeros((n, groups), dtype=x.dtype)
    for i in range(n):
        for g in range(groups):
            block = xc[i, g * per : (g + 1) * per]
            mu = np.sum(block) / block.size
            var = np.sum((block - mu) * (block - mu)) / block.size
            mean[i, g], inv[i, g] = mu, 1 / np.sqrt(var + eps)
            for k in range(per):
                ch = g * per + k
                y[i, ch] = (xc[i, ch] - mu) * inv[i, g] * gamma[ch] + beta[ch]
    return (y if order == "NCHW" else np.moveaxis(y, 1, -1)), mean, inv


@reference("InstanceNorm")
def instance_norm(args, x, scale, bias, num_outputs=1):
    out = _group_norm(x, scale, bias, len(scale), args["epsilon"], args["order"])
    return out[:num_outputs]


@reference("InstanceNormGradient")
def instance_norm_gradient(args, x, scale, bias, dy, *_stats):
    def f(a, b, c):
        return _group_norm(a, b, c, len(scale), args["epsilon"], args["order"])[0]

    return tuple(_vjp(f, [x, scale, bias], dy, [0, 1, 2]))


@reference("GroupNorm")
def group_norm(args, x, gamma, beta, num_outputs=1):
    out = _group_norm(x, gamma, beta, args["num_groups"], args["epsilon"], args["order"])
    return out[:num_outputs]


@reference("GroupNormGradient")
def group_norm_gradient(args, dy, x, gamma, beta, *_stats):
    def f(a, b, c):
        return _group_norm(a, b, c, args["num_groups"], args["epsilon"], args["order"])[0]

    return tuple(_vjp(f, [x, gamma, beta], dy, [0, 1, 2]))


# -- LpNormalization / MeanVarianceNormalization ---------------------------------------------------


def _lp_normalize(args, x):
    axis, p = args["axis"] % x.ndim, args["p"]
    norm = np.sum(_abs_p(x, p), axis=axis, keepdims=True) ** (1 / p)
    return np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm))


@reference("LpNormalization")
def lp_normalization(args, x):
    return (_lp_normalize(args, x),)


@reference("LpNormalizationGradient")
def lp_normalization_gradient(args, x, dy):
    return tuple(_vjp(lambda v: _lp_normalize(args, v), [x], dy, [0]))


def _mvn(args, x):
    axes = tuple(a % x.ndim for a in args["axes"])
    m = math.prod(x.shape[a] for a in axes)
    mean = np.sum(x, axis=axes, keepdims=True) / m
    d = x - mean
    std = np.sqrt(np.sum(d * d, axis=axes, keepdims=True) / m)
    return d / (std + args["epsilon"])


@reference("MeanVarianceNormalization")
def mean_variance_normalization(args, x):
    return (_mvn(args, x),)


@reference("MeanVarianceNormalizationGradient")
def mean_variance_normalization_gradient(args, x, dy):
    return tuple(_vjp(lambda v: _mvn(args, v), [x], dy, [0]))
