"""Host-side shape and label checks of the loss family (SoftmaxWithLoss, LabelCrossEntropy,
CrossEntropy, SigmoidCrossEntropyWithLogits, AveragedLoss, SquaredL2Distance, Accuracy and their
gradients) shared by the device backends, with the [N, D] views their kernels walk."""

from __future__ import annotations

import math
from typing import Any

from kaffa.schema import check, norm_axis


def xent_rows(x: Any) -> tuple[int, int]:
    """Cross-entropy view: [N, D] with N = dim 0 (1 for a 1-D X)."""
    if x.ndim > 1:
        return x.shape[0], math.prod(x.shape[1:])
    return 1, x.shape[0]


def check_labels(op: str, t: Any, n: int) -> None:
    """One class label per row."""
    check(t.size == n, f"{op}: {t.size} labels for {n} rows")


def check_row_grad(op: str, dy: Any, n: int) -> None:
    """dY holds one element per row."""
    check(dy.size == n, f"{op}: dY has {dy.size} elements for {n} rows")


def check_soft_labels(op: str, t: Any, n: int, d: int) -> None:
    """Soft labels have X's [N, D] elements."""
    check(t.size == n * d, f"{op}: labels {list(t.shape)} do not match X as [{n}, {d}]")


def softmax_loss_weighted(ctx: Any) -> bool:
    """Whether SoftmaxWithLoss(Gradient) has its optional weight input."""
    return ctx.num_inputs == (3 if ctx.op_type == "SoftmaxWithLoss" else 5)


def softmax_loss_rows(op: str, x: Any, axis: int) -> tuple[int, int]:
    """SoftmaxWithLoss's [N, D] view of X at ``axis``."""
    ax = norm_axis(axis, x.ndim, op)
    return math.prod(x.shape[:ax]), math.prod(x.shape[ax:])


def check_softmax_loss_inputs(op: str, label_prob: bool, t: Any, w: Any, n: int, d: int) -> None:
    """Weights per row, and labels per row (class indices) or per element (probabilities)."""
    if w is not None:
        check(w.size == n, f"{op}: {w.size} weights for {n} rows")
    if label_prob:
        check(t.size == n * d, f"{op}: probability labels {list(t.shape)} do not match X as [{n}, {d}]")
    else:
        check_labels(op, t, n)


def check_softmax_loss_grad(op: str, x: Any, p: Any, dloss: Any) -> None:
    """SoftmaxWithLossGradient: P has X's shape, the loss gradient is a scalar."""
    check(p.shape == x.shape, f"{op}: P {list(p.shape)} must have X's shape {list(x.shape)}")
    check(dloss.size == 1, f"{op}: the loss gradient must be a scalar, got shape {list(dloss.shape)}")


def sigmoid_xent_mode(ctx: Any) -> int:
    """SigmoidCrossEntropyWithLogits's kernel mode: 0 plain, 1 log_D_trick, 2 unjoined_lr_loss."""
    return 1 if ctx.args["log_D_trick"] else 2 if ctx.args["unjoined_lr_loss"] else 0


def sigmoid_xent_inner(op: str, x: Any, t: Any) -> int:
    """The last-dim size averaged per output, after checking logits and targets match."""
    check(x.shape == t.shape, f"{op}: logits {list(x.shape)} and targets {list(t.shape)} differ")
    return x.shape[-1] if x.ndim else 1


def check_sigmoid_xent_grad(op: str, dy: Any, x: Any, inner: int) -> None:
    """dY has one element per ``inner`` logits."""
    check(dy.size * inner == x.size, f"{op}: dY {list(dy.shape)} does not match logits {list(x.shape)}")


def check_averaged_loss(x: Any) -> None:
    """AveragedLoss needs at least one element."""
    check(x.size > 0, f"AveragedLoss: the mean of an empty X {list(x.shape)} is undefined")


def check_averaged_loss_grad(dy: Any) -> None:
    """AveragedLossGradient's dY is a scalar."""
    check(dy.size == 1, f"AveragedLossGradient: dY must be a scalar, got shape {list(dy.shape)}")


def l2_rows(op: str, x: Any, y: Any) -> tuple[int, int]:
    """SquaredL2Distance's [N, D] view, after checking X and Y share a shape."""
    check(x.shape == y.shape, f"{op}: X {list(x.shape)} and Y {list(y.shape)} must have the same shape")
    n = x.shape[0] if x.ndim else 1
    return n, x.size // n if n else 0


def check_l2_grad(op: str, dd: Any, n: int) -> None:
    """dDistance holds one element per row."""
    check(dd.size == n, f"{op}: dDistance has {dd.size} elements for {n} rows")


def accuracy_rows(op: str, x: Any, t: Any) -> tuple[int, int]:
    """Accuracy's (N, D), after checking predictions, labels and a non-empty batch."""
    check(x.ndim == 2, f"{op}: predictions must be 2-D [N, D], got {list(x.shape)}")
    n, d = x.shape
    check(t.ndim == 1 and t.size == n, f"{op}: labels must be [{n}], got {list(t.shape)}")
    check(n > 0, f"{op}: the accuracy of an empty batch is undefined")
    return n, d
