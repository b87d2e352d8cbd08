"""SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss,
SquaredL2Distance, Accuracy, and their gradients (wgsl/loss.wgsl).

Everything computes in float32 and rounds once on store. Row reductions spread each row over a
power-of-two number of lanes of a workgroup; whole-tensor sums (the weighted mean, AveragedLoss,
Accuracy) run in one workgroup. Values the cpu kernels validate by reading them (label ranges,
probability rows, soft labels in [0, 1]) are not read back from the device: an out-of-range label
gives NaN. Class labels must be int32 (int64 cannot live on metal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch import loss as shared
from kaffa_metal.kernels.common import FLOATS, WG, Launcher, empty, kernel

table = KernelTable("metal")

F32, I32 = np.dtype(np.float32), np.dtype(np.int32)


def _int32_labels(ctx: KernelContext) -> str | None:
    """A ``supports`` predicate: class labels must be int32 to live on metal."""
    t = ctx.inputs[1].dtype
    if t is None or t == I32 or (ctx.op_type.startswith("SoftmaxWithLoss") and ctx.args["label_prob"]):
        return None
    return f"labels are {t.name}; metal holds int32 class labels only (cast them to int32)"


class _Kernels:
    """One entry of wgsl/loss.wgsl, built on first use per (label type, loss-gradient type). Every
    build defines all of the file's names (I, TL, G, LABEL_PROB, WEIGHTED, MODE)."""

    def __init__(self, ctx: KernelContext, entry: str, **consts: Any):
        self.ctx, self.entry, self.built = ctx, entry, {}
        self.opts = dict(I=I32, TL=I32, G=ctx.dtype or F32, LABEL_PROB=False, WEIGHTED=False, MODE=0)
        self.opts.update(consts)
        self.dev = self().dev  # build the common case now: shader errors surface at net creation

    def __call__(self, **types: Any) -> Launcher:
        key = tuple((k, np.dtype(v).str) for k, v in sorted(types.items()))
        k = self.built.get(key)
        if k is None:
            k = self.built[key] = kernel(self.ctx, "loss", self.entry, **{**self.opts, **types})
        return k


def _lanes(d: int) -> int:
    """Invocations per row: a power of two covering d, at most WG."""
    return min(WG, 1 << max(d - 1, 0).bit_length())


def _by_rows(k: Launcher, n: int, d: int, *arrays: Any) -> None:
    """Launch a row reduction over n rows of d: params [n, d, lanes]."""
    lanes = _lanes(d)
    k(-(-n // (WG // lanes)) * WG, *arrays, params=[n, d, lanes])


# -- SoftmaxWithLoss -------------------------------------------------------------------------------


def _softmax_loss_setup(ctx: KernelContext, *entries: str):
    a = ctx.args
    weighted = shared.softmax_loss_weighted(ctx)
    label_prob = bool(a["label_prob"])
    # Probability labels have T's type; class indices I's.
    consts = dict(LABEL_PROB=label_prob, WEIGHTED=weighted, TL=ctx.dtype if label_prob else I32)
    ks = [_Kernels(ctx, e, **consts) for e in entries]
    return a["axis"], label_prob, float(a["scale"]), ks


@table.kernel("SoftmaxWithLoss", dtypes=FLOATS, supports=_int32_labels)
def softmax_with_loss(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, (rows_k, total_k) = _softmax_loss_setup(
        ctx, "softmax_loss_rows", "softmax_loss_total"
    )
    rows, total = rows_k(), total_k()

    def run(x, t, w=None):
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        p, loss = empty(rows.dev, x.shape, x.dtype), empty(rows.dev, (), x.dtype)
        row_loss = empty(rows.dev, (max(n, 1),), F32)
        if n * d:
            _by_rows(rows, n, d, x, t, p, row_loss)
        # Unweighted: x stands in for w (WEIGHTED=false never reads it).
        total(WG, row_loss, x if w is None else w, loss, params=[n if d else 0, scale])
        return p, loss

    return run


@table.kernel("SoftmaxWithLossGradient", dtypes=FLOATS, supports=_int32_labels)
def softmax_with_loss_gradient(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    axis, label_prob, scale, (factor_k, grad_k) = _softmax_loss_setup(
        ctx, "softmax_loss_factor", "softmax_loss_grad"
    )
    grad = grad_k()
    weighted = ctx.num_inputs == 5

    def run(x, t, *rest):
        w, p, dloss = rest if weighted else (None, *rest)
        n, d = shared.softmax_loss_rows(op, x, axis)
        shared.check_softmax_loss_grad(op, x, p, dloss)
        shared.check_softmax_loss_inputs(op, label_prob, t, w, n, d)
        factor, dx = empty(grad.dev, (1,), F32), empty(grad.dev, x.shape, x.dtype)
        ww = p if w is None else w  # a stand-in when unweighted
        factor_k(G=dloss.dtype)(WG, ww, dloss, factor, params=[n, scale])
        if n * d:
            _by_rows(grad, n, d, t, ww, p, factor, dx)
        return (dx,)

    return run


# -- LabelCrossEntropy / CrossEntropy --------------------------------------------------------------


@table.kernel("LabelCrossEntropy", dtypes=FLOATS, supports=_int32_labels)
def label_cross_entropy(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "label_xent")()

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_labels(op, t, n)
        y = empty(k.dev, (n,), x.dtype)
        k(n, x, t, y, params=[n, d])
        return (y,)

    return run


@table.kernel("LabelCrossEntropyGradient", dtypes=FLOATS, supports=_int32_labels)
def label_cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "label_xent_grad")()

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_labels(op, t, n)
        dx = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, t, dy, dx, params=[x.size, d])
        return (dx,)

    return run


@table.kernel("CrossEntropy", dtypes=FLOATS)
def cross_entropy(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "xent")()

    def run(x, t):
        n, d = shared.xent_rows(x)
        shared.check_soft_labels(op, t, n, d)
        y = empty(k.dev, (n,), x.dtype)
        _by_rows(k, n, d, x, t, y)
        return (y,)

    return run


@table.kernel("CrossEntropyGradient", dtypes=FLOATS)
def cross_entropy_gradient(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "xent_grad")()

    def run(x, t, dy):
        n, d = shared.xent_rows(x)
        shared.check_row_grad(op, dy, n)
        shared.check_soft_labels(op, t, n, d)
        dx = empty(k.dev, x.shape, x.dtype)
        k(x.size, x, t, dy, dx, params=[x.size, d])
        return (dx,)

    return run


# -- SigmoidCrossEntropyWithLogits -----------------------------------------------------------------


@table.kernel("SigmoidCrossEntropyWithLogits", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "sigmoid_xent", MODE=shared.sigmoid_xent_mode(ctx))()

    def run(x, t):
        inner = shared.sigmoid_xent_inner(op, x, t)
        y = empty(k.dev, x.shape[:-1], x.dtype)
        if x.size:
            _by_rows(k, y.size, inner, x, t, y)
        return (y,)

    return run


@table.kernel("SigmoidCrossEntropyWithLogitsGradient", dtypes=FLOATS)
def sigmoid_cross_entropy_with_logits_gradient(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "sigmoid_xent_grad", MODE=shared.sigmoid_xent_mode(ctx))()

    def run(dy, x, t):
        inner = shared.sigmoid_xent_inner(op, x, t)
        shared.check_sigmoid_xent_grad(op, dy, x, inner)
        dx = empty(k.dev, x.shape, x.dtype)
        k(x.size, dy, x, t, dx, params=[x.size, inner])
        return (dx,)

    return run


# -- AveragedLoss ----------------------------------------------------------------------------------


@table.kernel("AveragedLoss", dtypes=FLOATS)
def averaged_loss(ctx: KernelContext) -> RunFn:
    k = _Kernels(ctx, "averaged_loss")()

    def run(x):
        shared.check_averaged_loss(x)
        y = empty(k.dev, (), x.dtype)
        k(WG, x, y, params=[x.size])
        return (y,)

    return run


@table.kernel("AveragedLossGradient", dtypes=FLOATS)
def averaged_loss_gradient(ctx: KernelContext) -> RunFn:
    ks = _Kernels(ctx, "averaged_loss_grad")

    def run(x, dy):
        shared.check_averaged_loss_grad(dy)
        dx = empty(ks.dev, x.shape, x.dtype)
        ks(G=dy.dtype)(x.size, dy, dx, params=[x.size])
        return (dx,)

    return run


# -- SquaredL2Distance -----------------------------------------------------------------------------


@table.kernel("SquaredL2Distance", dtypes=FLOATS)
def squared_l2_distance(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "l2_distance")()

    def run(x, y):
        n, d = shared.l2_rows(op, x, y)
        z = empty(k.dev, (n,), x.dtype)
        if n:
            _by_rows(k, n, d, x, y, z)
        return (z,)

    return run


@table.kernel("SquaredL2DistanceGradient", dtypes=FLOATS)
def squared_l2_distance_gradient(ctx: KernelContext) -> RunFn:
    op, k = ctx.op_type, _Kernels(ctx, "l2_distance_grad")()

    def run(x, y, dd):
        n, d = shared.l2_rows(op, x, y)
        shared.check_l2_grad(op, dd, n)
        dx, dy = empty(k.dev, x.shape, x.dtype), empty(k.dev, x.shape, x.dtype)
        k(x.size, x, y, dd, dx, dy, params=[x.size, d])
        return dx, dy

    return run


# -- Accuracy --------------------------------------------------------------------------------------


@table.kernel("Accuracy", dtypes=FLOATS, supports=_int32_labels)
def accuracy(ctx: KernelContext) -> RunFn:
    op, top_k = ctx.op_type, int(ctx.args["top_k"])
    k = _Kernels(ctx, "accuracy")()

    def run(x, t):
        n, d = shared.accuracy_rows(op, x, t)
        out = empty(k.dev, (), F32)
        k(WG, x, t, out, params=[n, d, min(top_k, 2**32 - 1)])
        return (out,)

    return run
