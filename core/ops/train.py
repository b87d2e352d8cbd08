"""Training state and optimizers: Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad (schemas,
shape inference). None is differentiable.

Caffe2's sign convention, which these ops keep: ``LearningRate`` returns base_lr * multiplier(iter),
and Caffe2's Python optimizers pass it a *negative* base_lr for Adam, Adagrad and plain SGD
(WeightedSum), whose updates are ``param + lr * step``. MomentumSGDUpdate is the exception: it
subtracts (``param - adjusted_gradient``), so the momentum optimizer gives it a positive lr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.errors import ArgumentError
from kaffa.schema import REQUIRED, Arg, ArgType, TensorInfo, check, define, prod, same_dtype

F32, I64 = np.dtype(np.float32), np.dtype(np.int64)


def _shape(info: TensorInfo) -> str:
    return "?" if info.shape is None else str(list(info.shape))


def _counter(op: str, what: str, info: TensorInfo) -> None:
    """An int64 counter of one element (Iter's blob)."""
    check(
        info.dtype is None or info.dtype == I64,
        f"{op}: {what} must be an int64 counter, got {dtypes.name(info.dtype)}",
    )
    check(
        info.shape is None or prod(info.shape) in (None, 1),
        f"{op}: {what} must hold exactly one element, got shape {_shape(info)}",
    )


def _scalar_lr(op: str, info: TensorInfo) -> None:
    check(
        info.dtype is None or info.dtype.kind == "f",
        f"{op}: lr must be a float tensor, got {dtypes.name(info.dtype)}",
    )
    check(
        info.shape is None or prod(info.shape) in (None, 1),
        f"{op}: lr must hold exactly one element, got shape {_shape(info)}",
    )


def _same_size(op: str, named: list[tuple[str, TensorInfo]]) -> None:
    sizes = [(n, prod(i.shape)) for n, i in named if i.shape is not None]
    known = [(n, s) for n, s in sizes if s is not None]
    for n, s in known[1:]:
        check(
            s == known[0][1],
            f"{op}: {known[0][0]} and {n} must have the same number of elements, got "
            + ", ".join(f"{m} {_shape(i)}" for m, i in named),
        )


# -- Iter ------------------------------------------------------------------------------------------


def _infer_iter(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _counter("Iter", "the iteration blob", ins[0])
    return [TensorInfo(ins[0].shape, I64)]


define(
    "Iter",
    family="train",
    doc="Adds 1 to an int64 counter of one element, in place (Caffe2's explicit in-place form; the "
    "deprecated no-input form is not supported). The count must be >= 0 and not overflow.",
    inputs=1,
    input_docs=[("iter", "int64 counter [1]")],
    output_docs=[("iter", "the same blob, incremented")],
    enforce_inplace={(0, 0)},
    infer=_infer_iter,
    dtypes=(I64,),
    differentiable=False,
)

# -- LearningRate ----------------------------------------------------------------------------------

POLICIES = ("fixed", "step", "exp", "inv", "poly", "linearWarmup", "constantWarmup", "alter", "hill")


def _canon_lr(args: dict[str, Any]) -> dict[str, Any]:
    """Caffe2 checks these with DCHECK (debug builds only); here they always hold."""
    policy = args["policy"]

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ArgumentError(f"LearningRate: policy '{policy}' needs {what}")

    if policy not in POLICIES:
        raise ArgumentError(f"LearningRate: unknown policy '{policy}' (known: {', '.join(POLICIES)})")
    if policy == "step":
        need(args["stepsize"] > 0, f"stepsize > 0, got {args['stepsize']}")
        need(args["gamma"] > 0, f"gamma > 0, got {args['gamma']}")
    elif policy == "exp":
        need(args["gamma"] > 0, f"gamma > 0, got {args['gamma']}")
    elif policy == "inv":
        need(
            args["gamma"] > 0 and args["power"] > 0,
            f"gamma > 0 and power > 0, got {args['gamma']}, {args['power']}",
        )
    elif policy == "poly":
        need(args["power"] > 0, f"power > 0, got {args['power']}")
        need(args["max_iter"] > 0, f"max_iter > 0, got {args['max_iter']}")
    elif policy == "linearWarmup":
        need(args["start_multiplier"] >= 0, f"start_multiplier >= 0, got {args['start_multiplier']}")
        need(args["num_iter"] >= 0, f"num_iter >= 0, got {args['num_iter']}")
    elif policy == "constantWarmup":
        need(args["multiplier"] > 0, f"multiplier > 0, got {args['multiplier']}")
        need(args["num_iter"] >= 0, f"num_iter >= 0, got {args['num_iter']}")
    elif policy == "alter":
        a, i = args["active_period"], args["inactive_period"]
        need(
            a >= 0 and i >= 0 and a + i > 0,
            f"active_period, inactive_period >= 0 with a positive sum, got {a}, {i}",
        )
    elif policy == "hill":
        need(args["num_iter"] > 0, f"num_iter > 0, got {args['num_iter']}")
        need(
            0 <= args["start_multiplier"] <= 1, f"start_multiplier in [0, 1], got {args['start_multiplier']}"
        )
        need(
            args["gamma"] > 0 and args["power"] > 0,
            f"gamma > 0 and power > 0, got {args['gamma']}, {args['power']}",
        )
        need(0 <= args["end_multiplier"] <= 1, f"end_multiplier in [0, 1], got {args['end_multiplier']}")
    return args


def _infer_lr(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    _counter("LearningRate", "the iteration input", ins[0])
    return [TensorInfo((), F32)]


define(
    "LearningRate",
    family="train",
    doc="lr = base_lr * lr_scale * multiplier(iter), a float32 scalar (0-d, as Caffe2's). Policies: "
    "fixed: 1; step: gamma^floor(iter/stepsize); exp: gamma^iter; inv: (1 + gamma*iter)^-power; "
    "poly: (1 - iter/max_iter)^power (0 from max_iter on; Caffe2 gave NaN there); "
    "linearWarmup: start_multiplier + (1 - start_multiplier) * iter/num_iter until num_iter, then 1; "
    "constantWarmup: multiplier until num_iter, then 1; alter: 1 for active_period iterations, 0 "
    "for inactive_period (reversed with active_first=0); hill: linearWarmup for num_iter, then "
    "max(end_multiplier, inv(iter - num_iter)). Caffe2's optimizers give a negative base_lr.",
    inputs=1,
    input_docs=[("iter", "int64 counter [1] (from Iter)")],
    output_docs=[("lr", "float32 scalar")],
    args=[
        Arg(
            "base_lr",
            ArgType.FLOAT,
            REQUIRED,
            "the rate at multiplier 1 (negative for descent with Adam etc.)",
        ),
        Arg("policy", ArgType.STRING, REQUIRED, "one of " + ", ".join(POLICIES)),
        Arg("lr_scale", ArgType.FLOAT, 1.0, "extra factor on base_lr"),
        Arg("stepsize", ArgType.INT, 0, "step: iterations per decay"),
        Arg("gamma", ArgType.FLOAT, 0.0, "step, exp, inv, hill: decay factor"),
        Arg("power", ArgType.FLOAT, 0.0, "inv, poly, hill: exponent"),
        Arg("max_iter", ArgType.INT, -1, "poly: the iteration where lr reaches 0"),
        Arg("start_multiplier", ArgType.FLOAT, 0.0, "linearWarmup, hill: multiplier at iteration 0"),
        Arg("num_iter", ArgType.INT, 0, "linearWarmup, constantWarmup, hill: warm-up length"),
        Arg("multiplier", ArgType.FLOAT, 0.5, "constantWarmup: multiplier during warm-up"),
        Arg("active_first", ArgType.BOOL, True, "alter: start with the active period"),
        Arg("active_period", ArgType.INT, -1, "alter: iterations at multiplier 1"),
        Arg("inactive_period", ArgType.INT, -1, "alter: iterations at multiplier 0"),
        Arg("end_multiplier", ArgType.FLOAT, 0.0, "hill: lower bound of the decay"),
    ],
    canonicalize=_canon_lr,
    infer=_infer_lr,
    dtypes=(F32,),
    type_input=None,
    differentiable=False,
)

# -- optimizers ------------------------------------------------------------------------------------


def _infer_momentum_sgd(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "MomentumSGDUpdate"
    grad, moment, lr, param = ins
    _scalar_lr(op, lr)
    dtype = same_dtype(op, [grad, moment, param])
    check(
        dtype is None or dtype.kind == "f",
        f"{op}: grad, moment and param must be float, got {dtypes.name(dtype)}",
    )
    _same_size(op, [("grad", grad), ("moment", moment), ("param", param)])
    return [grad.with_dtype(dtype), moment.with_dtype(dtype), param.with_dtype(dtype)]


define(
    "MomentumSGDUpdate",
    family="train",
    doc="Momentum SGD with a positive lr (Caffe2's formulas). Without nesterov: "
    "g' = lr*grad + momentum*moment, moment' = g', param' = param - g'. With nesterov: "
    "moment' = momentum*moment + lr*grad, g' = (1 + momentum)*moment' - momentum*moment, "
    "param' = param - g'. Outputs (g', moment', param'); moment and param are updated in place.",
    inputs=4,
    outputs=3,
    input_docs=[
        ("grad", "gradient"),
        ("moment", "momentum history"),
        ("lr", "learning rate [1]"),
        ("param", "parameters"),
    ],
    output_docs=[
        ("output_grad", "the adjusted gradient"),
        ("output_moment", "moment, in place"),
        ("output_param", "param, in place"),
    ],
    args=[
        Arg("momentum", ArgType.FLOAT, 0.0, "decay of the momentum history"),
        Arg("nesterov", ArgType.BOOL, False, "Nesterov's accelerated gradient"),
    ],
    inplace={(0, 0)},
    enforce_inplace={(1, 1), (3, 2)},
    infer=_infer_momentum_sgd,
    differentiable=False,
)


def _infer_adam(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "Adam"
    param, m1, m2, grad, lr, it = ins
    _scalar_lr(op, lr)
    _counter(op, "iter", it)
    dtype = same_dtype(op, [param, m1, m2, grad])
    check(
        dtype is None or dtype.kind == "f",
        f"{op}: param, moments and grad must be float, got {dtypes.name(dtype)}",
    )
    _same_size(op, [("param", param), ("moment_1", m1), ("moment_2", m2), ("grad", grad)])
    return [param.with_dtype(dtype), m1.with_dtype(dtype), m2.with_dtype(dtype), grad.with_dtype(dtype)][:n]


define(
    "Adam",
    family="train",
    doc="Adam (Caffe2's form, lr negative for descent): t = iter + 1, "
    "c = sqrt(1 - beta2^t) / (1 - beta1^t), m1' = beta1*m1 + (1-beta1)*grad, "
    "m2' = beta2*m2 + (1-beta2)*grad², grad' = c * m1' / (sqrt(m2') + epsilon), "
    "param' = param + lr * grad'. Outputs (param', m1', m2'[, grad']), usually in place.",
    inputs=6,
    outputs=(3, 4),
    input_docs=[
        ("param", "parameters"),
        ("moment_1", "first moment"),
        ("moment_2", "second moment"),
        ("grad", "gradient"),
        ("lr", "learning rate [1]"),
        ("iter", "int64 iteration counter [1]"),
    ],
    output_docs=[
        ("output_param", "updated parameters"),
        ("output_moment_1", "updated first moment"),
        ("output_moment_2", "updated second moment"),
        ("output_grad", "the effective gradient grad' (optional)"),
    ],
    args=[
        Arg("beta1", ArgType.FLOAT, 0.9, "first moment decay"),
        Arg("beta2", ArgType.FLOAT, 0.999, "second moment decay"),
        Arg("epsilon", ArgType.FLOAT, 1e-5, "added to sqrt(m2') (Caffe2's default, not the paper's 1e-8)"),
    ],
    inplace={(0, 0), (1, 1), (2, 2)},
    infer=_infer_adam,
    differentiable=False,
)


def _infer_adagrad(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    op = "Adagrad"
    param, moment, grad, lr = ins
    _scalar_lr(op, lr)
    dtype = same_dtype(op, [param, moment, grad])
    check(
        dtype is None or dtype.kind == "f",
        f"{op}: param, moment and grad must be float, got {dtypes.name(dtype)}",
    )
    _same_size(op, [("param", param), ("moment", moment), ("grad", grad)])
    return [param.with_dtype(dtype), moment.with_dtype(dtype)]


define(
    "Adagrad",
    family="train",
    doc="AdaGrad (lr negative for descent): moment' = decay*moment + grad², "
    "param' = param + lr * grad / (sqrt(moment') + epsilon). Outputs (param', moment'), usually "
    "in place.",
    inputs=4,
    outputs=2,
    input_docs=[
        ("param", "parameters"),
        ("moment", "squared-gradient history"),
        ("grad", "gradient"),
        ("lr", "learning rate [1]"),
    ],
    output_docs=[("output_param", "updated parameters"), ("output_moment", "updated history")],
    args=[
        Arg("epsilon", ArgType.FLOAT, 1e-5, "added to sqrt(moment')"),
        Arg("decay", ArgType.FLOAT, 1.0, "decay of the history (1: plain AdaGrad)"),
    ],
    inplace={(0, 0), (1, 1)},
    infer=_infer_adagrad,
    differentiable=False,
)
