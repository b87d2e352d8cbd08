"""FC and FCGradient (GEMMs through cuBLAS), Conv and ConvGradient (2-D NCHW: im2col / col2im in
cu/nn.cu around cuBLAS GEMMs, per sample and group). Other layouts, ranks and ConvTranspose run
on cpu (the predicate says why), or on the CUDNN engine (kaffa_cuda.cudnn).

On the cudasim test backend im2col and col2im are numpy slices, so the GEMM, group, bias and
gradient logic here runs on any machine; the raw kernels are checked by ``nvcc -ptx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.nn import ConvArgs, ConvGeometry, fc_gradient_run, fc_run
from kaffa_cuda.kernels.common import FLOATS, Launcher, Table, is_sim, wide, xp

table = Table()


@table.kernel("FC", dtypes=FLOATS)
def fc(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def forward(x, w, b, ax, m, k, n):
        y = cp.matmul(x.reshape(m, k), w.reshape(n, k).T)  # cuBLAS; float16 accumulates in float32
        if b is not None:
            y = (wide(cp, y) + b.reshape(n)).astype(x.dtype)
        return y.reshape(*x.shape[:ax], n)

    return fc_run(ctx, forward)


@table.kernel("FCGradient", dtypes=FLOATS)
def fc_gradient(ctx: KernelContext) -> RunFn:
    cp = xp(ctx)

    def backward(x, w, dy, m, k, n, with_dx):
        d = dy.reshape(m, n)
        out = [cp.matmul(d.T, x.reshape(m, k)).reshape(w.shape), wide(cp, d).sum(axis=0).astype(dy.dtype)]
        if with_dx:
            out.append(cp.matmul(d, w.reshape(n, k)).reshape(x.shape))
        return out

    return fc_gradient_run(ctx, backward)


def conv2d_nchw(ctx: KernelContext) -> str | None:
    """The default Conv kernels take 2-D NCHW (any stride, pad, dilation, group)."""
    if ctx.args["order"] != "NCHW":
        return "the cuda Conv kernel takes order NCHW (NHWC runs on cpu or the CUDNN engine)"
    if ctx.inputs and ctx.inputs[0].shape is not None and len(ctx.inputs[0].shape) != 4:
        return "the cuda Conv kernel takes 2-D images (4-d X)"
    return None


def _params(g: ConvGeometry) -> tuple[np.int32, ...]:
    (h, w), (kh, kw), (oh, ow) = g.sizes, g.kern, g.outs
    win = g.win
    return tuple(np.int32(v) for v in (h, w, kh, kw, *win.strides, *g.begins, *win.dilations, oh, ow))


class Im2Col:
    """im2col / col2im of one sample's group of channels: raw kernels on cuda, numpy on cudasim."""

    def __init__(self, ctx: KernelContext):
        self.cp, self.sim = xp(ctx), is_sim(ctx)
        if not self.sim:
            self.k_im2col = Launcher(ctx, "nn", "im2col")
            self.k_col2im = Launcher(ctx, "nn", "col2im")

    def im2col(self, x: Any, g: ConvGeometry) -> Any:
        """x [C, H, W] -> cols [C*KH*KW, OH*OW]."""
        c = x.shape[0]
        (kh, kw), (oh, ow) = g.kern, g.outs
        if self.sim:
            return _np_im2col(x, g)
        x = self.cp.ascontiguousarray(x)
        cols = self.cp.empty((c * kh * kw, oh * ow), x.dtype)
        self.k_im2col(cols.size, x, cols, np.int32(c), *_params(g))
        return cols

    def col2im(self, cols: Any, c: int, g: ConvGeometry) -> Any:
        """The adjoint: cols [C*KH*KW, OH*OW] -> x [C, H, W] (overlaps summed)."""
        h, w = g.sizes
        if self.sim:
            return _np_col2im(cols, c, g)
        cols = self.cp.ascontiguousarray(cols)
        x = self.cp.empty((c, h, w), cols.dtype)
        self.k_col2im(x.size, cols, x, np.int32(c), *_params(g))
        return x


def _np_taps(g: ConvGeometry):
    (h, w), (kh, kw), (oh, ow) = g.sizes, g.kern, g.outs
    (sh, sw), (dh, dw), (ph, pw) = g.win.strides, g.win.dilations, g.begins
    eh, ew = max(h + ph, (oh - 1) * sh + (kh - 1) * dh + 1), max(w + pw, (ow - 1) * sw + (kw - 1) * dw + 1)
    for ky in range(kh):
        for kx in range(kw):
            ys = slice(ky * dh, ky * dh + (oh - 1) * sh + 1, sh)
            xs = slice(kx * dw, kx * dw + (ow - 1) * sw + 1, sw)
            yield ky, kx, ys, xs, (eh, ew), (ph, pw)


def _np_im2col(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    c, (h, w), (kh, kw), (oh, ow) = x.shape[0], g.sizes, g.kern, g.outs
    cols = np.empty((c, kh, kw, oh, ow), x.dtype)
    for ky, kx, ys, xs, (eh, ew), (ph, pw) in _np_taps(g):
        padded = np.zeros((c, eh, ew), x.dtype)
        padded[:, ph : ph + h, pw : pw + w] = x
        cols[:, ky, kx] = padded[:, ys, xs]
    return cols.reshape(c * kh * kw, oh * ow)


def _np_col2im(cols: np.ndarray, c: int, g: ConvGeometry) -> np.ndarray:
    (h, w), (kh, kw), (oh, ow) = g.sizes, g.kern, g.outs
    c5 = cols.reshape(c, kh, kw, oh, ow).astype(np.float64 if cols.dtype == np.float64 else np.float32)
    (ph, pw), padded = g.begins, None
    for ky, kx, ys, xs, (eh, ew), _ in _np_taps(g):
        if padded is None:
            padded = np.zeros((c, eh, ew), c5.dtype)
        padded[:, ys, xs] += c5[:, ky, kx]
    return padded[:, ph : ph + h, pw : pw + w].astype(cols.dtype)


@table.kernel("Conv", dtypes=FLOATS, supports=conv2d_nchw)
def conv(ctx: KernelContext) -> RunFn:
    args = ConvArgs.from_ctx(ctx, "Conv")
    cp, grp, cols = xp(ctx), args.group, Im2Col(ctx)

    def forward(x, w, b, g: ConvGeometry):
        n, c = x.shape[:2]
        cg, mg = c // grp, g.m // grp
        oh, ow = g.outs
        y = cp.empty((n, g.m, oh * ow), x.dtype)
        wg = w.reshape(grp, mg, -1)
        for i in range(n):
            for j in range(grp):
                col = cols.im2col(x[i, j * cg : (j + 1) * cg], g)
                y[i, j * mg : (j + 1) * mg] = cp.matmul(wg[j], col)
        if b is not None:
            y = (wide(cp, y) + b.reshape(1, g.m, 1)).astype(x.dtype)
        return y.reshape(n, g.m, oh, ow)

    return args.forward_run(forward)


@table.kernel("ConvGradient", dtypes=FLOATS, supports=conv2d_nchw)
def conv_gradient(ctx: KernelContext) -> RunFn:
    args = ConvArgs.from_ctx(ctx, "ConvGradient")
    cp, grp, cols = xp(ctx), args.group, Im2Col(ctx)

    def prepare(x, w, dy):
        return x, w, dy

    def dw(state, g: ConvGeometry):
        x, w, dy = state
        n, c = x.shape[:2]
        cg, mg = c // grp, g.m // grp
        d = dy.reshape(n, g.m, -1)
        acc = cp.zeros(
            (grp, mg, cg * g.kern[0] * g.kern[1]), np.float64 if w.dtype == np.float64 else np.float32
        )
        for i in range(n):
            for j in range(grp):
                col = cols.im2col(x[i, j * cg : (j + 1) * cg], g)
                acc[j] += cp.matmul(wide(cp, d[i, j * mg : (j + 1) * mg]), wide(cp, col).T)
        return acc.reshape(w.shape).astype(w.dtype)

    def db(dy):
        return wide(cp, dy).sum(axis=(0, 2, 3)).astype(dy.dtype)

    def dx(state, g: ConvGeometry):
        x, w, dy = state
        n, c = x.shape[:2]
        cg, mg = c // grp, g.m // grp
        d = dy.reshape(n, g.m, -1)
        wg = w.reshape(grp, mg, -1)
        out = cp.empty(x.shape, x.dtype)
        for i in range(n):
            for j in range(grp):
                col = cp.matmul(wg[j].T, d[i, j * mg : (j + 1) * mg])
                out[i, j * cg : (j + 1) * cg] = cols.col2im(col, cg, g)
        return out

    return args.gradient_run(prepare, dw, db, dx)
