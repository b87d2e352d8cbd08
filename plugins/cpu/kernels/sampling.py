"""cpu kernels for the sampling family (see kaffa.ops.sampling).

GridSample and DeformConv share one interpolation step: per spatial axis, each sample point gets
a few (index, weight, d weight / d coordinate) taps (nearest 1, linear 2, cubic 4), with ONNX's
padding rules applied to the coordinate and to the indices; the taps of all axes are combined
into flat indices and product weights, and X is read with one ``take_along_axis`` per tap
combination. Gradients scatter with ``np.bincount``. float16 computes in float32.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype
from kaffa.ops.geometry import Window
from kaffa.ops.sampling import (
    check_affine_grid,
    check_grid_sample,
    col2im_window,
    deform_geometry,
    unpool_shape,
)
from kaffa.schema import TensorInfo, check
from kaffa_cpu.kernels.nn import _pad, _tap_slices

table = KernelTable("cpu")

CUBIC_A = -0.75

Taps = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (index, weight, d weight / d coordinate)


def _prod(dims: Sequence[int]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


# -- interpolation taps ----------------------------------------------------------------------------


def _reflect(x: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """ONNX's reflection of x into [lo, hi] (repeatedly, at the nearer border), and d result / d x."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo), np.zeros_like(x)
    below, above = x < lo, x > hi
    dist = np.where(below, lo - x, np.where(above, x - hi, 0.0))
    flips = np.floor(dist / span)
    rest = dist - flips * span
    even = flips % 2 == 0
    # Below: lo + rest (even) or hi - rest (odd); above: hi - rest (even) or lo + rest (odd).
    low_side = np.where(below, even, ~even)
    out = np.where(low_side, lo + rest, hi - rest)
    # Each reflection flips the direction: -1 after an even number of extra flips, else +1.
    slope = np.where(below | above, np.where(even, -1.0, 1.0), 1.0)
    out = np.where(below | above, out, x)
    return out, slope


def _cubic_weights(t: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keys' cubic weights of the taps at -1, 0, 1, 2 for a fraction t in [0, 1), and their
    derivatives in t."""
    a = CUBIC_A

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1, (3 * (a + 2) * s - 2 * (a + 3)) * s

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a, (3 * a * s - 10 * a) * s + 8 * a

    w0, d0 = far(t + 1)
    w1, d1 = near(t)
    w2, d2 = near(1 - t)
    w3, d3 = far(2 - t)
    return [w0, w1, w2, w3], [d0, d1, -d2, -d3]


def axis_taps(
    x: np.ndarray, size: int, mode: str, padding: str, align_corners: bool, grad: bool = False
) -> tuple[Taps, np.ndarray]:
    """Taps along one axis for unnormalized coordinates ``x``, and d(coordinate after padding) / dx."""
    lo, hi = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    if mode == "nearest":
        x = np.rint(x)
    slope = np.ones_like(x)
    outside = (x < lo) | (x > hi)
    if padding == "border":
        slope = np.where(outside, 0.0, 1.0)
        x = np.where(outside, np.clip(x, 0, size - 1), x)
    elif padding == "reflection":
        x, slope = _reflect(x, lo, hi)
    if mode == "nearest":
        base = np.trunc(x).astype(np.int64)
        offsets, weights, dweights = [0], [np.ones_like(x)], [np.zeros_like(x)]
    else:
        fl = np.floor(x)
        t = x - fl
        base = fl.astype(np.int64)
        if mode == "linear":
            offsets, weights, dweights = [0, 1], [1 - t, t], [-np.ones_like(t), np.ones_like(t)]
        else:
            offsets = [-1, 0, 1, 2]
            weights, dweights = _cubic_weights(t)
    taps: Taps = []
    for off, w, dw in zip(offsets, weights, dweights):
        i = base + off
        if padding == "zeros":
            inside = (i >= 0) & (i < size)
            w, dw = np.where(inside, w, 0.0), np.where(inside, dw, 0.0)
            i = np.clip(i, 0, size - 1)
        elif padding == "border":
            i = np.clip(i, 0, size - 1)
        elif size == 1:
            i = np.zeros_like(i)
        else:  # reflection of the index into [lo, hi] (integers stay integers)
            i = np.trunc(_reflect(i.astype(np.float64), lo, hi)[0]).astype(np.int64)
        taps.append((i, w, dw))
    return taps, slope


def interpolate(
    x: np.ndarray, taps: list[Taps], grad_of: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Y [N, C, Q] = sum over tap combinations of weight * X[n, c, flat index]; taps per axis have
    arrays [N, Q]. With ``grad_of`` (dY [N, C, Q]): the derivative of sum(dY * Y) in each axis's
    coordinate instead of Y's gradient parts, as a list [N, Q] per axis."""
    n, c = x.shape[:2]
    sizes = x.shape[2:]
    xr = x.reshape(n, c, -1)
    strides = [_prod(sizes[j + 1 :]) for j in range(len(sizes))]
    y = None
    dcoord = [np.zeros(taps[0][0][0].shape, xr.dtype) for _ in taps] if grad_of is not None else []
    for combo in itertools.product(*taps):
        flat = sum(t[0] * s for t, s in zip(combo, strides))
        w = combo[0][1]
        for t in combo[1:]:
            w = w * t[1]
        vals = np.take_along_axis(xr, flat[:, None, :], axis=2)
        if grad_of is None:
            part = vals * w[:, None, :]
            y = part if y is None else y + part
        else:
            dv = (vals * grad_of).sum(axis=1)  # [N, Q]
            for j in range(len(taps)):
                dw = combo[j][2]
                for k, t in enumerate(combo):
                    if k != j:
                        dw = dw * t[1]
                dcoord[j] += dv * dw
    return (y if y is not None else np.zeros((n, c, 0), xr.dtype)), dcoord


def scatter(shape: Sequence[int], taps: list[Taps], g: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The adjoint of ``interpolate`` in X: g [N, C, Q] spread back into an array of ``shape``."""
    n, c = shape[:2]
    p = _prod(shape[2:])
    strides = [_prod(shape[2 + j + 1 :]) for j in range(len(shape) - 2)]
    base = (np.arange(n)[:, None, None] * c + np.arange(c)[None, :, None]) * p
    out = np.zeros(n * c * p, dtype)
    for combo in itertools.product(*taps):
        flat = sum(t[0] * s for t, s in zip(combo, strides))
        w = combo[0][1]
        for t in combo[1:]:
            w = w * t[1]
        idx = base + flat[:, None, :]
        out += np.bincount(idx.ravel(), weights=(g * w[:, None, :]).ravel(), minlength=out.size)
    return out.reshape(shape)


# -- GridSample ------------------------------------------------------------------------------------


def _grid_taps(x_shape, grid, args, wt) -> tuple[list[Taps], list[np.ndarray]]:
    """Per X spatial axis: taps [N, Q], and d(padded coordinate) / d(grid value)."""
    n = grid.shape[0]
    sizes = x_shape[2:]
    k = len(sizes)
    g = grid.reshape(n, -1, k).astype(wt, copy=False)
    taps, chain = [], []
    for j, size in enumerate(sizes):
        gv = g[:, :, k - 1 - j]  # the grid's last entry indexes the last axis
        if args["align_corners"]:
            coord, scale = (gv + 1) / 2 * (size - 1), (size - 1) / 2
        else:
            coord, scale = ((gv + 1) * size - 1) / 2, size / 2
        t, slope = axis_taps(coord, size, args["mode"], args["padding_mode"], args["align_corners"])
        taps.append(t)
        chain.append(slope * scale)
    return taps, chain


def _check_gs(op: str, args, x: np.ndarray, grid: np.ndarray) -> tuple[int, ...]:
    out = check_grid_sample(op, args, TensorInfo.of(x), TensorInfo.of(grid))
    assert out is not None
    return tuple(int(d) for d in out)


@table.kernel("GridSample", dtypes=FLOAT_TYPES)
def grid_sample(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(x: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray]:
        out = _check_gs("GridSample", args, x, grid)
        wt = work_dtype(x.dtype)
        taps, _ = _grid_taps(x.shape, grid, args, wt)
        y, _ = interpolate(x.astype(wt, copy=False), taps)
        return (y.reshape(out).astype(x.dtype, copy=False),)

    return run


@table.kernel("GridSampleGradient", dtypes=FLOAT_TYPES)
def grid_sample_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(x: np.ndarray, grid: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = _check_gs("GridSampleGradient", args, x, grid)
        check(
            tuple(dy.shape) == out,
            f"GridSampleGradient: dY {list(dy.shape)} is not the output shape {list(out)}",
        )
        wt = work_dtype(x.dtype)
        n, c = x.shape[:2]
        taps, chain = _grid_taps(x.shape, grid, args, wt)
        g = dy.reshape(n, c, -1).astype(wt, copy=False)
        dx = scatter(x.shape, taps, g, wt)
        k = x.ndim - 2
        dgrid = np.zeros((n, g.shape[2], k), wt)
        if args["mode"] != "nearest":
            _, dcoord = interpolate(x.astype(wt, copy=False), taps, grad_of=g)
            for j in range(k):
                dgrid[:, :, k - 1 - j] = dcoord[j] * chain[j]
        return dx.astype(x.dtype, copy=False), dgrid.reshape(grid.shape).astype(grid.dtype, copy=False)

    return run


# -- AffineGrid ------------------------------------------------------------------------------------


def affine_base(sizes: Sequence[int], align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """[prod(sizes), k + 1]: (x, y[, z], 1) of every output cell, x along the last axis."""
    axes = []
    for d in sizes:
        i = np.arange(d, dtype=np.float64)
        if align_corners:
            axes.append(-1 + 2 * i / (d - 1) if d > 1 else np.full(1, -1.0))
        else:
            axes.append((2 * i + 1) / d - 1)
    mesh = np.meshgrid(*axes, indexing="ij")
    cols = [m.reshape(-1) for m in reversed(mesh)] + [np.ones(_prod(sizes))]
    return np.stack(cols, axis=1).astype(dtype)


@table.kernel("AffineGrid", dtypes=FLOAT_TYPES)
def affine_grid(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(theta: np.ndarray) -> tuple[np.ndarray]:
        shape = check_affine_grid("AffineGrid", args, TensorInfo.of(theta))
        wt = work_dtype(theta.dtype)
        base = affine_base(args["size"][2:], args["align_corners"], wt)
        grid = np.einsum("pj,nij->npi", base, theta.astype(wt, copy=False))
        return (grid.reshape(shape).astype(theta.dtype, copy=False),)

    return run


@table.kernel("AffineGridGradient", dtypes=FLOAT_TYPES)
def affine_grid_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(dgrid: np.ndarray) -> tuple[np.ndarray]:
        size = list(args["size"])
        k = len(size) - 2
        want = (size[0], *size[2:], k)
        check(
            tuple(dgrid.shape) == want,
            f"AffineGridGradient: dgrid {list(dgrid.shape)} is not the grid shape {list(want)}",
        )
        wt = work_dtype(dgrid.dtype)
        base = affine_base(size[2:], args["align_corners"], wt)
        g = dgrid.reshape(size[0], -1, k).astype(wt, copy=False)
        return (np.einsum("npi,pj->nij", g, base).astype(dgrid.dtype, copy=False),)

    return run


# -- Col2Im ----------------------------------------------------------------------------------------


def _col2im_setup(op: str, args) -> tuple[Window, tuple[int, ...], tuple[int, ...], tuple, tuple]:
    win, image, blocks = col2im_window(op, args)
    _, begins, ends = win.resolve(image)
    return win, image, blocks, begins, ends


@table.kernel("Col2Im", dtypes=FLOAT_TYPES)
def col2im(ctx: KernelContext) -> RunFn:
    win, image, blocks, begins, ends = _col2im_setup("Col2Im", ctx.args)
    kp, lp = _prod(win.kernels), _prod(blocks)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        check(
            x.ndim == 3 and x.shape[1] % kp == 0 and x.shape[2] == lp,
            f"Col2Im: input {list(x.shape)} must be [N, C * {kp}, {lp}] for image {list(image)}, "
            f"block {list(win.kernels)}",
        )
        n, c = x.shape[0], x.shape[1] // kp
        wt = work_dtype(x.dtype)
        cols = x.astype(wt, copy=False).reshape(n, c, kp, *blocks)
        padded = [n, c, *(s + b + e for s, b, e in zip(image, begins, ends))]
        out = np.zeros(padded, wt)
        for t, tap in enumerate(_tap_slices(win, blocks, 2, len(padded))):
            out[tap] += cols[:, :, t]
        crop = (slice(None), slice(None), *(slice(b, b + s) for b, s in zip(begins, image)))
        return (np.ascontiguousarray(out[crop]).astype(x.dtype, copy=False),)

    return run


@table.kernel("Col2ImGradient", dtypes=FLOAT_TYPES)
def col2im_gradient(ctx: KernelContext) -> RunFn:
    win, image, blocks, begins, ends = _col2im_setup("Col2ImGradient", ctx.args)
    kp = _prod(win.kernels)

    def run(dy: np.ndarray) -> tuple[np.ndarray]:
        check(
            dy.ndim == 2 + len(image) and tuple(dy.shape[2:]) == image,
            f"Col2ImGradient: dY {list(dy.shape)} must be [N, C, *{list(image)}]",
        )
        n, c = dy.shape[:2]
        padded = _pad(dy, 2, begins, ends, 0, dy.dtype)
        taps = _tap_slices(win, blocks, 2, dy.ndim)
        cols = np.stack([padded[tap] for tap in taps], axis=2)  # [N, C, K, *blocks]
        return (np.ascontiguousarray(cols.reshape(n, c * kp, -1)),)

    return run


# -- DeformConv ------------------------------------------------------------------------------------


@table.kernel("DeformConv", dtypes=FLOAT_TYPES)
def deform_conv(ctx: KernelContext) -> RunFn:
    args = ctx.args
    group, og = int(args["group"]), int(args["offset_group"])

    def run(x, w, offset, b=None, mask=None) -> tuple[np.ndarray]:
        op = "DeformConv"
        check(x.ndim >= 3 and w.ndim == x.ndim, f"{op}: X {list(x.shape)} and W {list(w.shape)}")
        n, c, sizes = x.shape[0], x.shape[1], x.shape[2:]
        m, cg = w.shape[0], w.shape[1]
        check(
            c == cg * group and m % group == 0, f"{op}: X {list(x.shape)}, W {list(w.shape)}, group {group}"
        )
        check(c % og == 0, f"{op}: {c} channels do not divide into {og} offset groups")
        win, outs = deform_geometry(args, x.shape, w.shape)
        assert win is not None and outs is not None
        k, kp, q = len(sizes), _prod(win.kernels), _prod(outs)
        _, begins, _ = win.resolve(sizes)
        check(
            tuple(offset.shape) == (n, og * kp * k, *outs),
            f"{op}: offset {list(offset.shape)} must be {[n, og * kp * k, *outs]}",
        )
        if mask is not None:
            check(
                tuple(mask.shape) == (n, og * kp, *outs),
                f"{op}: mask {list(mask.shape)} must be {[n, og * kp, *outs]}",
            )
        if b is not None:
            check(b.size == m, f"{op}: bias has {b.size} entries for {m} output channels")
        wt = work_dtype(x.dtype)
        off = offset.astype(wt, copy=False).reshape(n, og, kp, k, q)
        # Undeformed tap positions [K, Q] per axis: o * stride - pad_begin + t * dilation.
        grids = np.meshgrid(*(np.arange(o) for o in outs), indexing="ij")
        kgrid = np.meshgrid(*(np.arange(kk) for kk in win.kernels), indexing="ij")
        cols = np.empty((n, c, kp, q), wt)
        cpg = c // og
        for gi in range(og):
            taps = []
            for j in range(k):
                base = (
                    grids[j].reshape(1, q) * win.strides[j]
                    - begins[j]
                    + kgrid[j].reshape(kp, 1) * win.dilations[j]
                )
                pos = base[None] + off[:, gi, :, j, :]  # [N, K, Q]
                t, _ = axis_taps(pos.reshape(n, -1), sizes[j], "linear", "zeros", True)
                taps.append(t)
            xs = x[:, gi * cpg : (gi + 1) * cpg].astype(wt, copy=False)
            vals, _ = interpolate(xs, taps)  # [N, cpg, K * Q]
            vals = vals.reshape(n, cpg, kp, q)
            if mask is not None:
                vals = vals * mask.astype(wt, copy=False).reshape(n, og, kp, q)[:, gi][:, None]
            cols[:, gi * cpg : (gi + 1) * cpg] = vals
        mg = m // group
        filt = w.astype(wt, copy=False).reshape(group, mg, cg * kp)
        y = np.matmul(filt, cols.reshape(n, group, cg * kp, q))  # [N, group, M/g, Q]
        y = y.reshape(n, m, *outs)
        if b is not None:
            y = y + b.astype(wt, copy=False).reshape(m, *(1,) * k)
        return (y.astype(x.dtype, copy=False),)

    return run


# -- MaxPoolWithIndices / MaxUnpool ----------------------------------------------------------------


@table.kernel("MaxPoolWithIndices", dtypes=FLOAT_TYPES)
def max_pool_with_indices(ctx: KernelContext) -> RunFn:
    args = ctx.args
    column_major = args["storage_order"] == 1

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check(
            x.ndim >= 3, f"MaxPoolWithIndices: X {list(x.shape)} needs a batch, a channel and a spatial axis"
        )
        n, c, sizes = x.shape[0], x.shape[1], tuple(x.shape[2:])
        win = Window.from_args(args, len(sizes))
        outs, begins, ends = win.resolve(sizes)
        wt = work_dtype(x.dtype)
        xp = _pad(x, 2, begins, ends, -np.inf, wt)
        taps = _tap_slices(win, outs, 2, x.ndim)
        offsets = list(itertools.product(*(range(k) for k in win.kernels)))
        y = xp[taps[0]].copy()
        best = np.zeros(y.shape, np.int64)
        for t, tap in enumerate(taps[1:], 1):
            v = xp[tap]
            better = v > y  # strict: the first maximum in window order wins
            y = np.where(better, v, y)
            best = np.where(better, t, best)
        # The cell of tap t in window o, per axis: o * stride - pad_begin + t * dilation.
        tap_cells = np.asarray(offsets, np.int64)  # [T, k]
        if column_major:
            mult = [_prod(sizes[:j]) for j in range(len(sizes))]
        else:
            mult = [_prod(sizes[j + 1 :]) for j in range(len(sizes))]
        spatial = np.zeros(y.shape, np.int64)
        for j, (o, s, d, pb) in enumerate(zip(outs, win.strides, win.dilations, begins)):
            pos = np.arange(o).reshape((1, 1, *tuple(o if i == j else 1 for i in range(len(outs)))))
            cell = pos * s - pb + tap_cells[best, j] * d
            spatial += cell * mult[j]
        nc = (np.arange(n)[:, None] * c + np.arange(c)[None, :]).reshape(n, c, *(1,) * len(outs))
        indices = nc * _prod(sizes) + spatial
        return y.astype(x.dtype, copy=False), indices

    return run


@table.kernel("MaxPoolWithIndicesGradient", dtypes=FLOAT_TYPES)
def max_pool_with_indices_gradient(ctx: KernelContext) -> RunFn:
    column_major = ctx.args["storage_order"] == 1

    def run(x: np.ndarray, indices: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        check(
            indices.shape == dy.shape,
            f"MaxPoolWithIndicesGradient: Indices {list(indices.shape)} and dY {list(dy.shape)} differ",
        )
        flat = indices.astype(np.int64).ravel()
        if column_major:  # back to row-major offsets within each (n, c) plane
            sizes = x.shape[2:]
            p = _prod(sizes)
            plane, rest = np.divmod(flat, p)
            cells = []
            for j in range(len(sizes)):
                rest, r = np.divmod(rest, sizes[j])
                cells.append(r)
            flat = plane * p + np.ravel_multi_index(cells, sizes)
        wt = work_dtype(dy.dtype)
        dx = np.bincount(flat, weights=dy.astype(wt).ravel(), minlength=x.size)
        return (dx.reshape(x.shape).astype(dy.dtype, copy=False),)

    return run


def _check_indices(op: str, idx: np.ndarray, size: int) -> None:
    check(
        idx.size == 0 or (int(idx.min()) >= 0 and int(idx.max()) < size),
        f"{op}: indices must lie in [0, {size}), got [{int(idx.min())}, {int(idx.max())}]",
    )


@table.kernel("MaxUnpool", dtypes=FLOAT_TYPES)
def max_unpool(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        check(idx.shape == x.shape, f"MaxUnpool: I {list(idx.shape)} must have X's shape {list(x.shape)}")
        inferred, shape = unpool_shape("MaxUnpool", args, x.shape)
        unpooled = np.zeros(inferred, x.dtype)
        _check_indices("MaxUnpool", idx, unpooled.size)
        unpooled.reshape(-1)[idx.astype(np.int64).ravel()] = x.ravel()
        if tuple(shape) == tuple(inferred):
            return (unpooled,)
        y = np.zeros(shape, x.dtype)
        y[tuple(slice(0, d) for d in inferred)] = unpooled
        return (y,)

    return run


@table.kernel("MaxUnpoolGradient", dtypes=FLOAT_TYPES)
def max_unpool_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args

    def run(dy: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray]:
        inferred, shape = unpool_shape("MaxUnpoolGradient", args, idx.shape)
        check(
            tuple(dy.shape) == tuple(shape),
            f"MaxUnpoolGradient: dY {list(dy.shape)} is not the output shape {list(shape)}",
        )
        unpooled = dy[tuple(slice(0, d) for d in inferred)].reshape(-1)
        _check_indices("MaxUnpoolGradient", idx, unpooled.size)
        return (unpooled[idx.astype(np.int64)],)

    return run
