"""SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss,
SquaredL2Distance, Accuracy, and their gradients (cl/loss.cl).

Sums accumulate in float (double for float64). Values the cpu kernels validate by reading them
(label ranges, probability rows, soft labels in [0, 1]) are not read back from the device: an
out-of-range label gives NaN instead of an out-of-bounds read.
"""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import loss as shared
from kaffa_opencl.kernels.common import FLOATS, device, empty, kernel

table = KernelTable("opencl")

F16, F32, I64 = np.dtype(np.float16), np.dtype(np.float32), np.int64


def _work(dtype) -> np.dtype:
    """The arithmetic type A of a T (as numpy dtype), for scalar arguments and scratch buffers."""
    return F32 if np.dtype(dtype) == F16 else np.dtype(dtype)


class _Kernels:
    """An op's launchers, built on first use per (label dtype, loss-gradient dtype): labels may be
    int32 or int64, and a seeded dLoss any float type whatever T is."""

    def __init__(self, ctx: KernelContext, *names: str, **consts: int):
        self.ctx, self.names, self.consts, self.built = ctx, names, consts, {}
        dev = device(ctx)
        self.wg = 1 << (min(256, int(dev.cl_device.max_work_group_size)).bit_length() - 1)
        self.dev, self.work = dev, _work(ctx.dtype)

    def __call__(self, labels=np.int32, grad=None) -> tuple:
        key = (np.dtype(labels), np.dtype(self.ctx.dtype if grad is None else grad))
        ks = self.built.get(key)
        if ks is None:
            opts = dict(I=key[0], G=key[1], G_HALF=int(key[1] == F16), WG=self.wg, **self.consts)
            ks = self.built[key] = tuple(kernel(self.ctx, "loss", n, **opts) for n in self.names)
        return ks

    def scratch(self, n: int):
        return empty(self.dev, (max(n, 1),), self.work)  # never zero-size: it is a kernel argument


# -- SoftmaxWithLoss -------------------------------------------------------------------------------


def _softmax_loss_setup(ctx: KernelContext, *names: str):
    a = ctx.args
    weighted = shared.softmax_loss_weighted(ctx)
    label_prob = bool(a["label_prob"])
    ks = _Kernels(ctx, *names, LABEL_PROB=int(label_prob), WEIGHTED=int(weighted))
    return a["axis"], label_prob, ks.work.type(a["scale"]), weighted, ks


@table.kernel("SoftmaxWithLoss", dtypes=FLOATS)
def softmax_with_loss(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, _, ks = _softmax_loss_setup(ctx, "softmax_loss_rows", "softmax_loss_total")

    def run(x, t, w=None):
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        rows, total = ks(np.int32 if label_prob else t.dtype)  # I only types class indices
        p, row_loss, loss = empty(ks.dev, x.shape, x.dtype), ks.scratch(n), empty(ks.dev, (), x.dtype)
        rows(n, x, t, p, row_loss, I64(n), I64(d))
        total(ks.wg, row_loss, w, loss, I64(n), scale, local=(ks.wg,))
        return p, loss

    return run


@table.kernel("SoftmaxWithLossGradient", dtypes=FLOATS)
def softmax_with_loss_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, weighted, ks = _softmax_loss_setup(
        ctx, "softmax_loss_factor", "softmax_loss_grad"
    )

    def run(x, t, *rest):
        w, p, dloss = rest if weighted else (None, *rest)
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_grad(op, x, p, dloss)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        factor_k, grad_k = ks(np.int32 if label_prob else t.dtype, dloss.dtype)
        factor, dx = ks.scratch(1), empty(ks.dev, x.shape, x.dtype)
        factor_k(ks.wg, w, dloss, factor, I64(n), scale, local=(ks.wg,))
        grad_k(n, t, w, p, factor, dx, I64(n), I64(d))
        return (dx,)

    return run


# -- LabelCrossEntropy / CrossEntropy --------------------------------------------------------------


@table.kernel("LabelCrossEntropy", dtypes=FLOATS)
def label_cross_entropy(ctx: KernelContext) -> RunFn:
    op, ks = ctx.op_type, _Kernels(ctx, "label_xent")

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_labels(op, t, n)
        y = empty(ks.dev, (n,), x.dtype)
        ks(t.dtype)[0](n, x, t, y, I64(n), I64(d))
        return (y,)

    return run


@table.kernel("LabelCrossEntropyGradient", dtypes=FLOATS)
def label_cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, ks = ctx.op_type, _Kernels(ctx, "label_xent_grad")

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_labels(op, t, n)
        dx = empty(ks.dev, x.shape, x.dtype)
        ks(t.dtype)[0](x.size, x, t, dy, dx, I64(n), I64(d))
        return (dx,)

    return run


@table.kernel("CrossEntropy", dtypes=FLOATS)
def cross_entropy(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "xent")()

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_soft_labels(op, t, n, d)
        y = empty(k.dev, (n,), x.dtype)
        k(n, x, t, y, I64(n), I64(d))
        return (y,)

    return run


@table.kernel("CrossEntropyGradient", dtypes=FLOATS)
def cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "xent_grad")()

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_soft_labels(op, t, n, d)
        dx = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, t, dy, dx, I64(n), I64(d))
        return (dx,)

    return run


# -- SigmoidCrossEntropyWithLogits -----------------------------------------------------------------


@table.kernel("SigmoidCrossEntropyWithLogits", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "sigmoid_xent", MODE=shared.sigmoid_xent_mode(ctx))()

    def run(x, t):
        inner = shared.sigmoid_xent_inner(op, x, t)
        y = empty(k.dev, x.shape[:-1], x.dtype)
        k(y.size, x, t, y, I64(y.size), I64(inner))
        return (y,)

    return run


@table.kernel("SigmoidCrossEntropyWithLogitsGradient", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits_gradient(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "sigmoid_xent_grad", MODE=shared.sigmoid_xent_mode(ctx))()

    def run(dy, x, t):
        inner = shared.sigmoid_xent_inner(op, x, t)
        shared.check_sigmoid_xent_grad(op, dy, x, inner)
        dx = empty(k.dev, x.shape, x.dtype)
        k(x.size, dy, x, t, dx, I64(x.size), I64(inner))
        return (dx,)

    return run


# -- AveragedLoss ----------------------------------------------------------------------------------


@table.kernel("AveragedLoss", dtypes=FLOATS)
def averaged_loss(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx, "averaged_loss")
    (k,) = ks()

    def run(x):
        shared.check_averaged_loss(x)
        y = empty(k.dev, (), x.dtype)
        k(ks.wg, x, y, I64(x.size), local=(ks.wg,))
        return (y,)

    return run


@table.kernel("AveragedLossGradient", dtypes=FLOATS)
def averaged_loss_gradient(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx, "averaged_loss_grad")

    def run(x, dy):
        shared.check_averaged_loss_grad(dy)
        dx = empty(ks.dev, x.shape, x.dtype)
        ks(grad=dy.dtype)[0](x.size, dy, dx, I64(x.size))
        return (dx,)

    return run


# -- SquaredL2Distance -----------------------------------------------------------------------------


@table.kernel("SquaredL2Distance", dtypes=FLOATS)
def squared_l2_distance(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "l2_distance")()

    def run(x, y):
        n, d = shared.l2_rows(op, x, y)
        z = empty(k.dev, (n,), x.dtype)
        k(n, x, y, z, I64(n), I64(d))
        return (z,)

    return run


@table.kernel("SquaredL2DistanceGradient", dtypes=FLOATS)
def squared_l2_distance_gradient(ctx: KernelContext) -> RunFn:
    op, (k,) = ctx.op_type, _Kernels(ctx, "l2_distance_grad")()

    def run(x, y, dd):
        n, d = shared.l2_rows(op, x, y)
        shared.check_l2_grad(op, dd, n)
        dx, dy = empty(k.dev, x.shape, x.dtype), empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, dd, dx, dy, I64(n), I64(d))
        return dx, dy

    return run


# -- Accuracy --------------------------------------------------------------------------------------


@table.kernel("Accuracy", dtypes=FLOATS)
def accuracy(ctx: KernelContext) -> RunFn:
    op, top_k = ctx.op_type, I64(ctx.args["top_k"])
    ks = _Kernels(ctx, "accuracy")

    def run(x, t):
        n, d = shared.accuracy_rows(op, x, t)
        out = empty(ks.dev, (), F32)
        ks(t.dtype)[0](ks.wg, x, t, out, I64(n), I64(d), top_k, local=(ks.wg,))
        return (out,)

    return run
