"""Losses and metrics: SoftmaxWithLoss, LabelCrossEntropy, CrossEntropy,
SigmoidCrossEntropyWithLogits, AveragedLoss, SquaredL2Distance, Accuracy, and ONNX's
NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (schemas, shape inference, gradient makers).

Caffe2 semantics (ONNX's for the two ONNX losses, see their section). Integer labels may be int32
(Caffe2's type) or int64; they never get a gradient.
Losses come out in the dtype of their float input (Caffe2 only had float); Accuracy is always
float32. Probabilities fed to a log are clamped at 1e-20 (Caffe2's kLOG_THRESHOLD), except in
SoftmaxWithLoss, which works from log-softmax directly (as Caffe2's CPU kernel does for integer
labels; for probability labels Caffe2 clamps P, which only differs once P < 1e-20).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.gradients import GradientContext, GradientOps, gradient
from kaffa.schema import Arg, ArgType, TensorInfo, check, define, norm_axis, prod, same_dtype

F32 = np.dtype(np.float32)
LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD()


def _shape(info: TensorInfo) -> str:
    return "?" if info.shape is None else str(list(info.shape))


def _int_labels(op: str, label: TensorInfo) -> None:
    check(
        label.dtype is None or label.dtype.kind in "iu",
        f"{op}: labels must be an integer tensor (int32), got {dtypes.name(label.dtype)}",
    )


def _float_input(op: str, what: str, info: TensorInfo) -> None:
    check(
        info.dtype is None or info.dtype.kind == "f",
        f"{op}: {what} must be a float tensor, got {dtypes.name(info.dtype)}",
    )


def rows_and_cols(shape: tuple[int | None, ...]) -> tuple[int | None, int | None]:
    """Caffe2's cross-entropy view of X: [N, D] with N = dim 0 (1 for a 1-D X), D the rest."""
    if len(shape) > 1:
        return shape[0], prod(shape[1:])
    return 1, shape[0]


# -- SoftmaxWithLoss -------------------------------------------------------------------------------


def _canon_softmax_loss(args: dict[str, Any]) -> dict[str, Any]:
    if args["order"] != "NCHW":
        raise ArgumentError(f"SoftmaxWithLoss: only order NCHW is supported, got {args['order']!r}")
    if args["spatial"]:
        raise ArgumentError("SoftmaxWithLoss: spatial=1 (per-pixel labels) is not supported")
    if args["scale"] < 0:
        raise ArgumentError(f"SoftmaxWithLoss: scale must be >= 0, got {args['scale']}")
    return args


def _softmax_loss_shapes(
    op: str, args: Mapping[str, Any], x: TensorInfo, t: TensorInfo, w: TensorInfo | None
):
    """Checks the labels (and weights) against X coerced to [N, D] at `axis`."""
    if args["label_prob"]:
        _float_input(op, "probability labels (label_prob=1)", t)
    else:
        _int_labels(op, t)
    if w is not None:
        _float_input(op, "weights", w)
    if x.shape is None:
        return
    axis = norm_axis(args["axis"], len(x.shape), op)
    n, d = prod(x.shape[:axis]), prod(x.shape[axis:])
    if t.shape is not None:
        what = "probability labels" if args["label_prob"] else "labels"
        check(
            len(t.shape) >= axis,
            f"{op}: {what} {_shape(t)} have fewer dims than the axis {axis} of X {_shape(x)}",
        )
        tn, td = prod(t.shape[:axis]), prod(t.shape[axis:])
        check(
            None in (tn, n) or tn == n,
            f"{op}: {what} {_shape(t)} do not have the N = {n} rows of X {_shape(x)} "
            f"(X is [N, D] split at axis {axis})",
        )
        want_d = d if args["label_prob"] else 1
        check(
            None in (td, want_d) or td == want_d,
            f"{op}: {what} {_shape(t)} must have {want_d} element(s) per row of X {_shape(x)}, not {td}",
        )
    if w is not None and w.shape is not None:
        wn = prod(w.shape)
        check(
            None in (wn, n) or wn == n,
            f"{op}: weights {_shape(w)} must have one element per row of X {_shape(x)} (N = {n})",
        )


def _infer_softmax_loss(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    _float_input("SoftmaxWithLoss", "logits", x)
    _softmax_loss_shapes("SoftmaxWithLoss", args, x, ins[1], ins[2] if len(ins) > 2 else None)
    others = [x, ins[2]] if len(ins) > 2 else [x]
    if args["label_prob"]:
        others.append(ins[1])
    dtype = same_dtype("SoftmaxWithLoss", others)
    return [TensorInfo(x.shape, dtype), TensorInfo((), dtype)]


_SOFTMAX_LOSS_ARGS = [
    Arg("label_prob", ArgType.BOOL, False, "labels are probability rows [N, D] instead of class indices"),
    Arg("scale", ArgType.FLOAT, 1.0, "multiplies the averaged loss (>= 0)"),
    Arg("axis", ArgType.INT, 1, "X is coerced to [prod(dims[:axis]), prod(dims[axis:])]"),
    Arg("order", ArgType.STRING, "NCHW", "only NCHW"),
    Arg("spatial", ArgType.BOOL, False, "Caffe2's per-pixel mode; not supported (must be 0)"),
]

define(
    "SoftmaxWithLoss",
    family="loss",
    doc="Softmax over X coerced to [N, D] at `axis`, then the (weighted) average cross entropy: "
    "avg_loss = scale * sum_i w_i * -log P[i, label_i] / sum_i w_i (0 when the weights sum to 0). "
    "With label_prob=1 the labels are probability rows (non-negative, summing to 1) and row i "
    "contributes w_i * -sum_j label_ij * log P_ij. Only avg_loss carries a gradient.",
    inputs=(2, 3),
    outputs=2,
    input_docs=[
        ("logits", "X, any rank, coerced to [N, D] at axis"),
        ("labels", "int [N] (or [N, 1]) class indices, or [N, D] probabilities with label_prob=1"),
        ("weight_tensor", "[N] per-row weights (optional)"),
    ],
    output_docs=[("softmax", "P, X's shape"), ("loss", "scalar averaged loss")],
    args=_SOFTMAX_LOSS_ARGS,
    canonicalize=_canon_softmax_loss,
    infer=_infer_softmax_loss,
    grad_outputs=(1,),
)


def _infer_softmax_loss_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SoftmaxWithLossGradient"
    x, t, p, dloss = ins[0], ins[1], ins[-2], ins[-1]
    _softmax_loss_shapes(op, args, x, t, ins[2] if len(ins) == 5 else None)
    check(
        p.shape is None or x.shape is None or tuple(p.shape) == tuple(x.shape),
        f"{op}: P {_shape(p)} must have X's shape {_shape(x)}",
    )
    check(
        dloss.shape is None or prod(dloss.shape) in (None, 1),
        f"{op}: the loss gradient must be a scalar, got {_shape(dloss)}",
    )
    # Any float scalar: add_gradient_ops seeds losses with a float32 1.0 whatever the net's dtype.
    _float_input(op, "the loss gradient", dloss)
    return [TensorInfo(x.shape, same_dtype(op, [x, p]))]


define(
    "SoftmaxWithLossGradient",
    family="loss",
    doc="dX = (P - onehot(label)) * w_i * scale * dLoss / sum_i w_i; with label_prob=1 the row term "
    "is P * sum_j label_ij - label (Caffe2's P - label, exact also when a rounded row misses 1).",
    inputs=(4, 5),
    input_docs=[
        ("X", "forward logits"),
        ("labels", "forward labels"),
        ("weight_tensor", "forward weights (only when the forward op had them)"),
        ("P", "forward softmax output"),
        ("dLoss", "gradient of the averaged loss (scalar)"),
    ],
    output_docs=[("dX", "gradient of the logits")],
    args=_SOFTMAX_LOSS_ARGS,
    canonicalize=_canon_softmax_loss,
    infer=_infer_softmax_loss_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("SoftmaxWithLoss")
def _softmax_loss_grad(g: GradientContext) -> GradientOps:
    if g.GO(1) is None:  # nothing flows into the loss; P's gradient is ignored, as in Caffe2
        return GradientOps([], [None] * g.num_inputs)
    ins = [g.I(0), g.I(1), *([g.I(2)] if g.num_inputs == 3 else []), g.O(0), g.GO(1)]
    return g.single("SoftmaxWithLossGradient", ins, [g.GI(0)], **g.forward_args())


# -- LabelCrossEntropy / CrossEntropy --------------------------------------------------------------


def _infer_xent(op: str, soft: bool):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x, t = ins[0], ins[1]
        _float_input(op, "X", x)
        if soft:
            _float_input(op, "soft labels", t)
            dtype = same_dtype(op, [x, t])
        else:
            _int_labels(op, t)
            dtype = x.dtype
        if x.shape is None:
            return [TensorInfo((None,), dtype)]
        check(len(x.shape) >= 1, f"{op}: X must have at least 1 dim, got a scalar")
        rows, cols = rows_and_cols(x.shape)
        if t.shape is not None:
            if soft:
                t_rows, t_cols = rows_and_cols(t.shape) if t.shape else (None, None)
                check(
                    len(t.shape) >= 1
                    and (None in (t_rows, rows) or t_rows == rows)
                    and (None in (t_cols, cols) or t_cols == cols),
                    f"{op}: labels {_shape(t)} must match X {_shape(x)} as [N, D] = [{rows}, {cols}]",
                )
            else:
                check(
                    len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] in (None, 1)),
                    f"{op}: labels must be [N] or [N, 1], got {_shape(t)}",
                )
                check(
                    None in (t.shape[0], rows) or t.shape[0] == rows,
                    f"{op}: {t.shape[0]} labels for the {rows} rows of X {_shape(x)}",
                )
        return [TensorInfo((rows,), dtype)]

    return infer


def _infer_xent_grad(op: str, soft: bool):
    forward = _infer_xent(op, soft)

    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        (y,) = forward(args, ins[:2], 1)
        dy = ins[2]
        check(
            dy.shape is None or y.shape is None or tuple(dy.shape) == tuple(y.shape),
            f"{op}: dY {_shape(dy)} must have the forward output's shape {_shape(y)}",
        )
        return [TensorInfo(ins[0].shape, same_dtype(op, [ins[0], dy]))]

    return infer


define(
    "LabelCrossEntropy",
    family="loss",
    doc="Y[i] = -log(max(X[i, label[i]], 1e-20)). X is [N, D...] (a 1-D X is one row); labels are "
    "int class indices in [0, D).",
    inputs=2,
    input_docs=[("X", "probabilities [N, D]"), ("label", "int [N] or [N, 1]")],
    output_docs=[("Y", "[N] losses")],
    infer=_infer_xent("LabelCrossEntropy", soft=False),
)
define(
    "LabelCrossEntropyGradient",
    family="loss",
    doc="dX[i, label[i]] = -dY[i] / max(X[i, label[i]], 1e-20); 0 elsewhere.",
    inputs=3,
    input_docs=[("X", "forward input"), ("label", "forward labels"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X")],
    infer=_infer_xent_grad("LabelCrossEntropyGradient", soft=False),
    gradient_op=True,
    differentiable=False,
)
define(
    "CrossEntropy",
    family="loss",
    doc="Y[i] = -sum_j label[i, j] * log(max(X[i, j], 1e-20)) with soft labels in [0, 1] of X's "
    "[N, D] shape.",
    inputs=2,
    input_docs=[("X", "probabilities [N, D]"), ("label", "soft labels [N, D]")],
    output_docs=[("Y", "[N] losses")],
    infer=_infer_xent("CrossEntropy", soft=True),
)
define(
    "CrossEntropyGradient",
    family="loss",
    doc="dX = -label * dY[i] / max(X, 1e-20).",
    inputs=3,
    input_docs=[("X", "forward input"), ("label", "forward soft labels"), ("dY", "gradient of Y")],
    output_docs=[("dX", "gradient of X")],
    infer=_infer_xent_grad("CrossEntropyGradient", soft=True),
    gradient_op=True,
    differentiable=False,
)


@gradient("LabelCrossEntropy")
def _label_xent_grad(g: GradientContext) -> GradientOps:
    return g.single("LabelCrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])


@gradient("CrossEntropy")
def _xent_grad(g: GradientContext) -> GradientOps:
    return g.single("CrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])


# -- SigmoidCrossEntropyWithLogits -----------------------------------------------------------------


def _canon_sigmoid_xent(args: dict[str, Any]) -> dict[str, Any]:
    if args["log_D_trick"] and args["unjoined_lr_loss"]:
        raise ArgumentError(
            "SigmoidCrossEntropyWithLogits: log_D_trick and unjoined_lr_loss cannot both be set"
        )
    return args


def _infer_sigmoid_xent(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SigmoidCrossEntropyWithLogits"
    x, t = ins[0], ins[1]
    _float_input(op, "logits", x)
    _float_input(op, "targets", t)
    dtype = same_dtype(op, [x, t])
    if x.shape is not None and t.shape is not None:
        check(
            len(x.shape) == len(t.shape)
            and all(a is None or b is None or a == b for a, b in zip(x.shape, t.shape)),
            f"{op}: logits {_shape(x)} and targets {_shape(t)} must have the same shape",
        )
    shape = x.shape if x.shape is not None else t.shape
    return [TensorInfo(None if shape is None else tuple(shape[:-1]), dtype)]


def _infer_sigmoid_xent_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SigmoidCrossEntropyWithLogitsGradient"
    dy, x = ins[0], ins[1]
    (y,) = _infer_sigmoid_xent(args, ins[1:], 1)
    check(
        dy.shape is None or y.shape is None or prod(dy.shape) in (None, prod(y.shape)),
        f"{op}: dY {_shape(dy)} must have the forward output's shape {_shape(y)}",
    )
    return [TensorInfo(x.shape, same_dtype(op, [dy, x]))]


_SIGMOID_XENT_ARGS = [
    Arg("log_D_trick", ArgType.BOOL, False, "use (2t-1) * log(sigmoid(x)) (for GAN generators)"),
    Arg("unjoined_lr_loss", ArgType.BOOL, False, "t*x - (1-t)*log(1+e^x): unjoined logistic regression"),
]

define(
    "SigmoidCrossEntropyWithLogits",
    family="loss",
    doc="Y = -mean over the last dim of t*x - log(1 + e^x) (computed without overflow), i.e. the "
    "mean binary cross entropy of sigmoid(x) against targets t. Y has X's shape without its last "
    "dim (a 0-d X gives a 0-d Y).",
    inputs=2,
    input_docs=[("logits", "X"), ("targets", "t, X's shape")],
    output_docs=[("xentropy", "X's shape without the last dim")],
    args=_SIGMOID_XENT_ARGS,
    canonicalize=_canon_sigmoid_xent,
    infer=_infer_sigmoid_xent,
)
define(
    "SigmoidCrossEntropyWithLogitsGradient",
    family="loss",
    doc="dX = -dY / D * (t - sigmoid(x)) (or the log_D_trick / unjoined_lr_loss derivative), "
    "D = the size of the last dim.",
    inputs=3,
    input_docs=[("dY", "gradient of the forward output"), ("logits", "X"), ("targets", "t")],
    output_docs=[("dX", "gradient of the logits")],
    args=_SIGMOID_XENT_ARGS,
    canonicalize=_canon_sigmoid_xent,
    infer=_infer_sigmoid_xent_grad,
    type_input=1,
    gradient_op=True,
    differentiable=False,
)


@gradient("SigmoidCrossEntropyWithLogits")
def _sigmoid_xent_grad(g: GradientContext) -> GradientOps:
    return g.single(
        "SigmoidCrossEntropyWithLogitsGradient",
        [g.GO(0), g.I(0), g.I(1)],
        [g.GI(0)],
        **g.forward_args(),
    )


# -- AveragedLoss ----------------------------------------------------------------------------------


def _infer_averaged_loss(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _float_input("AveragedLoss", "X", ins[0])
    return [TensorInfo((), ins[0].dtype)]


def _infer_averaged_loss_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x, dy = ins
    check(
        dy.shape is None or prod(dy.shape) in (None, 1),
        f"AveragedLossGradient: dY must be a scalar, got {_shape(dy)}",
    )
    _float_input("AveragedLossGradient", "dY", dy)  # any float scalar, like SoftmaxWithLoss's dLoss
    return [TensorInfo(x.shape, x.dtype)]


define(
    "AveragedLoss",
    family="loss",
    doc="The mean of all elements of X, as a 0-d tensor. An empty X is an error.",
    inputs=1,
    input_docs=[("X", "input")],
    output_docs=[("loss", "scalar mean")],
    infer=_infer_averaged_loss,
)
define(
    "AveragedLossGradient",
    family="loss",
    doc="dX = dY / X.size everywhere.",
    inputs=2,
    input_docs=[("X", "forward input"), ("dY", "gradient of the mean (scalar)")],
    output_docs=[("dX", "gradient of X")],
    infer=_infer_averaged_loss_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("AveragedLoss")
def _averaged_loss_grad(g: GradientContext) -> GradientOps:
    return g.single("AveragedLossGradient", [g.I(0), g.GO(0)], [g.GI(0)])


# -- SquaredL2Distance -----------------------------------------------------------------------------


def _infer_l2(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SquaredL2Distance"
    x, y = ins[0], ins[1]
    _float_input(op, "X", x)
    dtype = same_dtype(op, [x, y])
    if x.shape is not None and y.shape is not None:
        check(
            len(x.shape) == len(y.shape)
            and all(a is None or b is None or a == b for a, b in zip(x.shape, y.shape)),
            f"{op}: X {_shape(x)} and Y {_shape(y)} must have the same shape",
        )
    shape = x.shape if x.shape is not None else y.shape
    if shape is None:
        return [TensorInfo((None,), dtype)]
    return [TensorInfo((shape[0] if shape else 1,), dtype)]


def _infer_l2_grad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SquaredL2DistanceGradient"
    (dist,) = _infer_l2(args, ins[:2], 1)
    dd = ins[2]
    check(
        dd.shape is None or dist.shape is None or prod(dd.shape) in (None, prod(dist.shape)),
        f"{op}: dDistance {_shape(dd)} must have one element per row ({_shape(dist)})",
    )
    dtype = same_dtype(op, ins)
    return [TensorInfo(ins[0].shape, dtype), TensorInfo(ins[1].shape, dtype)]


define(
    "SquaredL2Distance",
    family="loss",
    doc="distance[i] = ½ ‖X_i - Y_i‖² per row i of dim 0 (a 0-d X is one row).",
    inputs=2,
    input_docs=[("X", "input"), ("Y", "input, X's shape")],
    output_docs=[("Z", "[N] half squared distances")],
    infer=_infer_l2,
)
define(
    "SquaredL2DistanceGradient",
    family="loss",
    doc="dX = (X - Y) * dDistance[i] per row; dY = -dX.",
    inputs=3,
    outputs=2,
    input_docs=[("X", "forward X"), ("Y", "forward Y"), ("dDistance", "gradient of the distances")],
    output_docs=[("dX", "gradient of X"), ("dY", "gradient of Y")],
    infer=_infer_l2_grad,
    gradient_op=True,
    differentiable=False,
)


@gradient("SquaredL2Distance")
def _l2_grad(g: GradientContext) -> GradientOps:
    return g.single("SquaredL2DistanceGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0), g.GI(1)])


# -- Accuracy --------------------------------------------------------------------------------------


def _infer_accuracy(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "Accuracy"
    x, t = ins
    _float_input(op, "predictions", x)
    _int_labels(op, t)
    check(x.shape is None or len(x.shape) == 2, f"{op}: predictions must be 2-D [N, D], got {_shape(x)}")
    check(t.shape is None or len(t.shape) == 1, f"{op}: labels must be 1-D [N], got {_shape(t)}")
    if x.shape is not None and t.shape is not None:
        check(
            None in (x.shape[0], t.shape[0]) or x.shape[0] == t.shape[0],
            f"{op}: {t.shape[0]} labels for the {x.shape[0]} rows of predictions {_shape(x)}",
        )
    return [TensorInfo((), F32)]


def _canon_accuracy(args: dict[str, Any]) -> dict[str, Any]:
    if args["top_k"] < 1:
        raise ArgumentError(f"Accuracy: top_k must be >= 1, got {args['top_k']}")
    return args


define(
    "Accuracy",
    family="loss",
    doc="The fraction of rows whose label is among the top_k predictions (float32 scalar). Ties "
    "rank the lower class index first, as in Caffe2.",
    inputs=2,
    input_docs=[("predictions", "[N, D] scores"), ("labels", "int [N]")],
    output_docs=[("accuracy", "float32 scalar")],
    args=[Arg("top_k", ArgType.INT, 1, "count a hit when the label is among the k best")],
    canonicalize=_canon_accuracy,
    infer=_infer_accuracy,
    differentiable=False,
)


# -- NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss (ONNX) --------------------------------------
#
# ONNX semantics. X is [N, C, d1..dk] (k >= 0), the class axis is 1; labels are int [N, d1..dk];
# optional weights [C]. Each position p = (n, d1..dk) contributes l_p = -w[t_p] * X[n, t_p, d1..dk]
# (w = 1 without weights); positions whose label equals ignore_index contribute 0 with weight 0 (that
# label may lie outside [0, C)). reduction "none" gives l itself ([N, d1..dk]), "sum" its sum, "mean"
# sum(l) / sum_p w[t_p] over the non-ignored positions (NaN when that is 0, as in ONNX and PyTorch).

_ONNX_LOSS_REDUCTIONS = ("none", "sum", "mean")


def _canon_onnx_loss(args: dict[str, Any]) -> dict[str, Any]:
    if args["reduction"] not in _ONNX_LOSS_REDUCTIONS:
        raise ArgumentError(
            f"reduction must be one of {', '.join(_ONNX_LOSS_REDUCTIONS)}, got {args['reduction']!r}"
        )
    return args


_ONNX_LOSS_ARGS = [
    Arg("reduction", ArgType.STRING, "mean", "none (per-position losses), sum, or mean (weighted)"),
    Arg("ignore_index", ArgType.INT, None, "a label value that contributes nothing (optional)"),
]


def _onnx_loss_shapes(
    op: str, args: Mapping[str, Any], x: TensorInfo, t: TensorInfo, w: TensorInfo | None
) -> tuple[int | None, ...] | None:
    """Checks X [N, C, d...], labels [N, d...], weights [C]; returns the per-position loss shape."""
    _float_input(op, "X", x)
    _int_labels(op, t)
    if w is not None:
        _float_input(op, "weights", w)
    if x.shape is not None:
        check(len(x.shape) >= 2, f"{op}: X must be [N, C, d1..dk] (rank >= 2), got {_shape(x)}")
    want = None if x.shape is None else (x.shape[0], *x.shape[2:])
    if t.shape is not None and want is not None:
        check(
            len(t.shape) == len(want)
            and all(a is None or b is None or a == b for a, b in zip(t.shape, want)),
            f"{op}: labels {_shape(t)} must have X's shape {_shape(x)} without the class axis 1",
        )
    if w is not None and w.shape is not None:
        c = None if x.shape is None else x.shape[1]
        check(
            len(w.shape) == 1 and (None in (c, w.shape[0]) or w.shape[0] == c),
            f"{op}: weights {_shape(w)} must be [C] = [{c}] for X {_shape(x)}",
        )
    if want is None:
        return t.shape if t.shape is not None else None
    if t.shape is not None:
        return tuple(a if a is not None else b for a, b in zip(want, t.shape))
    return want


def _loss_info(args: Mapping[str, Any], per_position, dtype) -> TensorInfo:
    return TensorInfo(per_position if args["reduction"] == "none" else (), dtype)


def _infer_nll(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "NegativeLogLikelihoodLoss"
    w = ins[2] if len(ins) > 2 else None
    per = _onnx_loss_shapes(op, args, ins[0], ins[1], w)
    dtype = same_dtype(op, [ins[0], *([w] if w is not None else [])])
    return [_loss_info(args, per, dtype)]


def _infer_sce(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "SoftmaxCrossEntropyLoss"
    w = ins[2] if len(ins) > 2 else None
    per = _onnx_loss_shapes(op, args, ins[0], ins[1], w)
    dtype = same_dtype(op, [ins[0], *([w] if w is not None else [])])
    return [_loss_info(args, per, dtype), TensorInfo(ins[0].shape, dtype)][:n]


def _infer_onnx_loss_grad(op: str):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        x, t, dloss = ins[0], ins[1], ins[-1]
        w = ins[2] if len(ins) == 4 else None
        per = _onnx_loss_shapes(op, args, x, t, w)
        want = per if args["reduction"] == "none" else ()
        check(
            dloss.shape is None
            or want is None
            or (
                len(dloss.shape) == len(want)
                and all(a is None or b is None or a == b for a, b in zip(dloss.shape, want))
            )
            or (args["reduction"] != "none" and prod(dloss.shape) in (None, 1)),
            f"{op}: the loss gradient {_shape(dloss)} must have the loss's shape "
            f"{'?' if want is None else list(want)}",
        )
        _float_input(op, "the loss gradient", dloss)
        return [TensorInfo(x.shape, x.dtype)]

    return infer


define(
    "NegativeLogLikelihoodLoss",
    family="loss",
    doc="ONNX's NegativeLogLikelihoodLoss: X [N, C, d1..dk] holds log-probabilities (class axis 1), "
    "labels int [N, d1..dk]. loss_p = -w[t_p] * X[n, t_p, d...] (w = 1 without weights; 0 where "
    "t_p == ignore_index). reduction none: loss [N, d1..dk]; sum: its sum; mean: sum / the sum of "
    "w[t_p] over the positions not ignored (NaN when that is 0).",
    inputs=(2, 3),
    input_docs=[
        ("X", "[N, C, d1..dk] log-probabilities"),
        ("labels", "int [N, d1..dk] class indices in [0, C) (or ignore_index)"),
        ("weights", "[C] per-class weights (optional)"),
    ],
    output_docs=[("loss", "[N, d1..dk] with reduction none, else a scalar")],
    args=_ONNX_LOSS_ARGS,
    canonicalize=_canon_onnx_loss,
    infer=_infer_nll,
)
define(
    "NegativeLogLikelihoodLossGradient",
    family="loss",
    doc="dX[n, t_p, d...] = -w[t_p] * g_p, 0 elsewhere and at ignored positions; g_p = dLoss_p "
    "(none), dLoss (sum) or dLoss / sum of the weights (mean).",
    inputs=(3, 4),
    input_docs=[
        ("X", "forward X (read for its shape)"),
        ("labels", "forward labels"),
        ("weights", "forward weights (only when the forward op had them)"),
        ("dLoss", "gradient of the loss"),
    ],
    output_docs=[("dX", "gradient of X")],
    args=_ONNX_LOSS_ARGS,
    canonicalize=_canon_onnx_loss,
    infer=_infer_onnx_loss_grad("NegativeLogLikelihoodLossGradient"),
    gradient_op=True,
    differentiable=False,
)
define(
    "SoftmaxCrossEntropyLoss",
    family="loss",
    doc="ONNX's SoftmaxCrossEntropyLoss: log_prob = log_softmax(scores) over the class axis 1, then "
    "NegativeLogLikelihoodLoss(log_prob, labels, weights) with the same reduction and ignore_index. "
    "The optional second output is log_prob; only the loss carries a gradient.",
    inputs=(2, 3),
    outputs=(1, 2),
    input_docs=[
        ("scores", "[N, C, d1..dk] logits"),
        ("labels", "int [N, d1..dk] class indices in [0, C) (or ignore_index)"),
        ("weights", "[C] per-class weights (optional)"),
    ],
    output_docs=[
        ("loss", "[N, d1..dk] with reduction none, else a scalar"),
        ("log_prob", "log_softmax(scores) over axis 1 (optional)"),
    ],
    args=_ONNX_LOSS_ARGS,
    canonicalize=_canon_onnx_loss,
    infer=_infer_sce,
    grad_outputs=(0,),
)
define(
    "SoftmaxCrossEntropyLossGradient",
    family="loss",
    doc="dScores = (softmax(scores) - onehot(t_p)) * w[t_p] * g_p along the class axis at each "
    "position (0 at ignored positions); g_p as in NegativeLogLikelihoodLossGradient.",
    inputs=(3, 4),
    input_docs=[
        ("scores", "forward scores"),
        ("labels", "forward labels"),
        ("weights", "forward weights (only when the forward op had them)"),
        ("dLoss", "gradient of the loss"),
    ],
    output_docs=[("dScores", "gradient of the scores")],
    args=_ONNX_LOSS_ARGS,
    canonicalize=_canon_onnx_loss,
    infer=_infer_onnx_loss_grad("SoftmaxCrossEntropyLossGradient"),
    gradient_op=True,
    differentiable=False,
)


@gradient("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")
def _onnx_loss_grad(g: GradientContext) -> GradientOps:
    if g.GO(0) is None:  # nothing flows into the loss (log_prob carries no gradient)
        return GradientOps([], [None] * g.num_inputs)
    ins = [g.I(0), g.I(1), *([g.I(2)] if g.num_inputs == 3 else []), g.GO(0)]
    return g.single(f"{g.op.type}Gradient", ins, [g.GI(0)], **g.forward_args())
