"""FC, Conv, MaxPool, AveragePool.

Convolution is im2col + GEMM: the padded input is viewed as windows with
``sliding_window_view`` (no copy), the view is reshaped into the column matrix (the one copy)
and multiplied by the filter with one batched ``matmul`` over (batch, group). Pooling combines
one strided slice per kernel tap. Window geometry (output sizes, SAME/VALID, Caffe's ceil mode)
comes from ``kaffa.ops.geometry.Window``, shared with every backend. float16 is computed in
float32 and rounded once at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.geometry import Window
from kaffa.schema import check, norm_axis

table = KernelTable("cpu")

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)

# Largest im2col matrix built at once; bigger batches are convolved in chunks of samples.
COLS_BUDGET_BYTES = 64 << 20


def work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to compute in: numpy's float16 GEMM is slow and rounds every partial sum."""
    return F32 if dtype == F16 else dtype


def _prod(dims: Sequence[int]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


# -- FC --------------------------------------------------------------------------------------------


@table.kernel("FC", dtypes=FLOAT_TYPES)
def fc(ctx: KernelContext) -> RunFn:
    axis, axis_w = ctx.args["axis"], ctx.args["axis_w"]

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        ax = norm_axis(axis, x.ndim, "FC")
        aw = norm_axis(axis_w, w.ndim, "FC", "axis_w")
        m, k = _prod(x.shape[:ax]), _prod(x.shape[ax:])
        n, k_w = _prod(w.shape[:aw]), _prod(w.shape[aw:])
        check(
            k == k_w,
            f"FC: X {list(x.shape)} flattened at axis {ax} has {k} columns but W {list(w.shape)} "
            f"flattened at axis_w {aw} has {k_w}",
        )
        wt = work_dtype(x.dtype)
        y = np.matmul(x.reshape(m, k).astype(wt, copy=False), w.reshape(n, k).astype(wt, copy=False).T)
        if b is not None:
            check(b.size == n, f"FC: bias has {b.size} elements, W has {n} rows")
            y += b.reshape(n)
        return (y.reshape(*x.shape[:ax], n).astype(x.dtype, copy=False),)

    return run


# -- shared window helpers -------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _resolve(win: Window, sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Window.resolve, memoised: nets usually see the same few input sizes again and again."""
    return win.resolve(sizes)


def _pad(
    x: np.ndarray, first: int, begins: Sequence[int], ends: Sequence[int], value: float, dtype: np.dtype
) -> np.ndarray:
    """x cast to ``dtype`` and padded with ``value`` on axes first .. first+len(begins)-1.
    Returns x itself when nothing needs doing (the result is only ever read)."""
    if not any(begins) and not any(ends):
        return x.astype(dtype, copy=False)
    shape = list(x.shape)
    inner = [slice(None)] * x.ndim
    for i, (b, e) in enumerate(zip(begins, ends)):
        shape[first + i] += b + e
        inner[first + i] = slice(b, b + x.shape[first + i])
    out = np.full(shape, value, dtype)
    out[tuple(inner)] = x
    return out


def _window_view(xp: np.ndarray, first: int, win: Window, outs: Sequence[int]) -> np.ndarray:
    """A view of the padded input's windows in its own layout, the taps appended: NCHW gives
    [N, C, *outs, *kernels], NHWC [N, *outs, C, *kernels]. No data is copied."""
    nsp = len(outs)
    view = sliding_window_view(xp, win.extent, axis=tuple(range(first, first + nsp)))
    index: list[slice] = [slice(None)] * view.ndim
    for i, (o, s, d) in enumerate(zip(outs, win.strides, win.dilations)):
        index[first + i] = slice(0, (o - 1) * s + 1, s)  # only the positions a window starts at
        index[xp.ndim + i] = slice(None, None, d)  # only the dilated taps
    return view[tuple(index)]


# -- Conv ------------------------------------------------------------------------------------------


@table.kernel("Conv", dtypes=FLOAT_TYPES)
def conv(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    arg_kernels = args.get("kernels") or None
    windows: dict[tuple[int, ...], Window] = {}

    def window(kern: tuple[int, ...]) -> Window:
        win = windows.get(kern)
        if win is None:
            if arg_kernels is not None:
                declared = Window.from_args(args, len(kern)).kernels
                check(
                    declared == kern,
                    f"Conv: kernel argument {list(declared)} does not match the filter's spatial "
                    f"shape {list(kern)}",
                )
            win = windows[kern] = Window.from_args(args, len(kern), kernels=kern)
        return win

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        check(
            x.ndim >= 3 and w.ndim == x.ndim,
            f"Conv: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
            f"{list(w.shape)} the same rank",
        )
        nsp = x.ndim - 2
        if nchw:
            n, c, sizes = x.shape[0], x.shape[1], x.shape[2:]
            wc = w  # [M, C/g, *K]
        else:
            n, c, sizes = x.shape[0], x.shape[-1], x.shape[1:-1]
            wc = np.moveaxis(w, -1, 1)  # [M, *K, C/g] -> [M, C/g, *K]
        m, cg, kern = wc.shape[0], wc.shape[1], tuple(wc.shape[2:])
        check(
            c == cg * group and m % group == 0,
            f"Conv: X has {c} channels and the filter {list(w.shape)} has {m} outputs x {cg} channels "
            f"per group; with group={group} X needs {cg * group} channels and outputs must divide",
        )
        if b is not None:
            check(b.size == m, f"Conv: bias has {b.size} elements for {m} output channels")
        win = window(kern)
        outs, begins, ends = _resolve(win, tuple(sizes))
        wt = work_dtype(x.dtype)
        first = 2 if nchw else 1
        xp = _pad(x, first, begins, ends, 0, wt)
        patches = _window_view(xp, first, win, outs)
        mg, kp, op = m // group, _prod(kern), _prod(outs)
        ck = cg * kp
        # Samples per GEMM, so that the column matrix stays within the budget.
        step = max(1, COLS_BUDGET_BYTES // max(1, c * kp * op * wt.itemsize))
        sp = tuple(range(nsp))
        if nchw:
            # Columns ordered (channel, tap) to match the filter [M, C/g, *K]; the GEMM's output
            # [n, g, M/g, *O] is already NCHW.
            filt = w.reshape(group, mg, ck).astype(wt, copy=False)
            y = np.empty((n, group, mg, op), wt)
            for s in range(0, n, step):
                p = patches[s : s + step]  # [n, C, *O, *K]
                cnt = len(p)
                p = p.reshape(cnt, group, cg, *outs, *kern)
                p = p.transpose(0, 1, 2, *(3 + nsp + i for i in sp), *(3 + i for i in sp))
                np.matmul(filt, p.reshape(cnt, group, ck, op), out=y[s : s + cnt])
            y = y.reshape(n, m, *outs)
            if b is not None:
                y += b.reshape(m, *(1,) * nsp)
        else:
            # Columns ordered (tap, channel) to match the filter [M, *K, C/g] and read the input
            # along its contiguous channel axis.
            filt_t = w.reshape(group, mg, ck).astype(wt, copy=False).transpose(0, 2, 1)  # [g, ck, M/g]
            y = np.empty((n, op, group, mg), wt)
            for s in range(0, n, step):
                p = patches[s : s + step]  # [n, *O, C, *K]
                cnt = len(p)
                p = p.reshape(cnt, *outs, group, cg, *kern)
                p = p.transpose(1 + nsp, 0, *(1 + i for i in sp), *(3 + nsp + i for i in sp), 2 + nsp)
                cols = p.reshape(group, cnt * op, ck)
                if group == 1:
                    np.matmul(cols[0], filt_t[0], out=y[s : s + cnt].reshape(cnt * op, mg))
                else:
                    y[s : s + cnt] = np.matmul(cols, filt_t).reshape(group, cnt, op, mg).transpose(1, 2, 0, 3)
            y = y.reshape(n, *outs, m)
            if b is not None:
                y += b.reshape(m)
        return (y.astype(x.dtype, copy=False),)

    return run


# -- pooling ---------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _divisor(win: Window, sizes: tuple[int, ...], include_pad: bool, dtype: np.dtype) -> np.ndarray:
    """How many cells each AveragePool window averages, shape [*outs]: the cells inside the image,
    or with ``include_pad`` inside the image and its declared pads (never Caffe's ceil overhang)."""
    outs, begins, _ = win.resolve(sizes)
    ends = win.declared_end_pads(sizes)
    div = np.ones((), np.float64)
    for size, o, k, s, d, pb, pe in zip(sizes, outs, win.kernels, win.strides, win.dilations, begins, ends):
        cells = np.arange(o)[:, None] * s - pb + np.arange(k)[None, :] * d  # input index of each tap
        lo, hi = (-pb, size + pe) if include_pad else (0, size)
        div = np.multiply.outer(div, ((cells >= lo) & (cells < hi)).sum(axis=1))
    div = div.astype(dtype)  # small integers: exact in every float dtype
    div.setflags(write=False)
    return div


@lru_cache(maxsize=256)
def _tap_slices(win: Window, outs: tuple[int, ...], first: int, ndim: int) -> tuple[tuple[slice, ...], ...]:
    """For each kernel tap, the strided slice of the padded input that the tap sees in every window."""
    taps = []
    for offset in itertools.product(*(range(k) for k in win.kernels)):
        index = [slice(None)] * ndim
        for i, (t, d, o, s) in enumerate(zip(offset, win.dilations, outs, win.strides)):
            index[first + i] = slice(t * d, t * d + (o - 1) * s + 1, s)
        taps.append(tuple(index))
    return tuple(taps)


def _check_rank(op: str, x: np.ndarray) -> None:
    check(x.ndim >= 3, f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis")


def _pool(ctx: KernelContext, combine: np.ufunc, pad_value: float, average: bool) -> RunFn:
    """Max or average pooling. The windows are reduced one kernel tap at a time: each tap is a
    strided slice of the padded input covering every window at once, so the loop runs prod(kernel)
    times. (Reducing a sliding_window_view over its trailing tap axes is 3-10x slower in numpy,
    which reduces short strided inner axes poorly.)"""
    args = ctx.args
    nchw = args["order"] == "NCHW"
    first = 2 if nchw else 1
    include_pad = bool(args.get("count_include_pad"))
    if args["global_pooling"]:

        def run_global(x: np.ndarray) -> tuple[np.ndarray]:
            _check_rank(ctx.op_type, x)
            axes = tuple(range(first, first + x.ndim - 2))
            if average:
                y = x.mean(axis=axes, keepdims=True, dtype=work_dtype(x.dtype))
            else:
                y = x.max(axis=axes, keepdims=True)
            return (y.astype(x.dtype, copy=False),)

        return run_global

    windows: dict[int, Window] = {}

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        _check_rank(ctx.op_type, x)
        nsp = x.ndim - 2
        win = windows.get(nsp)
        if win is None:
            win = windows[nsp] = Window.from_args(args, nsp)
        sizes = tuple(x.shape[first : first + nsp])
        outs, begins, ends = _resolve(win, sizes)
        xp = _pad(x, first, begins, ends, pad_value, work_dtype(x.dtype))
        taps = _tap_slices(win, outs, first, x.ndim)
        y = xp[taps[0]].copy()
        for tap in taps[1:]:
            combine(y, xp[tap], out=y)
        if average:
            div = _divisor(win, sizes, include_pad, y.dtype)
            y /= div if nchw else div[..., None]
        return (y.astype(x.dtype, copy=False),)

    return run


@table.kernel("MaxPool", dtypes=FLOAT_TYPES)
def max_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, np.maximum, -np.inf, average=False)  # -inf padding never wins


@table.kernel("AveragePool", dtypes=FLOAT_TYPES)
def average_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, np.add, 0.0, average=True)
