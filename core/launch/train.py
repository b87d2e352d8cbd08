"""Host-side code of the training ops shared by the backends: the optimizer ops' checks, the
learning-rate policies, and the update rules on whole arrays for the array-module backends."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kaffa.schema import check


def check_lr(op: str, lr: Any) -> None:
    """The learning rate is one element."""
    check(lr.size == 1, f"{op}: lr must hold one element, got shape {list(lr.shape)}")


def check_sizes(op: str, **arrays: Any) -> None:
    """Parameter, moments and gradient have one size."""
    sizes = {k: v.size for k, v in arrays.items()}
    check(
        len(set(sizes.values())) == 1,
        f"{op}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) + " must have equal sizes",
    )


def lr_multiplier(a: Mapping[str, Any]) -> Callable[[int], float]:
    """LearningRate's multiplier of base_lr at iteration ``it``: Caffe2's learning-rate functors
    (learning_rate_functors.h), in float64, for every backend (the counter lives on the host)."""
    # numpy floats, so a growing gamma**iter overflows to inf instead of raising OverflowError.
    policy, gamma, power = a["policy"], np.float64(a["gamma"]), np.float64(a["power"])
    num_iter, start = a["num_iter"], a["start_multiplier"]

    def linear_warmup(it: int) -> float:
        return 1.0 if it >= num_iter else start + (1.0 - start) * it / num_iter

    def inv(it: int) -> float:
        return (1.0 + gamma * it) ** -power

    if policy == "fixed":
        return lambda it: 1.0
    if policy == "step":
        stepsize = a["stepsize"]
        return lambda it: gamma ** (it // stepsize)
    if policy == "exp":
        return lambda it: gamma**it
    if policy == "inv":
        return inv
    if policy == "poly":
        max_iter = a["max_iter"]
        return lambda it: max(0.0, 1.0 - it / max_iter) ** power
    if policy == "linearWarmup":
        return linear_warmup
    if policy == "constantWarmup":
        mult = a["multiplier"]
        return lambda it: mult if it < num_iter else 1.0
    if policy == "alter":
        active, inactive, first = a["active_period"], a["inactive_period"], a["active_first"]
        lead = active if first else inactive

        def alter(it: int) -> float:
            in_lead = it % (active + inactive) < lead
            return float(in_lead == first)

        return alter
    if policy == "hill":
        end = a["end_multiplier"]
        return lambda it: linear_warmup(it) if it < num_iter else max(end, inv(it - num_iter))
    raise AssertionError(policy)  # the schema's canonicalize rejects unknown policies


# -- the update rules on whole arrays, for the array-module backends (numpy on cpu, CuPy on cuda) --
# float16 state is updated in float32 and rounded once; results are new arrays (kernels never write
# their inputs; the executor stores them under the in-place names).

F16, F32, I64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.int64)


def work(x: Any) -> Any:
    return x.astype(F32) if x.dtype == F16 else x


def read_count(op: str, what: str, x: Any) -> int:
    """The value of a one-element int64 counter (Iter's, LearningRate's and Adam's ``iter``)."""
    check(x.dtype == I64, f"{op}: {what} must be int64, got {x.dtype}")
    check(x.size == 1, f"{op}: {what} must hold one element, got shape {list(x.shape)}")
    return int(x.reshape(()))


def check_iter(it: Any) -> None:
    """Iter's counter: one int64 element, not negative, and one more still fits."""
    n = read_count("Iter", "the counter", it)
    check(n >= 0, f"Iter: the counter is negative ({n})")
    check(n < np.iinfo(np.int64).max, "Iter: the counter would overflow int64")


def read_lr(op: str, lr: Any) -> float:
    check_lr(op, lr)
    return float(lr.reshape(()))


def momentum_sgd(op: str, grad: Any, moment: Any, lr: Any, param: Any, momentum: float, nesterov: bool):
    """MomentumSGDUpdate: (new grad, new moment, new param)."""
    check_sizes(op, grad=grad, moment=moment, param=param)
    rate = read_lr(op, lr)
    g, m = work(grad), work(moment).reshape(grad.shape)
    m_new = rate * g + momentum * m
    g_new = (1 + momentum) * m_new - momentum * m if nesterov else m_new
    p_new = work(param) - g_new.reshape(param.shape)
    dt = grad.dtype
    return g_new.astype(dt), m_new.reshape(moment.shape).astype(dt), p_new.astype(dt)


def adam(
    op: str,
    xp: Any,
    param: Any,
    m1: Any,
    m2: Any,
    grad: Any,
    lr: Any,
    it: Any,
    betas: tuple[float, float],
    eps: float,
    want_grad: bool,
) -> list[Any]:
    """Adam: [new param, new moment 1, new moment 2 (, the step as the effective gradient)]."""
    check_sizes(op, param=param, moment_1=m1, moment_2=m2, grad=grad)
    beta1, beta2 = betas
    rate, t = read_lr(op, lr), read_count(op, "iter", it) + 1
    correction = math.sqrt(1 - beta2**t) / (1 - beta1**t)
    g = work(grad).reshape(param.shape)
    m1_new = beta1 * work(m1).reshape(param.shape) + (1 - beta1) * g
    m2_new = beta2 * work(m2).reshape(param.shape) + (1 - beta2) * g * g
    step = correction * m1_new / (xp.sqrt(m2_new) + eps)
    dt = param.dtype
    out = [
        (work(param) + rate * step).astype(dt),
        m1_new.reshape(m1.shape).astype(dt),
        m2_new.reshape(m2.shape).astype(dt),
    ]
    if want_grad:
        out.append(step.reshape(grad.shape).astype(dt))
    return out


def adagrad(op: str, xp: Any, param: Any, moment: Any, grad: Any, lr: Any, eps: float, decay: float):
    """Adagrad: (new param, new moment)."""
    check_sizes(op, param=param, moment=moment, grad=grad)
    rate = read_lr(op, lr)
    g = work(grad).reshape(param.shape)
    h = decay * work(moment).reshape(param.shape) + g * g
    p_new = work(param) + rate * g / (xp.sqrt(h) + eps)
    return p_new.astype(param.dtype), h.reshape(moment.shape).astype(param.dtype)
