"""MomentumSGDUpdate and Adagrad (wgsl/train.wgsl); Iter, LearningRate and Adam are not here.

The updates return new arrays, as the cpu kernels do; the planner binds them to the in-place blob
names. float16 state is updated in float32 and rounded once.

Why no Iter, LearningRate or Adam: all three read kaffa's int64 iteration counter, and WGSL has no
64-bit integers, so the counter cannot live on metal (feeding it, or the planner's copy of it, is
refused by the allocator). Registering them would claim float32 cells that can never run. Under
the default fallback policy a training net still works: build_iteration puts Iter on cpu, and
LearningRate (and Adam) fall back to cpu; LearningRate's float32 scalar is then copied to metal
for MomentumSGDUpdate / Adagrad, whose kernels take an lr of any float type (L).
"""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.train import check_lr, check_sizes
from kaffa_metal.kernels.common import FLOATS, Launcher, empty, kernel

table = KernelTable("metal")

F32 = np.dtype(np.float32)


class _Kernels:
    """One entry of wgsl/train.wgsl, built on first use per lr dtype."""

    def __init__(self, ctx: KernelContext, entry: str, **consts: object):
        self.ctx, self.entry, self.consts, self.built = ctx, entry, {"NESTEROV": False, **consts}, {}
        self(F32)  # build the common case now: shader errors surface at net creation

    def __call__(self, lr) -> Launcher:
        k = self.built.get(np.dtype(lr))
        if k is None:
            k = self.built[np.dtype(lr)] = kernel(self.ctx, "train", self.entry, L=lr, **self.consts)
        return k


@table.kernel("MomentumSGDUpdate", dtypes=FLOATS)
def momentum_sgd_update(ctx: KernelContext) -> RunFn:
    op, momentum = ctx.op_type, float(ctx.args["momentum"])
    ks = _Kernels(ctx, "momentum_sgd", NESTEROV=bool(ctx.args["nesterov"]))
    opm = float(np.float32(1 + momentum))  # rounded once, as the cpu kernel's numpy does

    def run(grad, moment, lr, param):
        check_sizes(op, grad=grad, moment=moment, param=param)
        check_lr(op, lr)
        k, dt = ks(lr.dtype), grad.dtype
        g, m, p = (empty(k.dev, a.shape, dt) for a in (grad, moment, param))
        k(grad.size, grad, moment, lr, param, g, m, p, params=[grad.size, momentum, opm])
        return g, m, p

    return run


@table.kernel("Adagrad", dtypes=FLOATS)
def adagrad(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    ks = _Kernels(ctx, "adagrad")
    eps, decay = float(ctx.args["epsilon"]), float(ctx.args["decay"])

    def run(param, moment, grad, lr):
        check_sizes(op, param=param, moment=moment, grad=grad)
        check_lr(op, lr)
        k, dt = ks(lr.dtype), param.dtype
        p, m = empty(k.dev, param.shape, dt), empty(k.dev, moment.shape, dt)
        k(param.size, param, moment, grad, lr, p, m, params=[param.size, eps, decay])
        return p, m

    return run
