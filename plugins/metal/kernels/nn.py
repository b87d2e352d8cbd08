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
kaffa.launch.nn.COLS_BUDGET_BYTES are built a chunk of samples at a time. float16 is stored as float16 and
summed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.nn import (
    ConvArgs,
    ConvGeometry,
    channel_split,
    channels,
    chunk,
    fc_gradient_run,
    fc_run,
    layout,
    spatial_sizes,
)
from kaffa.ops.geometry import Window
from kaffa.schema import check
from kaffa_metal.allocator import MetalArray
from kaffa_metal.kernels.blas import gemm
from kaffa_metal.kernels.common import FLOATS, WG, device, empty, kernel

table = KernelTable("metal")

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
        n, m = dy.shape[0], channels(dy, nchw)
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


def _conv(h: _Helpers, x, w, group, win, outs, begins, nchw, bias=None) -> MetalArray:
    """x (big side) with w [M, C/g, *K] (NHWC: [M, *K, C/g]) -> y [N, M, *outs] in the layout (+ bias).
    One GEMM per group over a whole chunk of samples: Z[g] [M/g, cnt * op] = W[g] . cols[g]."""
    n, c, sizes = x.shape[0], channels(x, nchw), spatial_sizes(x, nchw)
    m, cg, kern = w.shape[0], c // group, win.kernels
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    y = h.empty(layout(n, m, outs, nchw))
    if y.size == 0:
        return y
    geom = _geometry(win, sizes, outs, begins)
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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
    n, m, outs = dy.shape[0], channels(dy, nchw), spatial_sizes(dy, nchw)
    cg, kern = channels(w, nchw), win.kernels
    c = cg * group
    mg, kp, op, sp = m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    dx = h.empty(layout(n, c, sizes, nchw))
    if dx.size == 0:
        return dx
    geom = _geometry(win, sizes, outs, begins)
    dyt = h.small_rows(dy, nchw) if dyt is None else dyt
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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
    n, c, sizes = x.shape[0], channels(x, nchw), spatial_sizes(x, nchw)
    m, outs, kern = channels(dy, nchw), spatial_sizes(dy, nchw), win.kernels
    cg, mg, kp, op, sp = c // group, m // group, math.prod(kern), math.prod(outs), math.prod(sizes)
    ck = cg * kp
    if n == 0 or op == 0:
        return h.zeros(w_shape)
    dw = h.empty(w_shape)
    if dw.size == 0:
        return dw
    geom = _geometry(win, sizes, outs, begins)
    dyt = h.small_rows(dy, nchw) if dyt is None else dyt
    step = chunk(n, c * kp * op * h.dtype.itemsize)
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


# -- FC ---------------------------------------------------------------------------------------------


@table.kernel("FC", dtypes=FLOATS)
def fc(ctx: KernelContext) -> RunFn:
    dev = device(ctx)

    def forward(x, w, b, ax, m, k, n):
        # Y = X [m, k] . Wᵀ [k, n] + b
        return gemm(dev, x, w, m, n, k, trans_b=True, lda=k, ldb=k, bias=b, out_shape=(*x.shape[:ax], n))

    return fc_run(ctx, forward)


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    h = _Helpers(ctx)

    def backward(x, w, dy, m, k, n, with_dx):
        if m == 0:
            out = [h.zeros(w.shape), h.zeros((n,))]
        else:
            dw = gemm(h.dev, dy, x, n, k, m, trans_a=True, lda=n, ldb=k, out_shape=w.shape)  # dYᵀ . X
            out = [dw, h.channel_sums(dy, m, n, 1)]
        if with_dx:
            out.append(gemm(h.dev, dy, w, m, k, n, lda=n, ldb=k, out_shape=x.shape))  # dY . W
        return out

    return fc_gradient_run(ctx, backward)


# -- Conv, ConvTranspose ----------------------------------------------------------------------------


@table.kernel("Conv", "ConvTranspose", dtypes=FLOATS)
def conv(ctx: KernelContext) -> RunFn:
    """Conv, and ConvTranspose: the adjoint of Conv in its input (GEMM to columns, then col2im)."""
    c = ConvArgs.from_ctx(ctx, ctx.op_type)
    h = _Helpers(ctx)
    op = _adjoint if c.transpose else _conv

    def forward(x, w, b, g: ConvGeometry):
        return op(h, x, w, c.group, g.win, g.outs, g.begins, c.nchw, b)

    return c.forward_run(forward)


@table.kernel("ConvGradient", "ConvTransposeGradient", dtypes=FLOATS)
def conv_gradient(ctx: KernelContext) -> RunFn:
    """ConvGradient, and ConvTransposeGradient: there Y = adjoint(X), so dW correlates dY (the
    big side) with X, and dX convolves dY with W."""
    c = ConvArgs.from_ctx(ctx, ctx.op_type)
    h = _Helpers(ctx)

    def prepare(x, w, dy):
        # Conv's dW and dX both read dY (the small side) as rows: swapped once for both.
        return x, w, dy, None if c.transpose else h.small_rows(dy, c.nchw)

    def dw(state, g: ConvGeometry):
        x, w, dy, dyt = state
        if c.transpose:
            return _filter_grad(h, dy, x, c.group, g.win, g.begins, c.nchw, w.shape)
        return _filter_grad(h, x, dy, c.group, g.win, g.begins, c.nchw, w.shape, dyt)

    def db(dy):
        return h.channel_sums(dy, *channel_split(dy, c.nchw))

    def dx(state, g: ConvGeometry):
        _, w, dy, dyt = state
        if c.transpose:
            return _conv(h, dy, w, c.group, g.win, g.sizes, g.begins, c.nchw)
        return _adjoint(h, dy, w, c.group, g.win, g.sizes, g.begins, c.nchw, dyt=dyt)

    return c.gradient_run(prepare, dw, db, dx)
