"""Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad.

The updates return new arrays (kernels never write into inputs); the executor stores them under
the in-place blob names. float16 state is updated in float32 and rounded once.
"""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.train import adagrad as adagrad_update
from kaffa.launch.train import adam as adam_update
from kaffa.launch.train import check_iter, lr_multiplier, momentum_sgd, read_count
from kaffa.schema import check

table = KernelTable("cpu")

F32, I64 = np.dtype(np.float32), np.dtype(np.int64)


@table.kernel("Iter", dtypes=(I64,))
def iter_(ctx: KernelContext) -> RunFn:
    def run(it):
        check_iter(it)
        return (it + 1,)

    return run


# -- LearningRate ----------------------------------------------------------------------------------


@table.kernel("LearningRate", dtypes=(F32,))
def learning_rate(ctx: KernelContext) -> RunFn:
    base = ctx.args["base_lr"] * ctx.args["lr_scale"]
    mult = lr_multiplier(ctx.args)

    def run(it):
        n = read_count("LearningRate", "iter", it)
        check(n >= 0, f"LearningRate: iter is negative ({n})")
        with np.errstate(over="ignore", under="ignore"):
            return (np.asarray(base * mult(n), dtype=F32),)

    return run


# -- optimizers ------------------------------------------------------------------------------------


@table.kernel("MomentumSGDUpdate", dtypes=FLOAT_TYPES)
def momentum_sgd_update(ctx: KernelContext) -> RunFn:
    op, momentum, nesterov = ctx.op_type, float(ctx.args["momentum"]), bool(ctx.args["nesterov"])

    def run(grad, moment, lr, param):
        return momentum_sgd(op, grad, moment, lr, param, momentum, nesterov)

    return run


@table.kernel("Adam", dtypes=FLOAT_TYPES)
def adam(ctx: KernelContext) -> RunFn:
    op, a = ctx.op_type, ctx.args
    beta1, beta2, eps = float(a["beta1"]), float(a["beta2"]), float(a["epsilon"])
    want_grad = ctx.num_outputs == 4

    def run(param, m1, m2, grad, lr, it):
        return adam_update(op, np, param, m1, m2, grad, lr, it, (beta1, beta2), eps, want_grad)

    return run


@table.kernel("Adagrad", dtypes=FLOAT_TYPES)
def adagrad(ctx: KernelContext) -> RunFn:
    op, eps, decay = ctx.op_type, float(ctx.args["epsilon"]), float(ctx.args["decay"])

    def run(param, moment, grad, lr):
        return adagrad_update(op, np, param, moment, grad, lr, eps, decay)

    return run
