"""metal kernels for the nn family (see kaffa.ops.nn): FC, Conv, ConvTranspose and their gradients.
(Pooling lives in kaffa_metal.kernels.pool.)

Everything is the tiled GEMM of kaffa_metal.kernels.blas plus the helpers of wgsl/nn.wgsl,
mirroring the cpu kernels' algorithm (kaffa_cpu.kernels.nn) with one GEMM per group over a whole
chunk of samples (few big GEMMs beat many small ones): im2col builds the columns as
[C * prod(K), samples * positions]; Conv is W[g] . cols[g]; its adjoint (ConvTranspose, Conv's
dX) is W[g]ᵀ . dY[g] to columns, then col2im, a gather, so no atomics; the filter gradient is
dY[g] . cols[g]ᵀ. im2col/col2im address data through (sample, channel, position) strides and
order column rows like the filter ((tap, channel) for NHWC filters), so NHWC needs no permutes:
its [samples * positions, channels] data is read and written through transposed GEMM operands.
NCHW swaps the first two axes instead: dY to [M, N, positions] for the gradients, Conv's
[M, N, positions] product back to [N, M, positions]. Column matrices bigger than
COLS_BUDGET_BYTES are built a chunk of samples at a time. float16 is stored as float16 and
summed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.ops.geometry import Window
from kaffa.schema import check, norm_axis
from kaffa_metal.allocator import MetalArray
from kaffa_metal.kernels.blas import gemm
from kaffa_metal.kernels.common import FLOATS, WG, device, empty, kernel

table = KernelTable("metal")

COLS_BUDGET_BYTES = 64 << 20
MAX_SPATIAL = 8


class _Helpers:
    """The wgsl/nn.wgsl launchers of one op."""

    def __init__(self, ctx: KernelContext):
        self.dev = device(ctx)
        self.dtype = np.dtype(ctx.dtype or np.float32)
        self.im2col_k = kernel(ctx, "nn", "im2col", self.dtype)
        self.col2im_k = kernel(ctx, "nn", "col2im", self.dtype)
        self.swap01_k = kernel(ctx, "nn", "swap01", self.dtype)
        self.csum_k = kernel(ctx, "nn", "channel_sum", self.dtype)
        self.zero_k = kernel(ctx, "nn", "zero", self.dtype)

    def empty(self, shape: Sequence[int]) -> MetalArray:
        return empty(self.dev, shape, self.dtype)

    def scratch(self, size: int) -> MetalArray:
        return empty(self.dev, (max(1, size),), self.dtype)

    def zeros(self, shape: Sequence[int]) -> MetalArray:
        y = self.empty(shape)
        self.zero_k(y.size, y, params=[y.size])
        return y

    def channel_sums(self, x: MetalArray, outer: int, c: int, inner: int) -> MetalArray:
        out = self.empty((c,))
        self.csum_k(c * WG, x, out, params=[c, outer, inner])  # a workgroup per channel
        return out

    def swap01(self, x: MetalArray, a: int, b: int, inner: int, out: MetalArray | None = None, at: int = 0):
        """[a, b, inner] -> [b, a, inner], into ``out`` from element ``at`` (default: a new array)."""
        y = self.scratch(a * b * inner) if out is None else out
        self.swap01_k(a * b * inner, x, y, params=[a * b * inner, a, b, inner, at])
        return y

    def im2col(self, x, cols, geom: list[int], c, cnt, s0, kp, op, sp, group, cg, nchw) -> None:
        """cols [C * kp, cnt, op] of samples s0 .. s0 + cnt - 1 of the big side x."""
        nsp = len(geom) // 6
        runs = cnt * c * kp * (op // geom[nsp + nsp - 1])  # runs along the last output axis
        head = [runs, c, cnt, s0, kp, op, sp, 0, group, cg, int(not nchw)]
        self.im2col_k(runs, x, cols, params=[*head, *_strides(c, sp, nchw), nsp, 0, *geom])

    def col2im(self, cols, bias, dx, geom: list[int], c, cnt, s0, kp, op, sp, group, cg, nchw) -> None:
        """Samples s0 .. s0 + cnt - 1 of the big side dx from cols [C * kp, cnt, op] (+ bias)."""
        total = cnt * c * sp
        head = [total, c, cnt, s0, kp, op, sp, int(bias is not None), group, cg, int(not nchw)]
        tail = [*_strides(c, sp, nchw), len(geom) // 6, int(not nchw), *geom]
        self.col2im_k(total, cols, cols if bias is None else bias, dx, params=[*head, *tail])

    def small_rows(self, dy: MetalArray, nchw: bool) -> MetalArray:
        """The small side as [M, N * op] rows for NCHW (NHWC's [N * op, M] is read transposed)."""
        n, m = dy.shape[0], _channels(dy, nchw)
        if not nchw or n == 1 or m == 1:
            return dy
        return self.swap01(dy, n, m, math.prod(dy.shape[2:]))


def _small_operand(n: int, m: int, op: int, s0: int, g: np.ndarray, mg: int, nchw: bool):
    """(offsets, leading dim, transposed) of group g's [M/g, cnt * op] block of small_rows(dy) from
    sample s0 on, as a GEMM operand."""
    if nchw:
        return g * mg * n * op + s0 * op, n * op, False
    return s0 * op * m + g * mg, m, True


def _strides(c: int, sp: int, nchw: bool) -> tuple[int, int, int]:
    """(sample, channel, flat position) strides of [N, C, *S] data in its layout."""
    return (c * sp, sp, 1) if nchw else (c * sp, 1, c)


def _geometry(win: Window, sizes: Sequence[int], outs: Sequence[int], begins: Sequence[int]) -> list[int]:
    check(len(sizes) <= MAX_SPATIAL, f"metal convolution supports up to {MAX_SPATIAL} spatial axes")
    return [*sizes, *outs, *win.kernels, *win.strides, *win.dilations, *begins]


def _chunk(n: int, bytes_per_sample: int) -> int:
    return max(1, min(n, COLS_BUDGET_BYTES // max(1, bytes_per_sample)))


def _channels(x: Any, nchw: bool) -> int:
    return x.shape[1] if nchw else x.shape[-1]


def _sizes(x: Any, nchw: bool) -> tuple[int, ...]:
    return tuple(x.shape[2:] if nchw else x.shape[1:-1])


def _layout(n: int, c: int, spatial: Sequence[int], nchw: bool) -> tuple[int, ...]:
    return (n, c, *spatial) if nchw else (n, *spatial, c)


def _conv(h: _Helpers, x, w, group, win, outs, begins, nchw, bias=None) -> MetalArray:
    """x (big side) with w [M, C/g, *K] (NHWC: [M, *K, C/g]) -> y [N, M, *outs] in the layout (+ bias).
    One GEMM per group over a whole chunk of samples: Z[g] [M/g, cnt * op] = W[g] . cols[g]."""
    n, c, sizes = x.shape[0], _channels(x, nchw), _sizes(x, nchw)
    m, cg, kern = w.shape[0], c // group, win.kernels
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    y = h.empty(_layout(n, m, outs, nchw))
    if y.size == 0:
        return y
    geom = _geometry(win, sizes, outs, begins)
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.scratch(c * kp * step * op)
    z = h.scratch(m * step * op) if nchw and step > 1 else None
    g = np.arange(group, dtype=np.int64)
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        h.im2col(x, cols, geom, c, cnt, s0, kp, op, sp, group, cg, nchw)
        col_off, cw = g * ck * cnt * op, cnt * op
        if nchw:  # Z [M, cnt, op], then swapped into y's [cnt, M, op] (written directly for one sample)
            out, z_off = (y, s0 * m * op) if cnt == 1 else (z, 0)
            offs = np.stack([g * mg * ck, col_off, z_off + g * mg * cw, g * mg], 1)
            gemm(h.dev, w, cols, mg, cw, ck, lda=ck, ldb=cw, ldc=cw, offsets=offs, bias=bias, bias_rows=True,
                 out=out)  # fmt: skip
            if cnt > 1:
                h.swap01(z, m, cnt, op, out=y, at=s0 * m * op)
        else:  # y [cnt * op, M] = colsᵀ [cnt * op, ck] . W[g]ᵀ [ck, M/g]
            offs = np.stack([col_off, g * mg * ck, s0 * op * m + g * mg, g * mg], 1)
            gemm(h.dev, cols, w, cw, mg, ck, trans_a=True, trans_b=True, lda=cw, ldb=ck, ldc=m,
                 offsets=offs, bias=bias, out=y)  # fmt: skip
    return y


def _adjoint(h: _Helpers, dy, w, group, win, sizes, begins, nchw, bias=None, dyt=None) -> MetalArray:
    """dy (small side, M channels) with w [M, C/g, *K] -> the big side [N, C, *sizes] (+ bias[C]).
    ``dyt``: h.small_rows(dy) when the caller has it."""
    n, m, outs = dy.shape[0], _channels(dy, nchw), _sizes(dy, nchw)
    cg, kern = _channels(w, nchw), win.kernels
    c = cg * group
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    dx = h.empty(_layout(n, c, sizes, nchw))
    if dx.size == 0:
        return dx
    geom = _geometry(win, sizes, outs, begins)
    dyt = h.small_rows(dy, nchw) if dyt is None else dyt
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.scratch(c * kp * step * op)
    g = np.arange(group, dtype=np.int64)
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        # cols[g] [ck, cnt * op] = W[g]ᵀ [ck, M/g] . dY[g] [M/g, cnt * op]
        dy_off, ldb, trans_b = _small_operand(n, m, op, s0, g, mg, nchw)
        offs = np.stack([g * mg * ck, dy_off, g * ck * cnt * op], 1)
        gemm(h.dev, w, dyt, ck, cnt * op, mg, trans_a=True, trans_b=trans_b, lda=ck, ldb=ldb, ldc=cnt * op,
             offsets=offs, out=cols)  # fmt: skip
        h.col2im(cols, bias, dx, geom, c, cnt, s0, kp, op, sp, group, cg, nchw)
    return dx


def _filter_grad(h: _Helpers, x, dy, group, win, begins, nchw, w_shape, dyt=None) -> MetalArray:
    """x (big side, C channels), dy (small side, M channels) -> dW of shape ``w_shape``.
    ``dyt``: h.small_rows(dy) when the caller has it."""
    n, c, sizes = x.shape[0], _channels(x, nchw), _sizes(x, nchw)
    m, outs, kern = _channels(dy, nchw), _sizes(dy, nchw), win.kernels
    cg, mg, kp, op, sp = c // group, m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    if n == 0 or op == 0:
        return h.zeros(w_shape)
    dw = h.empty(w_shape)
    if dw.size == 0:
        return dw
    geom = _geometry(win, sizes, outs, begins)
    dyt = h.small_rows(dy, nchw) if dyt is None else dyt
    step = _chunk(n, c * kp * op * h.dtype.itemsize)
    cols = h.scratch(c * kp * step * op)
    g = np.arange(group, dtype=np.int64)
    for s0 in range(0, n, step):
        cnt = min(step, n - s0)
        h.im2col(x, cols, geom, c, cnt, s0, kp, op, sp, group, cg, nchw)
        # dW[g] [M/g, ck] (+)= dY[g] [M/g, cnt * op] . cols[g]ᵀ [cnt * op, ck]
        a_off, lda, trans_a = _small_operand(n, m, op, s0, g, mg, nchw)
        offs = np.stack([a_off, g * ck * cnt * op, g * mg * ck], 1)
        gemm(h.dev, dyt, cols, mg, ck, cnt * op, trans_a=trans_a, trans_b=True, lda=lda, ldb=cnt * op,
             ldc=ck, offsets=offs, out=dw, beta=0.0 if s0 == 0 else 1.0)  # fmt: skip
    return dw


def _bias_sums(h: _Helpers, dy, nchw: bool) -> MetalArray:
    c = _channels(dy, nchw)
    if nchw:
        return h.channel_sums(dy, dy.shape[0], c, math.prod(dy.shape[2:]))
    return h.channel_sums(dy, math.prod(dy.shape[:-1]), c, 1)


# -- FC ---------------------------------------------------------------------------------------------


@table.kernel("FC", dtypes=FLOATS)
def fc(ctx: KernelContext) -> RunFn:
    axis, axis_w = ctx.args["axis"], ctx.args["axis_w"]
    dev = device(ctx)

    def run(x, w, b=None):
        ax = norm_axis(axis, x.ndim, "FC")
        aw = norm_axis(axis_w, w.ndim, "FC", "axis_w")
        m, k = math.prod(x.shape[:ax]), math.prod(x.shape[ax:])
        n, k_w = math.prod(w.shape[:aw]), math.prod(w.shape[aw:])
        check(
            k == k_w,
            f"FC: X {list(x.shape)} flattened at axis {ax} has {k} columns but W {list(w.shape)} "
            f"flattened at axis_w {aw} has {k_w}",
        )
        if b is not None:
            check(b.size == n, f"FC: bias has {b.size} elements, W has {n} rows")
        # Y = X [m, k] . Wᵀ [k, n] + b
        y = gemm(dev, x, w, m, n, k, trans_b=True, lda=k, ldb=k, bias=b, out_shape=(*x.shape[:ax], n))
        return (y,)

    return run


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    axis, axis_w, n_out = ctx.args["axis"], ctx.args["axis_w"], ctx.num_outputs
    h = _Helpers(ctx)

    def run(x, w, dy):
        ax = norm_axis(axis, x.ndim, "FCGradient")
        aw = norm_axis(axis_w, w.ndim, "FCGradient", "axis_w")
        m, k = math.prod(x.shape[:ax]), math.prod(x.shape[ax:])
        n = math.prod(w.shape[:aw])
        check(
            math.prod(w.shape[aw:]) == k and tuple(dy.shape) == (*x.shape[:ax], n),
            f"FCGradient: X {list(x.shape)} (axis {ax}), W {list(w.shape)} (axis_w {aw}) and "
            f"dY {list(dy.shape)} do not fit: dY must be {[*x.shape[:ax], n]}",
        )
        if m == 0:
            out = [h.zeros(w.shape), h.zeros((n,))]
        else:
            dw = gemm(h.dev, dy, x, n, k, m, trans_a=True, lda=n, ldb=k, out_shape=w.shape)  # dYᵀ . X
            out = [dw, h.channel_sums(dy, m, n, 1)]
        if n_out > 2:
            out.append(gemm(h.dev, dy, w, m, k, n, lda=n, ldb=k, out_shape=x.shape))  # dY . W
        return tuple(out)

    return run


# -- Conv, ConvTranspose ----------------------------------------------------------------------------


def _conv_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, int, tuple[int, ...]]:
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = _channels(x, nchw)
    m, cg, kern = w.shape[0], _channels(w, nchw), _sizes(w, nchw)
    check(
        c == cg * group and m % group == 0,
        f"{op}: X has {c} channels and the filter {list(w.shape)} has {m} outputs x {cg} channels "
        f"per group; with group={group} X needs {cg * group} channels and outputs must divide",
    )
    return m, cg, kern


def _transpose_filter(op: str, x: Any, w: Any, nchw: bool, group: int) -> tuple[int, tuple[int, ...]]:
    check(
        x.ndim >= 3 and w.ndim == x.ndim,
        f"{op}: X {list(x.shape)} needs a batch, a channel and a spatial axis, and the filter "
        f"{list(w.shape)} the same rank",
    )
    c = _channels(x, nchw)
    check(
        w.shape[0] == c and c % group == 0,
        f"{op}: X has {c} channels, the filter {list(w.shape)} is for {w.shape[0]}; with group={group} "
        "the channels must also divide into the groups",
    )
    return _channels(w, nchw) * group, _sizes(w, nchw)


def _filter_window(op: str, args: Mapping[str, Any], kern: tuple[int, ...], cache: dict) -> Window:
    win = cache.get(kern)
    if win is None:
        if args.get("kernels"):
            declared = Window.from_args(args, len(kern)).kernels
            check(
                declared == kern,
                f"{op}: kernel argument {list(declared)} does not match the filter's spatial "
                f"shape {list(kern)}",
            )
        win = cache[kern] = Window.from_args(args, len(kern), kernels=kern)
    return win


def _check_dy(op: str, dy: Any, want: tuple[int, ...]) -> None:
    check(tuple(dy.shape) == want, f"{op}: dY has shape {list(dy.shape)}, the forward output {list(want)}")


@table.kernel("Conv", dtypes=FLOATS)
def conv(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, b=None):
        m, _, kern = _conv_filter("Conv", x, w, nchw, group)
        if b is not None:
            check(b.size == m, f"Conv: bias has {b.size} elements for {m} output channels")
        win = _filter_window("Conv", args, kern, windows)
        outs, begins, _ = win.resolve(_sizes(x, nchw))
        return (_conv(h, x, w, group, win, outs, begins, nchw, b),)

    return run


@table.kernel("ConvGradient", dtypes=FLOATS)
def conv_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, dy):
        m, _, kern = _conv_filter("ConvGradient", x, w, nchw, group)
        win = _filter_window("ConvGradient", args, kern, windows)
        sizes = _sizes(x, nchw)
        outs, begins, _ = win.resolve(sizes)
        _check_dy("ConvGradient", dy, _layout(x.shape[0], m, outs, nchw))
        dyt = h.small_rows(dy, nchw)
        out = [_filter_grad(h, x, dy, group, win, begins, nchw, w.shape, dyt)]
        if not no_bias:
            out.append(_bias_sums(h, dy, nchw))
        if with_dx:
            out.append(_adjoint(h, dy, w, group, win, sizes, begins, nchw, dyt=dyt))
        return tuple(out)

    return run


@table.kernel("ConvTranspose", dtypes=FLOATS)
def conv_transpose(ctx: KernelContext) -> RunFn:
    """The adjoint of Conv in its input: GEMM to columns, then col2im."""
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, b=None):
        m, kern = _transpose_filter("ConvTranspose", x, w, nchw, group)
        if b is not None:
            check(b.size == m, f"ConvTranspose: bias has {b.size} elements for {m} output channels")
        win = _filter_window("ConvTranspose", args, kern, windows)
        outs, begins, _ = win.transpose_resolve(_sizes(x, nchw), adjs)
        return (_adjoint(h, x, w, group, win, outs, begins, nchw, b),)

    return run


@table.kernel("ConvTransposeGradient", dtypes=FLOATS)
def conv_transpose_gradient(ctx: KernelContext) -> RunFn:
    args = ctx.args
    nchw = args["order"] == "NCHW"
    group = int(args["group"])
    adjs = tuple(args["adjs"])
    no_bias = bool(args["no_bias"])
    with_dx = ctx.num_outputs == (2 if no_bias else 3)
    windows: dict = {}
    h = _Helpers(ctx)

    def run(x, w, dy):
        m, kern = _transpose_filter("ConvTransposeGradient", x, w, nchw, group)
        win = _filter_window("ConvTransposeGradient", args, kern, windows)
        sizes = _sizes(x, nchw)
        outs, begins, _ = win.transpose_resolve(sizes, adjs)
        _check_dy("ConvTransposeGradient", dy, _layout(x.shape[0], m, outs, nchw))
        # Y = adjoint(X): dW correlates dY (the big side) with X, dX convolves dY with W.
        out = [_filter_grad(h, dy, x, group, win, begins, nchw, w.shape)]
        if not no_bias:
            out.append(_bias_sums(h, dy, nchw))
        if with_dx:
            out.append(_conv(h, dy, w, group, win, sizes, begins, nchw))
        return tuple(out)

    return run
