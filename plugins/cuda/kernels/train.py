"""Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad on cuda, as CuPy array code (the cpu
kernels' arithmetic, on the device; the counter and the rate are read back as host scalars).

The updates return new arrays (kernels never write into inputs); the executor stores them under
the in-place blob names. float16 state is updated in float32 and rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.schema import check
from kaffa_cuda.kernels.common import Table, xp

table = Table()

F16, F32, I64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.int64)
I64_MAX = np.iinfo(np.int64).max


def _work(x):
    return x.astype(F32) if x.dtype == F16 else x


def _count(op: str, what: str, x) -> int:
    check(x.dtype == I64, f"{op}: {what} must be int64, got {x.dtype}")
    check(x.size == 1, f"{op}: {what} must hold one element, got shape {list(x.shape)}")
    return int(x.reshape(()))


def _lr(op: str, lr) -> float:
    check(lr.size == 1, f"{op}: lr must hold one element, got shape {list(lr.shape)}")
    return float(lr.reshape(()))


def _sizes(op: str, **arrays) -> None:
    sizes = {k: v.size for k, v in arrays.items()}
    check(
        len(set(sizes.values())) == 1,
        f"{op}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) + " must have equal sizes",
    )


@table.kernel("Iter", dtypes=(I64,))
def iter_(ctx: KernelContext) -> RunFn:
    def run(it):
        n = _count("Iter", "the counter", it)
        check(n >= 0, f"Iter: the counter is negative ({n})")
        check(n < I64_MAX, "Iter: the counter would overflow int64")
        return (it + 1,)  # stays on the device

    return run


# -- LearningRate ----------------------------------------------------------------------------------


def _multiplier(a) -> Callable[[int], float]:
    """Caffe2's learning-rate functors (learning_rate_functors.h), in float64."""
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


@table.kernel("LearningRate", dtypes=(F32,))
def learning_rate(ctx: KernelContext) -> RunFn:
    base = ctx.args["base_lr"] * ctx.args["lr_scale"]
    cp = xp(ctx)
    mult = _multiplier(ctx.args)

    def run(it):
        n = _count("LearningRate", "iter", it)
        check(n >= 0, f"LearningRate: iter is negative ({n})")
        with np.errstate(over="ignore", under="ignore"):
            return (cp.asarray(np.float32(base * mult(n))).reshape(()),)

    return run


# -- optimizers ------------------------------------------------------------------------------------


@table.kernel("MomentumSGDUpdate", dtypes=(F16, F32, np.dtype(np.float64)))
def momentum_sgd_update(ctx: KernelContext) -> RunFn:
    op, momentum, nesterov = ctx.op_type, float(ctx.args["momentum"]), bool(ctx.args["nesterov"])

    def run(grad, moment, lr, param):
        _sizes(op, grad=grad, moment=moment, param=param)
        rate = _lr(op, lr)
        g, m = _work(grad), _work(moment).reshape(grad.shape)
        m_new = rate * g + momentum * m
        g_new = (1 + momentum) * m_new - momentum * m if nesterov else m_new
        p_new = _work(param) - g_new.reshape(param.shape)
        dt = grad.dtype
        return g_new.astype(dt), m_new.reshape(moment.shape).astype(dt), p_new.astype(dt)

    return run


@table.kernel("Adam", dtypes=(F16, F32, np.dtype(np.float64)))
def adam(ctx: KernelContext) -> RunFn:
    op, a = ctx.op_type, ctx.args
    beta1, beta2, eps = float(a["beta1"]), float(a["beta2"]), float(a["epsilon"])
    cp = xp(ctx)
    want_grad = ctx.num_outputs == 4

    def run(param, m1, m2, grad, lr, it):
        _sizes(op, param=param, moment_1=m1, moment_2=m2, grad=grad)
        rate, t = _lr(op, lr), _count(op, "iter", it) + 1
        correction = math.sqrt(1 - beta2**t) / (1 - beta1**t)
        g = _work(grad).reshape(param.shape)
        m1_new = beta1 * _work(m1).reshape(param.shape) + (1 - beta1) * g
        m2_new = beta2 * _work(m2).reshape(param.shape) + (1 - beta2) * g * g
        step = correction * m1_new / (cp.sqrt(m2_new) + eps)
        dt = param.dtype
        out = [
            (_work(param) + rate * step).astype(dt),
            m1_new.reshape(m1.shape).astype(dt),
            m2_new.reshape(m2.shape).astype(dt),
        ]
        if want_grad:
            out.append(step.reshape(grad.shape).astype(dt))
        return out

    return run


@table.kernel("Adagrad", dtypes=(F16, F32, np.dtype(np.float64)))
def adagrad(ctx: KernelContext) -> RunFn:
    op, eps, decay = ctx.op_type, float(ctx.args["epsilon"]), float(ctx.args["decay"])
    cp = xp(ctx)

    def run(param, moment, grad, lr):
        _sizes(op, param=param, moment=moment, grad=grad)
        rate = _lr(op, lr)
        g = _work(grad).reshape(param.shape)
        h = decay * _work(moment).reshape(param.shape) + g * g
        p_new = _work(param) + rate * g / (cp.sqrt(h) + eps)
        return p_new.astype(param.dtype), h.reshape(moment.shape).astype(param.dtype)

    return run
