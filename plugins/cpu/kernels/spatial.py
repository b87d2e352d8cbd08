"""cpu kernels for the spatial family (see kaffa.ops.spatial).

Resize builds one interpolation matrix per resized axis (cached per input shape) and contracts
each axis with it; its gradient contracts with the transposes. float16 is computed in float32 and
rounded once per output.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.geometry import Window
from kaffa.ops.spatial import resize_nearest_out, resize_plan
from kaffa.schema import check, norm_axis
from kaffa_cpu.kernels.nn import _check_rank, _pad, _resolve, _tap_slices, work_dtype

table = KernelTable("cpu")


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(work_dtype(x.dtype), copy=False)


# -- Resize ----------------------------------------------------------------------------------------


def _source_coords(
    n_in: int, n_out: int, scale: float, ctm: str, roi
) -> tuple[np.ndarray, np.ndarray | None]:
    y = np.arange(n_out, dtype=np.float64)
    out_f = scale * n_in
    outside = None
    if ctm == "align_corners":
        x = np.zeros(n_out) if out_f == 1 else y * (n_in - 1) / (out_f - 1)
    elif ctm == "asymmetric":
        x = y / scale
    elif ctm == "tf_crop_and_resize":
        start, end = roi
        if out_f == 1:
            x = np.full(n_out, (end - start) * (n_in - 1) / 2)
        else:
            x = y * (end - start) * (n_in - 1) / (out_f - 1)
        x = x + start * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    elif ctm == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    else:  # half_pixel_symmetric
        offset = n_in / 2 * (1 - n_out / out_f)
        x = offset + (y + 0.5) / scale - 0.5
    return x, outside


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@lru_cache(maxsize=256)
def _axis_matrix(
    n_in: int,
    n_out: int,
    scale: float,
    roi,
    mode: str,
    ctm: str,
    nearest: str,
    a: float,
    exclude: bool,
    aa: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """([n_out, n_in] interpolation weights, bool [n_out] of extrapolated cells or None)."""
    x, outside = _source_coords(n_in, n_out, scale, ctm, roi)
    fl = np.floor(x)
    integer = x == fl
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "nearest":
        frac = x - fl
        up = {
            "round_prefer_floor": frac > 0.5,
            "round_prefer_ceil": frac >= 0.5,
            "floor": np.zeros(n_out, bool),
            "ceil": np.ones(n_out, bool),
        }[nearest]
        idx = np.where(integer, x, fl + up).astype(np.int64)
        w[rows, np.clip(idx, 0, n_in - 1)] = 1.0
    else:
        # Taps base + i, i in [start, 2 - start), with ratio in (0, 1] (ONNX prefers the left pixel).
        ratio = np.where(integer, 1.0, x - fl)
        base = np.where(integer, x - 1, fl).astype(np.int64)
        s = min(scale, 1.0) if aa else 1.0
        start = (math.floor(-1 / s) + 1) if mode == "linear" else (math.floor(-2 / s) + 1)
        offs = np.arange(start, 2 - start)
        t = (offs[None, :] - ratio[:, None]) * s
        coeff = np.clip(1 - np.abs(t), 0, 1) if mode == "linear" else _cubic(t, a)
        if aa:
            coeff = coeff / coeff.sum(axis=1, keepdims=True)
        idx = base[:, None] + offs[None, :]
        if exclude:
            coeff = np.where((idx < 0) | (idx >= n_in), 0.0, coeff)
            total = coeff.sum(axis=1, keepdims=True)
            coeff = coeff / np.where(total == 0, 1.0, total)
        np.add.at(w, (np.repeat(rows, len(offs)), np.clip(idx, 0, n_in - 1).ravel()), coeff.ravel())
    if outside is not None:
        w[outside] = 0.0
        if not outside.any():
            outside = None
    w.setflags(write=False)
    return w, outside


def _resize_steps(args, shape: tuple[int, ...]):
    """[(axis, weights, extrapolated mask)] for the axes that change, and the output shape."""
    out, plan = resize_plan(args, shape)
    steps = []
    for axis, scale, roi in plan:
        n_in, n_out = shape[axis], out[axis]
        if math.isclose(scale, 1.0) and n_in == n_out and (roi is None or (roi[0] == 0 and roi[1] == 1)):
            continue  # the identity (as ONNX's reference skips it)
        if n_in == 0 or n_out == 0:
            steps.append((axis, np.zeros((n_out, n_in)), None))
            continue
        w, outside = _axis_matrix(
            n_in,
            n_out,
            scale,
            roi,
            args["mode"],
            args["coordinate_transformation_mode"],
            args["nearest_mode"],
            float(args["cubic_coeff_a"]),
            bool(args["exclude_outside"]),
            bool(args["antialias"]),
        )
        steps.append((axis, w, outside))
    return steps, out


def _contract(w: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(np.tensordot(w.astype(v.dtype, copy=False), v, axes=([1], [axis])), 0, axis)


@table.kernel("Resize", dtypes=FLOAT_TYPES)
def resize(ctx: KernelContext) -> RunFn:
    args = ctx.args
    ev = float(args["extrapolation_value"])

    def run(x):
        steps, _ = _resize_steps(args, x.shape)
        v = _wide(x)
        for axis, w, outside in steps:
            v = _contract(w, v, axis)
            if outside is not None:
                shape = [1] * v.ndim
                shape[axis] = -1
                v = np.where(outside.reshape(shape), v.dtype.type(ev), v)
        return (np.ascontiguousarray(v, dtype=x.dtype),)

    return run


@table.kernel("ResizeGradient", dtypes=FLOAT_TYPES)
def resize_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(dy, x):
        steps, out = _resize_steps(args, x.shape)
        check(dy.shape == tuple(out), f"ResizeGradient: dY {list(dy.shape)} is not the resized X {list(out)}")
        v = _wide(dy)
        for axis, w, _ in reversed(steps):  # extrapolated rows of w are 0: nothing flows back
            v = _contract(w.T, v, axis)
        return (np.ascontiguousarray(v, dtype=x.dtype),)

    return run


# -- ResizeNearest ---------------------------------------------------------------------------------


def _nearest_index(n_in: int, n_out: int, scale: float) -> np.ndarray:
    return np.minimum((np.arange(n_out) / scale).astype(np.int64), n_in - 1)


@table.kernel("ResizeNearest", dtypes=FLOAT_TYPES)
def resize_nearest(ctx: KernelContext) -> RunFn:
    args = ctx.args
    h_ax = 2 if args["order"] == "NCHW" else 1

    def run(x):
        out = resize_nearest_out("ResizeNearest", args, x.shape)
        hi = _nearest_index(x.shape[h_ax], out[h_ax], args["height_scale"])
        wi = _nearest_index(x.shape[h_ax + 1], out[h_ax + 1], args["width_scale"])
        return (np.ascontiguousarray(np.take(np.take(x, hi, axis=h_ax), wi, axis=h_ax + 1)),)

    return run


@table.kernel("ResizeNearestGradient", dtypes=FLOAT_TYPES)
def resize_nearest_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    h_ax = 2 if args["order"] == "NCHW" else 1

    def run(dy, x):
        out = resize_nearest_out("ResizeNearestGradient", args, x.shape)
        check(dy.shape == out, f"ResizeNearestGradient: dY {list(dy.shape)} is not the resized X {list(out)}")
        g = _wide(dy)
        for ax, scale in ((h_ax, args["height_scale"]), (h_ax + 1, args["width_scale"])):
            idx = _nearest_index(x.shape[ax], out[ax], scale)
            moved = np.moveaxis(g, ax, 0)
            acc = np.zeros((x.shape[ax], *moved.shape[1:]), g.dtype)
            np.add.at(acc, idx, moved)
            g = np.moveaxis(acc, 0, ax)
        return (np.ascontiguousarray(g, dtype=x.dtype),)

    return run


# -- DepthToSpace / SpaceToDepth -------------------------------------------------------------------


def _d2s(x: np.ndarray, b: int, mode: str) -> np.ndarray:
    n, c, h, w = x.shape
    check(c % (b * b) == 0, f"DepthToSpace: C of X {list(x.shape)} must be divisible by {b * b}")
    co = c // (b * b)
    if mode == "DCR":
        t = x.reshape(n, b, b, co, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, co, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(t.reshape(n, co, h * b, w * b))


def _s2d(x: np.ndarray, b: int, mode: str) -> np.ndarray:
    n, c, h, w = x.shape
    check(h % b == 0 and w % b == 0, f"SpaceToDepth: H, W of X {list(x.shape)} must be divisible by {b}")
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(t.reshape(n, c * b * b, h // b, w // b))


@table.kernel("DepthToSpace", dtypes=FLOAT_TYPES)
def depth_to_space(ctx: KernelContext) -> RunFn:
    b, mode = ctx.args["blocksize"], ctx.args["mode"]

    def run(x):
        check(x.ndim == 4, f"DepthToSpace: X {list(x.shape)} must be 4-D")
        return (_d2s(x, b, mode),)

    return run


@table.kernel("SpaceToDepth", dtypes=FLOAT_TYPES)
def space_to_depth(ctx: KernelContext) -> RunFn:
    b, mode = ctx.args["blocksize"], ctx.args["mode"]

    def run(x):
        check(x.ndim == 4, f"SpaceToDepth: X {list(x.shape)} must be 4-D")
        return (_s2d(x, b, mode),)

    return run


# -- LpPool ----------------------------------------------------------------------------------------


def _lp_setup(ctx: KernelContext):
    args = ctx.args
    nchw = args["order"] == "NCHW"
    first = 2 if nchw else 1
    windows: dict[int, Window] = {}

    def layout(x: np.ndarray):
        _check_rank(ctx.op_type, x)
        nsp = x.ndim - 2
        win = windows.get(nsp)
        if win is None:
            win = windows[nsp] = Window.from_args(args, nsp)
        sizes = tuple(x.shape[first : first + nsp])
        outs, begins, ends = _resolve(win, sizes)
        return sizes, outs, begins, ends, _tap_slices(win, outs, first, x.ndim)

    return float(args["p"]), first, layout


@table.kernel("LpPool", dtypes=FLOAT_TYPES)
def lp_pool(ctx: KernelContext) -> RunFn:
    p, first, layout = _lp_setup(ctx)

    def run(x):
        _, _, begins, ends, taps = layout(x)
        xp = np.abs(_pad(x, first, begins, ends, 0.0, work_dtype(x.dtype)))
        if p != 1:
            xp = xp**p
        acc = xp[taps[0]].copy()
        for tap in taps[1:]:
            acc += xp[tap]
        y = acc if p == 1 else (np.sqrt(acc) if p == 2 else acc ** (1 / p))
        return (y.astype(x.dtype, copy=False),)

    return run


@table.kernel("LpPoolGradient", dtypes=FLOAT_TYPES)
def lp_pool_gradient(ctx: KernelContext) -> RunFn:
    p, first, layout = _lp_setup(ctx)

    def run(x, y, dy):
        sizes, _outs, begins, ends, taps = layout(x)
        check(y.shape == dy.shape, f"LpPoolGradient: Y {list(y.shape)} and dY {list(dy.shape)} differ")
        wt = work_dtype(x.dtype)
        xp = _pad(x, first, begins, ends, 0.0, wt)
        g = _wide(dy) / _wide(y) ** (p - 1) if p != 1 else _wide(dy)
        dxp = np.zeros(xp.shape, wt)
        part = np.sign(xp) * np.abs(xp) ** (p - 1) if p != 1 else np.sign(xp)
        for tap in taps:
            dxp[tap] += g * part[tap]
        crop = [slice(None)] * x.ndim
        for i, (b, size) in enumerate(zip(begins, sizes)):
            crop[first + i] = slice(b, b + size)
        return (np.ascontiguousarray(dxp[tuple(crop)], dtype=x.dtype),)

    return run


# -- RMSNormalization ------------------------------------------------------------------------------


def _sum_to(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    lead = v.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and v.shape[lead + i] != 1
    )
    return v.sum(axis=axes, keepdims=True).reshape(shape)


@table.kernel("RMSNormalization", dtypes=FLOAT_TYPES)
def rms_normalization(ctx: KernelContext) -> RunFn:
    axis_arg, eps = ctx.args["axis"], ctx.args["epsilon"]

    def run(x, scale):
        axis = norm_axis(axis_arg, x.ndim, "RMSNormalization")
        xw = _wide(x)
        red = tuple(range(axis, x.ndim))
        r = 1 / np.sqrt(np.mean(xw * xw, axis=red, keepdims=True) + eps)
        return ((xw * r * _wide(scale)).astype(x.dtype, copy=False),)

    return run


@table.kernel("RMSNormalizationGradient", dtypes=FLOAT_TYPES)
def rms_normalization_gradient(ctx: KernelContext) -> RunFn:
    axis_arg, eps = ctx.args["axis"], ctx.args["epsilon"]

    def run(x, scale, dy):
        axis = norm_axis(axis_arg, x.ndim, "RMSNormalizationGradient")
        xw, dyw, sw = _wide(x), _wide(dy), _wide(scale)
        red = tuple(range(axis, x.ndim))
        r = 1 / np.sqrt(np.mean(xw * xw, axis=red, keepdims=True) + eps)
        g = dyw * sw
        dx = r * (g - xw * (r * r) * np.mean(g * xw, axis=red, keepdims=True))
        dscale = _sum_to(dyw * xw * r, scale.shape)
        return dx.astype(x.dtype, copy=False), dscale.astype(x.dtype, copy=False)

    return run


# -- InstanceNorm / GroupNorm ----------------------------------------------------------------------


def _grouped(x: np.ndarray, order: str, groups: int) -> np.ndarray:
    """x as [N, G, M] (channels first, each group's channels and spatial cells in the last axis)."""
    xc = np.moveaxis(x, -1, 1) if order == "NHWC" else x
    return xc.reshape(x.shape[0], groups, -1)


def _ungrouped(v: np.ndarray, like: np.ndarray, order: str) -> np.ndarray:
    cf = np.moveaxis(like, -1, 1).shape if order == "NHWC" else like.shape
    v = v.reshape(cf)
    return np.moveaxis(v, 1, -1) if order == "NHWC" else v


def _per_channel(vec: np.ndarray, x: np.ndarray, groups: int) -> np.ndarray:
    """A [C] vector as [1, G, M] matching _grouped (channel c repeated over its spatial cells)."""
    spatial = x.size // (x.shape[0] * vec.shape[0]) if x.shape[0] else 1
    return np.repeat(vec, spatial).reshape(1, groups, -1)


def _norm_forward(x, gamma, beta, order, groups, eps, n_out):
    c = x.shape[1] if order == "NCHW" else x.shape[-1]
    check(gamma.shape == (c,) and beta.shape == (c,), f"scale/bias {list(gamma.shape)} must be [C] = [{c}]")
    v = _grouped(_wide(x), order, groups)
    mu = v.mean(axis=2, keepdims=True)
    d = v - mu
    inv = 1 / np.sqrt(np.mean(d * d, axis=2, keepdims=True) + eps)
    y = d * inv * _per_channel(_wide(gamma), x, groups) + _per_channel(_wide(beta), x, groups)
    dt = x.dtype
    out = [_ungrouped(y, x, order).astype(dt, copy=False), mu[..., 0].astype(dt), inv[..., 0].astype(dt)]
    return tuple(np.ascontiguousarray(o) for o in out[:n_out])


def _norm_backward(x, gamma, dy, order, groups, eps):
    c = gamma.shape[0]
    v = _grouped(_wide(x), order, groups)
    g = _grouped(_wide(dy), order, groups)
    mu = v.mean(axis=2, keepdims=True)
    d = v - mu
    inv = 1 / np.sqrt(np.mean(d * d, axis=2, keepdims=True) + eps)
    xhat = d * inv
    gg = g * _per_channel(_wide(gamma), x, groups)
    dx = inv * (gg - gg.mean(axis=2, keepdims=True) - xhat * np.mean(gg * xhat, axis=2, keepdims=True))
    # Per channel sums: view as [N, C, spatial].
    n = x.shape[0]
    dgamma = (g * xhat).reshape(n, c, -1).sum(axis=(0, 2))
    dbeta = g.reshape(n, c, -1).sum(axis=(0, 2))
    dt = x.dtype
    return (
        np.ascontiguousarray(_ungrouped(dx, x, order).astype(dt, copy=False)),
        dgamma.astype(dt),
        dbeta.astype(dt),
    )


def _check_norm_x(op: str, x: np.ndarray) -> None:
    check(x.ndim >= 3, f"{op}: X {list(x.shape)} needs N, C and at least one spatial dim")


@table.kernel("InstanceNorm", dtypes=FLOAT_TYPES)
def instance_norm(ctx: KernelContext) -> RunFn:
    eps, order, n_out = ctx.args["epsilon"], ctx.args["order"], ctx.num_outputs

    def run(x, scale, bias):
        _check_norm_x("InstanceNorm", x)
        return _norm_forward(x, scale, bias, order, scale.shape[0], eps, n_out)

    return run


@table.kernel("InstanceNormGradient", dtypes=FLOAT_TYPES)
def instance_norm_gradient(ctx: KernelContext) -> RunFn:
    eps, order = ctx.args["epsilon"], ctx.args["order"]

    def run(x, scale, bias, dy, *_stats):
        _check_norm_x("InstanceNormGradient", x)
        check(x.shape == dy.shape, f"InstanceNormGradient: X {list(x.shape)} and dY {list(dy.shape)} differ")
        return _norm_backward(x, scale, dy, order, scale.shape[0], eps)

    return run


@table.kernel("GroupNorm", dtypes=FLOAT_TYPES)
def group_norm(ctx: KernelContext) -> RunFn:
    eps, order, groups, n_out = (
        ctx.args["epsilon"],
        ctx.args["order"],
        ctx.args["num_groups"],
        ctx.num_outputs,
    )

    def run(x, gamma, beta):
        _check_norm_x("GroupNorm", x)
        c = gamma.shape[0]
        check(c % groups == 0, f"GroupNorm: C = {c} is not divisible by num_groups {groups}")
        return _norm_forward(x, gamma, beta, order, groups, eps, n_out)

    return run


@table.kernel("GroupNormGradient", dtypes=FLOAT_TYPES)
def group_norm_gradient(ctx: KernelContext) -> RunFn:
    eps, order, groups = ctx.args["epsilon"], ctx.args["order"], ctx.args["num_groups"]

    def run(dy, x, gamma, beta, *_stats):
        _check_norm_x("GroupNormGradient", x)
        check(x.shape == dy.shape, f"GroupNormGradient: X {list(x.shape)} and dY {list(dy.shape)} differ")
        return _norm_backward(x, gamma, dy, order, groups, eps)

    return run


# -- LpNormalization / MeanVarianceNormalization ---------------------------------------------------


def _lp_norm(xw: np.ndarray, axis: int, p: int) -> np.ndarray:
    a = np.abs(xw)
    if p == 1:
        return a.sum(axis=axis, keepdims=True)
    if p == 2:
        return np.sqrt((xw * xw).sum(axis=axis, keepdims=True))
    return (a**p).sum(axis=axis, keepdims=True) ** (1 / p)


@table.kernel("LpNormalization", dtypes=FLOAT_TYPES)
def lp_normalization(ctx: KernelContext) -> RunFn:
    axis_arg, p = ctx.args["axis"], ctx.args["p"]

    def run(x):
        axis = norm_axis(axis_arg, x.ndim, "LpNormalization")
        xw = _wide(x)
        n = _lp_norm(xw, axis, p)
        safe = np.where(n == 0, 1, n)
        return (np.where(n == 0, 0, xw / safe).astype(x.dtype, copy=False),)

    return run


@table.kernel("LpNormalizationGradient", dtypes=FLOAT_TYPES)
def lp_normalization_gradient(ctx: KernelContext) -> RunFn:
    axis_arg, p = ctx.args["axis"], ctx.args["p"]

    def run(x, dy):
        axis = norm_axis(axis_arg, x.ndim, "LpNormalizationGradient")
        xw, g = _wide(x), _wide(dy)
        n = _lp_norm(xw, axis, p)
        safe = np.where(n == 0, 1, n)
        dn = np.sign(xw) * np.abs(xw) ** (p - 1) / safe ** (p - 1)  # d n / d x
        dx = g / safe - (g * xw).sum(axis=axis, keepdims=True) / (safe * safe) * dn
        return (np.where(n == 0, 0, dx).astype(x.dtype, copy=False),)

    return run


def _mvn_axes(op: str, axes, ndim: int) -> tuple[int, ...]:
    return tuple(sorted(norm_axis(a, ndim, op, "axes entry") for a in axes))


@table.kernel("MeanVarianceNormalization", dtypes=FLOAT_TYPES)
def mean_variance_normalization(ctx: KernelContext) -> RunFn:
    axes_arg, eps = ctx.args["axes"], ctx.args["epsilon"]

    def run(x):
        axes = _mvn_axes("MeanVarianceNormalization", axes_arg, x.ndim)
        xw = _wide(x)
        d = xw - xw.mean(axis=axes, keepdims=True)
        s = np.sqrt(np.mean(d * d, axis=axes, keepdims=True))
        return ((d / (s + eps)).astype(x.dtype, copy=False),)

    return run


@table.kernel("MeanVarianceNormalizationGradient", dtypes=FLOAT_TYPES)
def mean_variance_normalization_gradient(ctx: KernelContext) -> RunFn:
    axes_arg, eps = ctx.args["axes"], ctx.args["epsilon"]

    def run(x, dy):
        axes = _mvn_axes("MeanVarianceNormalizationGradient", axes_arg, x.ndim)
        xw, g = _wide(x), _wide(dy)
        m = math.prod(x.shape[a] for a in axes)
        d = xw - xw.mean(axis=axes, keepdims=True)
        s = np.sqrt(np.mean(d * d, axis=axes, keepdims=True))
        k = 1 / (s + eps)
        safe = np.where(s == 0, 1, s)
        dx = k * (g - g.mean(axis=axes, keepdims=True)) - (k * k / (m * safe)) * d * np.sum(
            g * d, axis=axes, keepdims=True
        )
        return (dx.astype(x.dtype, copy=False),)

    return run
