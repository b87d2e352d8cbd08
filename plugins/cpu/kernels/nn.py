"""FC, Conv, ConvTranspose, MaxPool, AveragePool, PadImage and their gradients.

Convolution is im2col + GEMM: the padded input is viewed as windows with
``sliding_window_view`` (no copy), the view is reshaped into the column matrix (the one copy)
and multiplied by the filter with one batched ``matmul`` over (batch, group). Pooling combines
one strided slice per kernel tap. Window geometry (output sizes, SAME/VALID, Caffe's ceil mode)
comes from ``kaffa.ops.geometry.Window``, shared with every backend. float16 is computed in
float32 and rounded once at the end.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kaffa.dtypes import FLOAT_TYPES, NUMERIC_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.math import work_dtype  # float16 computes in float32: numpy's float16 GEMM is slow
from kaffa.launch.nn import (
    channels,
    check_dy,
    check_residual,
    conv_filter,
    fc_dims,
    fc_gradient_dims,
    filter_window,
    layout,
    spatial_sizes,
    transpose_filter,
)
from kaffa.launch.pool import check_pads, check_pool_gradient
from kaffa.ops.geometry import Window, split_pads
from kaffa.schema import check

from . import jit

table = KernelTable("cpu")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)

# Largest im2col matrix built at once; bigger batches are convolved in chunks of samples.
COLS_BUDGET_BYTES = 64 << 20


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
        ax, _, m, k, n = fc_dims(x, w, axis, axis_w)
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


def _samples_per_chunk(bytes_per_sample: int) -> int:
    """Samples per GEMM, so that a column matrix stays within the budget."""
    return max(1, COLS_BUDGET_BYTES // max(1, bytes_per_sample))


# Channel-first building blocks ([N, C, *S] arrays of any strides; NHWC callers pass moveaxis views).
# With "big" the convolution's input side and "small" its output side, Conv is big -> small,
# ConvTranspose small -> big, and the gradients are these three maps in other roles.


def _conv_cf(
    x: np.ndarray,
    w: np.ndarray,
    group: int,
    win: Window,
    outs: Sequence[int],
    begins: Sequence[int],
    ends: Sequence[int],
    wt: np.dtype,
) -> np.ndarray:
    """Convolution: x [N, C, *S] with w [M, C/g, *K] -> [N, M, *outs], by im2col + batched GEMM
    (1x1 filters and depthwise convolutions take the direct paths below)."""
    n, c, m, cg, kern = x.shape[0], x.shape[1], w.shape[0], w.shape[1], tuple(w.shape[2:])
    nsp = len(kern)
    xp = _pad(x, 2, begins, ends, 0, wt)
    if group == 1 and all(k == 1 for k in kern):
        return _conv_1x1_cf(xp, w, win, outs, wt)
    if group == c and cg == 1 and m == c:
        return _conv_depthwise_cf(xp, w, win, outs, wt)
    patches = _window_view(xp, 2, win, outs)  # [N, C, *O, *K]
    mg, kp, op = m // group, _prod(kern), _prod(outs)
    ck = cg * kp
    step = _samples_per_chunk(c * kp * op * wt.itemsize)
    sp = tuple(range(nsp))
    # Columns ordered (channel, tap) to match the filter [M, C/g, *K]; the GEMM's output
    # [n, g, M/g, *O] is already channel-first.
    filt = w.reshape(group, mg, ck).astype(wt, copy=False)
    y = np.empty((n, group, mg, op), wt)
    for s in range(0, n, step):
        p = patches[s : s + step]
        cnt = len(p)
        p = p.reshape(cnt, group, cg, *outs, *kern)
        p = p.transpose(0, 1, 2, *(3 + nsp + i for i in sp), *(3 + i for i in sp))
        np.matmul(filt, p.reshape(cnt, group, ck, op), out=y[s : s + cnt])
    return y.reshape(n, m, *outs)


def _conv_1x1_cf(xp: np.ndarray, w: np.ndarray, win: Window, outs: Sequence[int], wt: np.dtype) -> np.ndarray:
    """A 1x1 filter needs no columns: the (strided) input itself is the GEMM operand."""
    n, c, m = xp.shape[0], xp.shape[1], w.shape[0]
    sub = xp[(slice(None), slice(None), *(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, win.strides)))]
    y = np.matmul(w.reshape(m, c).astype(wt, copy=False), sub.reshape(n, c, -1))
    return y.reshape(n, m, *outs)


def _conv_depthwise_cf(
    xp: np.ndarray, w: np.ndarray, win: Window, outs: Sequence[int], wt: np.dtype
) -> np.ndarray:
    """One filter per channel: sum over taps of a strided input slice times a per-channel weight.
    K multiply-adds over the output instead of K-long dot products per element (which im2col
    turns into tiny batched GEMMs)."""
    n, c, kern = xp.shape[0], xp.shape[1], tuple(w.shape[2:])
    taps = w.reshape(c, -1).astype(wt, copy=False)
    bshape = (c, *(1,) * len(kern))
    y = np.zeros((n, c, *outs), wt)
    tmp = np.empty_like(y)
    for t, offs in enumerate(itertools.product(*(range(k) for k in kern))):
        idx = tuple(
            slice(o * d, o * d + (size - 1) * s + 1, s)
            for o, d, s, size in zip(offs, win.dilations, win.strides, outs)
        )
        np.multiply(xp[(slice(None), slice(None), *idx)], taps[:, t].reshape(bshape), out=tmp)
        y += tmp
    return y


def _conv_adjoint_cf(
    dy: np.ndarray,
    w: np.ndarray,
    group: int,
    win: Window,
    sizes: Sequence[int],
    begins: Sequence[int],
    ends: Sequence[int],
    wt: np.dtype,
) -> np.ndarray:
    """The adjoint of _conv_cf in its input: dy [N, M, *O] with w [M, C/g, *K] -> [N, C, *sizes].
    One GEMM makes the columns (Wᵀ·dY), then col2im adds each kernel tap's block into a strided
    slice of the padded result: prod(K) vectorized adds, never a loop over pixels."""
    n, m, outs = dy.shape[0], dy.shape[1], tuple(dy.shape[2:])
    cg, kern = w.shape[1], tuple(w.shape[2:])
    nsp = len(kern)
    mg, kp, op = m // group, _prod(kern), _prod(outs)
    # Rows ordered (tap, channel): each tap's block of the columns is contiguous.
    filt = w.reshape(group, mg, cg, kp).transpose(0, 3, 2, 1).reshape(group, kp * cg, mg)
    filt = filt.astype(wt, copy=False)
    padded = tuple(s + b + e for s, b, e in zip(sizes, begins, ends))
    dxp = np.zeros((n, group, cg, *padded), wt)
    taps = _tap_slices(win, outs, 3, 3 + nsp)
    step = _samples_per_chunk(group * cg * kp * op * wt.itemsize)
    for s in range(0, n, step):
        d = dy[s : s + step]
        cnt = len(d)
        cols = np.matmul(filt, d.reshape(cnt, group, mg, op).astype(wt, copy=False))
        cols = cols.reshape(cnt, group, kp, cg, *outs)
        rows = slice(s, s + cnt)
        for t, tap in enumerate(taps):
            dxp[(rows, *tap[1:])] += cols[:, :, t]
    crop = tuple(slice(b, b + size) for b, size in zip(begins, sizes))
    return dxp.reshape(n, group * cg, *padded)[(slice(None), slice(None), *crop)]


def _conv_filter_grad_cf(
    x: np.ndarray,
    dy: np.ndarray,
    group: int,
    win: Window,
    begins: Sequence[int],
    ends: Sequence[int],
    wt: np.dtype,
) -> np.ndarray:
    """The gradient of _conv_cf in its filter: x [N, C, *S], dy [N, M, *O] -> [M, C/g, *K]."""
    n, c, m, outs = x.shape[0], x.shape[1], dy.shape[1], tuple(dy.shape[2:])
    kern, nsp = win.kernels, len(outs)
    cg, mg, kp, op = c // group, m // group, _prod(win.kernels), _prod(outs)
    xp = _pad(x, 2, begins, ends, 0, wt)
    patches = _window_view(xp, 2, win, outs)  # [N, C, *O, *K]
    sp = tuple(range(nsp))
    dw = np.zeros((group, mg, cg * kp), wt)
    step = _samples_per_chunk(c * kp * op * wt.itemsize)
    for s in range(0, n, step):
        p = patches[s : s + step]
        cnt = len(p)
        # cols [g, C/g * K, cnt * op] (positions innermost: long contiguous runs to copy) and
        # dY [g, M/g, cnt * op]: one GEMM per group sums over samples and positions at once.
        p = p.reshape(cnt, group, cg, *outs, *kern)
        cols = p.transpose(1, 2, *(3 + nsp + i for i in sp), 0, *(3 + i for i in sp))
        cols = cols.reshape(group, cg * kp, cnt * op)
        d = dy[s : s + cnt].reshape(cnt, group, mg, op).transpose(1, 2, 0, 3).reshape(group, mg, cnt * op)
        dw += np.matmul(d.astype(wt, copy=False), cols.transpose(0, 2, 1))
    return dw.reshape(m, cg, *kern)


def _channel_sums(dy: np.ndarray, nchw: bool, wt: np.dtype) -> np.ndarray:
    axes = (0, *range(2, dy.ndim)) if nchw else tuple(range(dy.ndim - 1))
    return dy.sum(axis=axes, dtype=wt)


def _cf(a: np.ndarray, nchw: bool) -> np.ndarray:
    """Channel-first view of an NCHW or NHWC array (data or filter)."""
    return a if nchw else np.moveaxis(a, -1, 1)


def _to_order(a: np.ndarray, nchw: bool, dtype: np.dtype) -> np.ndarray:
    """A channel-first result back in the op's layout and dtype, contiguous."""
    out = a if nchw else np.moveaxis(a, 1, -1)
    return np.ascontiguousarray(out, dtype=dtype)


# The fast NCHW 2-D paths: float32/float64 data, im2col into reused buffers and one GEMM per
# chunk of samples written straight into the output, bias / residual / activation applied in place
# (kaffa_cpu.kernels.jit when numba is installed), depthwise convolutions compiled by numba.


class _Scratch:
    """Column matrices and padded inputs kept between runs, by shape and dtype: building them in
    fresh memory costs page faults on every call. A buffer is taken out while in use, so
    concurrent runs never share one; the least recently returned go first beyond ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype, zeroed: bool, tag: str) -> np.ndarray:
        key = (tag, shape, dtype.str)
        with self._lock:
            buf = self._free.pop(key, None)
            if buf is not None:
                self._bytes -= buf.nbytes
                return buf
        return (np.zeros if zeroed else np.empty)(shape, dtype)

    def give(self, buf: np.ndarray, tag: str) -> None:
        key = (tag, buf.shape, buf.dtype.str)
        with self._lock:
            old = self._free.pop(key, None)
            self._bytes += buf.nbytes - (old.nbytes if old is not None else 0)
            self._free[key] = buf
            while self._bytes > self.limit and self._free:
                self._bytes -= self._free.popitem(last=False)[1].nbytes


_SCRATCH = _Scratch(limit=4 * COLS_BUDGET_BYTES)
# Maps with fewer output pixels than this are convolved many samples per GEMM (7x7 maps make thin
# GEMMs); larger ones one sample per GEMM.
_GEMM_MIN_COLUMNS = 1024


def _conv2d_gemm(
    x: np.ndarray, w: np.ndarray, win: Window, outs: Sequence[int], begins: Sequence[int], ends: Sequence[int]
) -> np.ndarray:
    """Group-1 2-D convolution of NCHW x (float32/64, contiguous) -> [N, M, OH * OW]."""
    n, c, h, wd = x.shape
    m, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    (oh, ow), (sh, sw), (dh, dw) = outs, win.strides, win.dilations
    op, ck, dt = oh * ow, c * kh * kw, x.dtype
    filt = np.ascontiguousarray(w.reshape(m, ck), dt)
    y = np.empty((n, m, op), dt)
    if kh == kw == 1 and sh == sw == 1 and not any(begins) and not any(ends):
        np.matmul(filt, x.reshape(n, c, op), out=y)  # a 1x1 filter: the input is the column matrix
        return y
    # Large maps: one sample per GEMM (no transposed copy of the output). Small maps: as many
    # samples as the column budget allows in one GEMM (thin GEMMs and Python loops cost more).
    cnt = 1 if op >= _GEMM_MIN_COLUMNS else max(1, min(n, COLS_BUDGET_BYTES // (ck * op * dt.itemsize)))
    padded = any(begins) or any(ends)
    hp, wp = h + begins[0] + ends[0], wd + begins[1] + ends[1]
    # Keyed by where the image sits and its size: the zero border must be exactly the padding.
    ptag = f"pad{tuple(begins)}{(h, wd)}"
    xp = _SCRATCH.take((cnt, c, hp, wp), dt, True, ptag) if padded else None
    cols = _SCRATCH.take((c, kh, kw, cnt, oh, ow), dt, False, "cols")
    inner = (slice(None), slice(begins[0], begins[0] + h), slice(begins[1], begins[1] + wd))
    try:
        for s in range(0, n, cnt):
            k = min(cnt, n - s)
            src = x[s : s + k]
            if xp is not None:
                xp[:k][(slice(None), *inner)] = src  # the border stays zero from the buffer's creation
                src = xp[:k]
            # One copy per kernel tap for the whole chunk of samples: [k, C, ...] -> [C, k, ...].
            for a in range(kh):
                rows = slice(a * dh, a * dh + (oh - 1) * sh + 1, sh)
                for b in range(kw):
                    tap = src[:, :, rows, b * dw : b * dw + (ow - 1) * sw + 1 : sw]
                    cols[:, a, b, :k] = tap.transpose(1, 0, 2, 3)
            if k == 1:
                np.matmul(filt, cols.reshape(ck, cnt * op)[:, :op], out=y[s])
            else:
                part = np.matmul(filt, cols.reshape(ck, cnt * op)[:, : k * op])
                y[s : s + k] = part.reshape(m, k, op).transpose(1, 0, 2)
    finally:
        if xp is not None:
            _SCRATCH.give(xp, ptag)
        _SCRATCH.give(cols, "cols")
    return y


# Winograd F(2x2, 3x3) (Lavin & Gray): a 3x3 stride-1 convolution as 16 GEMMs over 4x4 input
# tiles, 2.25x fewer multiplications than im2col's GEMM and no column matrix. The filter transform
# is computed once per weight array and kept, so it is used only for read-only weights (the
# Predictor freezes its parameters): a writable filter may change in place between runs.
_WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# Where it wins, measured on ResNet-18's layers (2 cores): below 14x14 output pixels the 16 thin
# GEMMs lose to one im2col GEMM; above 28x28 the transforms' scattered 16-plane writes and reads
# cost more than the GEMM saves.
_WINOGRAD_PIXELS = (14 * 14, 28 * 28)
_WINO_FILTERS: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_WINO_LOCK = threading.Lock()


def _winograd_filter(w: np.ndarray) -> np.ndarray:
    """U [16, M, C] = G g Gᵀ of every 3x3 filter g of a read-only w, cached by the array (the
    entry holds the array itself, so its id cannot be reused while cached)."""
    with _WINO_LOCK:
        hit = _WINO_FILTERS.get(id(w))
        if hit is not None and hit[0] is w:
            _WINO_FILTERS.move_to_end(id(w))
            return hit[1]
    u = np.einsum("ai,mcij,bj->abmc", _WINO_G, w.astype(np.float64), _WINO_G)
    u = np.ascontiguousarray(u.reshape(16, *w.shape[:2]), w.dtype)
    with _WINO_LOCK:
        _WINO_FILTERS[id(w)] = (w, u)
        while len(_WINO_FILTERS) > 512:
            _WINO_FILTERS.popitem(last=False)
    return u


def _winograd_ok(w: np.ndarray, win: Window, outs: Sequence[int]) -> bool:
    return (
        jit.AVAILABLE
        and not w.flags.writeable
        and w.shape[2:] == (3, 3)
        and win.strides == (1, 1)
        and win.dilations == (1, 1)
        and _WINOGRAD_PIXELS[0] <= outs[0] * outs[1] <= _WINOGRAD_PIXELS[1]
    )


def _conv2d_winograd(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    z: np.ndarray | None,
    outs: Sequence[int],
    begins: Sequence[int],
    act: tuple[int, float, float],
) -> np.ndarray:
    """act(conv(x, w) + b + z) for a 3x3 stride-1 filter by Winograd F(2x2, 3x3): [N, M, *outs]."""
    n, c, h, wd = x.shape
    m, dt = w.shape[0], x.dtype
    u = _winograd_filter(w)
    (oh, ow), th, tw = outs, (outs[0] + 1) // 2, (outs[1] + 1) // 2
    bias = np.zeros(m, dt) if b is None else np.ascontiguousarray(b.reshape(m), dt)
    y = np.empty((n, m, oh, ow), dt)
    ptag = f"wpad{tuple(begins)}{(h, wd)}"  # the zero border must be exactly the padding
    xp = _SCRATCH.take((c, 2 * th + 2, 2 * tw + 2), dt, True, ptag)
    v = _SCRATCH.take((16, c, th * tw), dt, False, "wino_v")
    mt = _SCRATCH.take((16, m, th * tw), dt, False, "wino_m")
    try:
        for i in range(n):
            xp[:, begins[0] : begins[0] + h, begins[1] : begins[1] + wd] = x[i]
            jit.winograd_input(xp, v, (th, tw))
            np.matmul(u, v, out=mt)
            jit.winograd_output(mt, y[i], bias, None if z is None else z[i], tw, *act)
    finally:
        _SCRATCH.give(xp, ptag)
        _SCRATCH.give(v, "wino_v")
        _SCRATCH.give(mt, "wino_m")
    return y


def _epilogue_numpy(
    y: np.ndarray, b: np.ndarray | None, z: np.ndarray | None, act: int, lo: float, hi: float
) -> None:
    """In place on y [N, M, P] (any strides): y = act(y + b (+ z))."""
    if b is not None:
        y += b.reshape(-1, 1).astype(y.dtype, copy=False)
    if z is not None:
        y += z
    if act == jit.ACT_RELU:
        np.maximum(y, 0, out=y)
    elif act == jit.ACT_CLIP:
        np.minimum(np.maximum(y, lo, out=y), hi, out=y)


def _epilogue(
    y: np.ndarray, b: np.ndarray | None, z: np.ndarray | None, act: int, lo: float, hi: float
) -> None:
    """In place on a contiguous y [N, M, P]: one compiled pass per sample when numba is there."""
    if not (jit.AVAILABLE and y.dtype in (F32, F64)):
        _epilogue_numpy(y, b, z, act, lo, hi)
        return
    bias = None if b is None else np.ascontiguousarray(b.reshape(-1), y.dtype)
    for i in range(y.shape[0]):
        jit.epilogue(y[i], bias, None if z is None else z[i], act, lo, hi)


def _conv_nchw(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    z: np.ndarray | None,
    group: int,
    win: Window,
    outs: tuple[int, ...],
    begins: tuple[int, ...],
    ends: tuple[int, ...],
    act: tuple[int, float, float],
) -> np.ndarray:
    """act(conv(x, w) + b + z) for NCHW x, in x's work dtype, shaped [N, M, *outs]."""
    n, c, m, wt = x.shape[0], x.shape[1], w.shape[0], work_dtype(x.dtype)
    fast = len(outs) == 2 and x.dtype == wt and wt in (F32, F64)
    zc = None if z is None else np.ascontiguousarray(z, wt)  # [N, M, *outs]
    if fast and group == c == m and w.shape[1] == 1 and jit.AVAILABLE:
        xc = np.ascontiguousarray(x)
        y = np.empty((n, m, *outs), wt)
        filt = np.ascontiguousarray(w.reshape(c, *w.shape[2:]), wt)
        bias = np.zeros(m, wt) if b is None else np.ascontiguousarray(b.reshape(m), wt)
        for i in range(n):
            zi = None if zc is None else zc[i]
            jit.depthwise(xc[i], filt, bias, zi, y[i], win.strides, begins, win.dilations, *act)
        return y
    if fast and group == 1 and w.dtype == wt and _winograd_ok(w, win, outs):
        return _conv2d_winograd(np.ascontiguousarray(x), w, b, zc, outs, begins, act)
    if fast and group == 1:
        y = _conv2d_gemm(np.ascontiguousarray(x), w, win, outs, begins, ends)
    else:
        y = _conv_cf(x, w, group, win, outs, begins, ends, wt).reshape(n, m, -1)
    if b is not None or zc is not None or act[0] != jit.ACT_NONE:
        _epilogue(y, b, None if zc is None else zc.reshape(n, m, -1), *act)
    return y.reshape(n, m, *outs)


def _conv_run(ctx: KernelContext, op: str, act: tuple[int, float, float]) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    windows: dict[tuple[int, ...], Window] = {}

    def run(
        x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None
    ) -> tuple[np.ndarray]:
        m, cg, kern = conv_filter(op, x, w, nchw, group)
        nsp = x.ndim - 2
        n, c, sizes = x.shape[0], channels(x, nchw), spatial_sizes(x, nchw)
        if b is not None:
            check(b.size == m, f"{op}: bias has {b.size} elements for {m} output channels")
        win = filter_window(op, args, kern, windows)
        outs, begins, ends = _resolve(win, tuple(sizes))
        if z is not None:
            check_residual(op, z, layout(n, m, outs, nchw))
        wt = work_dtype(x.dtype)
        if nchw:
            y = _conv_nchw(x, w, b, z, group, win, outs, begins, ends, act)
        else:
            # Columns ordered (tap, channel) to match the filter [M, *K, C/g] and read the input
            # along its contiguous channel axis.
            xp = _pad(x, 1, begins, ends, 0, wt)
            patches = _window_view(xp, 1, win, outs)
            mg, kp, op_ = m // group, _prod(kern), _prod(outs)
            ck = cg * kp
            step = _samples_per_chunk(c * kp * op_ * wt.itemsize)
            sp = tuple(range(nsp))
            filt_t = w.reshape(group, mg, ck).astype(wt, copy=False).transpose(0, 2, 1)  # [g, ck, M/g]
            y = np.empty((n, op_, group, mg), wt)
            for s in range(0, n, step):
                p = patches[s : s + step]  # [n, *O, C, *K]
                cnt = len(p)
                p = p.reshape(cnt, *outs, group, cg, *kern)
                p = p.transpose(1 + nsp, 0, *(1 + i for i in sp), *(3 + nsp + i for i in sp), 2 + nsp)
                cols = p.reshape(group, cnt * op_, ck)
                if group == 1:
                    np.matmul(cols[0], filt_t[0], out=y[s : s + cnt].reshape(cnt * op_, mg))
                else:
                    y[s : s + cnt] = (
                        np.matmul(cols, filt_t).reshape(group, cnt, op_, mg).transpose(1, 2, 0, 3)
                    )
            # The epilogue runs channel-first: a [N, P, M] view as [N, M, P] (no copy).
            flat = y.reshape(n, op_, m).transpose(0, 2, 1)
            zt = None if z is None else z.reshape(n, op_, m).transpose(0, 2, 1).astype(wt, copy=False)
            if b is not None or zt is not None or act[0] != jit.ACT_NONE:
                _epilogue_numpy(flat, b, zt, *act)
            y = y.reshape(n, *outs, m)
        return (y.astype(x.dtype, copy=False),)

    return run


@table.kernel("Conv", dtypes=FLOAT_TYPES)
def conv(ctx: KernelContext) -> RunFn:
    return _conv_run(ctx, "Conv", (jit.ACT_NONE, 0.0, 0.0))


_ACTIVATIONS = {"": jit.ACT_NONE, "Relu": jit.ACT_RELU, "Clip": jit.ACT_CLIP}


@table.kernel("FusedConv", dtypes=FLOAT_TYPES)
def fused_conv(ctx: KernelContext) -> RunFn:
    args = ctx.args
    return _conv_run(
        ctx, "FusedConv", (_ACTIVATIONS[args["activation"]], float(args["min"]), float(args["max"]))
    )


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
        pad = pad_value if x.dtype.kind == "f" or average else np.iinfo(x.dtype).min
        xp = _pad(x, first, begins, ends, pad, work_dtype(x.dtype))
        taps = _tap_slices(win, outs, first, x.ndim)
        y = xp[taps[0]].copy()
        for tap in taps[1:]:
            combine(y, xp[tap], out=y)
        if average:
            div = _divisor(win, sizes, include_pad, y.dtype)
            y /= div if nchw else div[..., None]
        return (y.astype(x.dtype, copy=False),)

    return run


@table.kernel("MaxPool", dtypes=(*FLOAT_TYPES, np.dtype(np.int8), np.dtype(np.uint8)))
def max_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, np.maximum, -np.inf, average=False)  # -inf padding never wins (int: the minimum)


@table.kernel("AveragePool", dtypes=FLOAT_TYPES)
def average_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, np.add, 0.0, average=True)


# -- gradients of FC and Conv, ConvTranspose -------------------------------------------------------


@table.kernel("FCGradient", dtypes=FLOAT_TYPES)
def fc_gradient(ctx: KernelContext) -> RunFn:
    axis, axis_w, n_out = ctx.args["axis"], ctx.args["axis_w"], ctx.num_outputs

    def run(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
        _, _, m, k, n = fc_gradient_dims(x, w, dy, axis, axis_w)
        wt = work_dtype(x.dtype)
        d = dy.reshape(m, n).astype(wt, copy=False)
        dw = (d.T @ x.reshape(m, k).astype(wt, copy=False)).reshape(w.shape)
        out = [dw.astype(x.dtype, copy=False), d.sum(axis=0).astype(x.dtype, copy=False)]
        if n_out > 2:
            dx = d @ w.reshape(n, k).astype(wt, copy=False)
            out.append(dx.reshape(x.shape).astype(x.dtype, copy=False))
        return tuple(out)

    return run


@table.kernel("ConvGradient", dtypes=FLOAT_TYPES)
def conv_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict[tuple[int, ...], Window] = {}

    def run(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
        m, _, kern = conv_filter("ConvGradient", x, w, nchw, group)
        win = filter_window("ConvGradient", args, kern, windows)
        sizes = spatial_sizes(x, nchw)
        outs, begins, ends = _resolve(win, sizes)
        check_dy("ConvGradient", dy, layout(x.shape[0], m, outs, nchw))
        wt = work_dtype(x.dtype)
        x_cf, w_cf, dy_cf = _cf(x, nchw), _cf(w, nchw), _cf(dy, nchw)
        out = [_to_order(_conv_filter_grad_cf(x_cf, dy_cf, group, win, begins, ends, wt), nchw, x.dtype)]
        if not no_bias:
            out.append(_channel_sums(dy, nchw, wt).astype(x.dtype, copy=False))
        if with_dx:
            dx = _conv_adjoint_cf(dy_cf, w_cf, group, win, sizes, begins, ends, wt)
            out.append(_to_order(dx, nchw, x.dtype))
        return tuple(out)

    return run


@lru_cache(maxsize=256)
def _transpose_resolve(
    win: Window, sizes: tuple[int, ...], adjs: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    return win.transpose_resolve(sizes, adjs)


@table.kernel("ConvTranspose", dtypes=FLOAT_TYPES)
def conv_transpose(ctx: KernelContext) -> RunFn:
    """The adjoint of Conv in its input (GEMM to columns, then col2im); see _conv_adjoint_cf."""
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    windows: dict[tuple[int, ...], Window] = {}

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        m, kern = transpose_filter("ConvTranspose", x, w, nchw, group)
        if b is not None:
            check(b.size == m, f"ConvTranspose: bias has {b.size} elements for {m} output channels")
        win = filter_window("ConvTranspose", args, kern, windows)
        outs, begins, ends = _transpose_resolve(win, spatial_sizes(x, nchw), adjs)
        wt = work_dtype(x.dtype)
        y = _conv_adjoint_cf(_cf(x, nchw), _cf(w, nchw), group, win, outs, begins, ends, wt)
        if b is not None:
            y += b.reshape(m, *(1,) * len(outs)).astype(wt, copy=False)
        return (_to_order(y, nchw, x.dtype),)

    return run


@table.kernel("ConvTransposeGradient", dtypes=FLOAT_TYPES)
def conv_transpose_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict[tuple[int, ...], Window] = {}

    def run(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
        m, kern = transpose_filter("ConvTransposeGradient", x, w, nchw, group)
        win = filter_window("ConvTransposeGradient", args, kern, windows)
        sizes = spatial_sizes(x, nchw)
        outs, begins, ends = _transpose_resolve(win, sizes, adjs)
        check_dy("ConvTransposeGradient", dy, layout(x.shape[0], m, outs, nchw))
        wt = work_dtype(x.dtype)
        x_cf, w_cf, dy_cf = _cf(x, nchw), _cf(w, nchw), _cf(dy, nchw)
        # Y = adjoint(X): dW correlates dY (the big side) with X, dX convolves dY with W.
        out = [_to_order(_conv_filter_grad_cf(dy_cf, x_cf, group, win, begins, ends, wt), nchw, x.dtype)]
        if not no_bias:
            out.append(_channel_sums(dy, nchw, wt).astype(x.dtype, copy=False))
        if with_dx:
            dx = _conv_cf(dy_cf, w_cf, group, win, sizes, begins, ends, wt)
            out.append(_to_order(dx, nchw, x.dtype))
        return tuple(out)

    return run


# -- pooling gradients -----------------------------------------------------------------------------


def _pool_gradient(ctx: KernelContext, average: bool) -> RunFn:
    """dX from dY one kernel tap at a time, as the forward: each tap adds its share of every
    window's gradient into a strided slice of the padded dX."""
    args = ctx.args
    nchw = args["order"] == "NCHW"
    first = 2 if nchw else 1
    include_pad = bool(args.get("count_include_pad"))
    name = ctx.op_type

    def shapes(x: np.ndarray, y: np.ndarray, dy: np.ndarray, outs: Sequence[int]) -> None:
        check_pool_gradient(name, y, dy, layout(x.shape[0], channels(x, nchw), outs, nchw))

    if args["global_pooling"]:

        def run_global(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
            _check_rank(name, x)
            shapes(x, y, dy, (1,) * (x.ndim - 2))
            wt = work_dtype(x.dtype)
            if average:
                dx = np.broadcast_to(dy.astype(wt) / (x.size // (x.shape[0] * channels(x, nchw))), x.shape)
            else:
                dx = np.where(x == y, dy, 0)
            return (np.array(dx, dtype=x.dtype),)

        return run_global

    windows: dict[int, Window] = {}

    def run(x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray]:
        _check_rank(name, x)
        nsp = x.ndim - 2
        win = windows.get(nsp)
        if win is None:
            win = windows[nsp] = Window.from_args(args, nsp)
        sizes = tuple(x.shape[first : first + nsp])
        outs, begins, ends = _resolve(win, sizes)
        shapes(x, y, dy, outs)
        wt = work_dtype(x.dtype)
        taps = _tap_slices(win, outs, first, x.ndim)
        padded = list(x.shape)
        for i, (b, e) in enumerate(zip(begins, ends)):
            padded[first + i] += b + e
        dxp = np.zeros(padded, wt)
        if average:
            div = _divisor(win, sizes, include_pad, wt)
            g = dy.astype(wt) / (div if nchw else div[..., None])
            for tap in taps:
                dxp[tap] += g
        else:
            # Every cell equal to its window's max gets the window's gradient (-inf pads never do).
            xp = _pad(x, first, begins, ends, -np.inf, wt)
            yw, g = y.astype(wt, copy=False), dy.astype(wt, copy=False)
            mask, share = np.empty(yw.shape, bool), np.empty(yw.shape, wt)
            for tap in taps:
                np.equal(xp[tap], yw, out=mask)
                np.multiply(g, mask, out=share)
                dxp[tap] += share
        crop = [slice(None)] * x.ndim
        for i, (b, size) in enumerate(zip(begins, sizes)):
            crop[first + i] = slice(b, b + size)
        return (np.ascontiguousarray(dxp[tuple(crop)], dtype=x.dtype),)

    return run


@table.kernel("MaxPoolGradient", dtypes=FLOAT_TYPES)
def max_pool_gradient(ctx: KernelContext) -> RunFn:
    return _pool_gradient(ctx, average=False)


@table.kernel("AveragePoolGradient", dtypes=FLOAT_TYPES)
def average_pool_gradient(ctx: KernelContext) -> RunFn:
    return _pool_gradient(ctx, average=True)


# -- PadImage --------------------------------------------------------------------------------------


def _pad_setup(ctx: KernelContext) -> tuple[int, str, Any]:
    args = ctx.args
    first = 2 if args["order"] == "NCHW" else 1
    return first, args["mode"], args["pads"]


@table.kernel("PadImage", dtypes=NUMERIC_TYPES)
def pad_image(ctx: KernelContext) -> RunFn:
    first, mode, pads = _pad_setup(ctx)
    value = float(ctx.args["value"])

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        _check_rank("PadImage", x)
        nsp = x.ndim - 2
        begins, ends = split_pads(pads, nsp)
        check_pads("PadImage", mode, x.shape[first : first + nsp], begins, ends)
        width = [(0, 0)] * x.ndim
        for i, (b, e) in enumerate(zip(begins, ends)):
            width[first + i] = (b, e)
        if mode == "constant":
            return (np.pad(x, width, mode="constant", constant_values=x.dtype.type(value)),)
        return (np.pad(x, width, mode=mode),)  # numpy's reflect, edge and wrap are Caffe2's / ONNX's

    return run


@table.kernel("PadImageGradient", dtypes=FLOAT_TYPES)
def pad_image_gradient(ctx: KernelContext) -> RunFn:
    """Folds the padding back axis by axis (padding is separable): each pad's gradient is added to
    the cells it copied (mirrored for reflect, the border cell for edge), then cut off."""
    first, mode, pads = _pad_setup(ctx)

    def run(dy: np.ndarray) -> tuple[np.ndarray]:
        _check_rank("PadImageGradient", dy)
        nsp = dy.ndim - 2
        begins, ends = split_pads(pads, nsp)
        sizes = [dy.shape[first + i] - b - e for i, (b, e) in enumerate(zip(begins, ends))]
        check(
            all(s > 0 for s in sizes),
            f"PadImageGradient: dY {list(dy.shape)} is not larger than the pads {list(begins)}+{list(ends)}",
        )
        check_pads("PadImageGradient", mode, sizes, begins, ends)
        wt = work_dtype(dy.dtype)
        g = dy.astype(wt, copy=True) if mode != "constant" else dy
        for i, (b, e, size) in enumerate(zip(begins, ends, sizes)):
            ax = first + i
            if mode != "constant" and (b or e):
                g = np.moveaxis(g, ax, 0)  # a view: updates land in g's buffer
                inner = g[b : b + size]
                if mode == "edge":
                    inner[0] += g[:b].sum(axis=0)
                    inner[-1] += g[b + size :].sum(axis=0)
                elif mode == "wrap":  # pad cell j (of all b + size + e) copies cell (j - b) mod size
                    src = (np.arange(-b, 0) % size).tolist() + (np.arange(size, size + e) % size).tolist()
                    np.add.at(inner, src, np.concatenate([g[:b], g[b + size :]]))
                else:  # reflect: pad cell b - j copies cell j, end pad cell size - 1 + j copies size - 1 - j
                    if b:
                        inner[1 : b + 1] += g[:b][::-1]
                    if e:
                        inner[size - 1 - e : size - 1] += g[b + size :][::-1]
                g = np.moveaxis(g, 0, ax)
            g = g[(slice(None),) * ax + (slice(b, b + size),)]
        return (np.ascontiguousarray(g, dtype=dy.dtype),)

    return run
