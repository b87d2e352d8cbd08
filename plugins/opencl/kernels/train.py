"""Iter, LearningRate, MomentumSGDUpdate, Adam, Adagrad (cl/train.cl).

The updates return new arrays, as the cpu kernels do; the planner binds them to the in-place blob
names. The iteration counter stays on the device: LearningRate and Adam read it in a kernel.
Scalar arguments are rounded to A on the host exactly where the cpu kernel's numpy arithmetic
rounds them (e.g. 1 - beta1), so float32 results match it.
"""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.train import check_lr, check_sizes
from kaffa.schema import check
from kaffa_opencl.kernels.common import FLOATS, device, empty, kernel

table = KernelTable("opencl")

F16, F32, F64, I64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)
POLICIES = ("fixed", "step", "exp", "inv", "poly", "linearWarmup", "constantWarmup", "alter", "hill")


def _sched(ctx: KernelContext) -> np.dtype:
    """R: the type of the schedule math, double where the device has it."""
    return F64 if device(ctx).allocator.fp64 else F32


class _Kernels:
    """An op's launchers, built on first use per lr dtype (lr may be any float type, e.g. the
    float32 output of LearningRate driving float16 parameters)."""

    def __init__(self, ctx: KernelContext, *names: str, dtype=None, **consts: int):
        self.ctx, self.names, self.dtype, self.consts, self.built = ctx, names, dtype, consts, {}
        self.R = _sched(ctx)
        t = np.dtype(dtype or ctx.dtype)
        self.A = F32 if t == F16 else t  # the arithmetic type of T

    def __call__(self, lr=F32) -> tuple:
        ks = self.built.get(lr)
        if ks is None:
            lr = np.dtype(lr)
            opts = dict(L=lr, L_HALF=int(lr == F16), R=self.R, **self.consts)
            ks = self.built[lr] = tuple(kernel(self.ctx, "train", n, self.dtype, **opts) for n in self.names)
        return ks


def _count(op: str, what: str, x) -> None:
    check(x.dtype == I64, f"{op}: {what} must be int64, got {x.dtype}")
    check(x.size == 1, f"{op}: {what} must hold one element, got shape {list(x.shape)}")


@table.kernel("Iter", dtypes=(I64,))
def iter_(ctx: KernelContext) -> RunFn:
    (k,) = _Kernels(ctx, "iter_next", dtype=I64)()

    def run(it):
        _count("Iter", "the counter", it)
        out = empty(k.dev, it.shape, I64)
        k(1, it, out)
        return (out,)

    return run


@table.kernel("LearningRate", dtypes=(F32,))
def learning_rate(ctx: KernelContext) -> RunFn:
    a = ctx.args
    ks = _Kernels(ctx, "learning_rate", dtype=F32, POLICY=POLICIES.index(a["policy"]))
    (k,) = ks()
    r = ks.R.type
    # Scalars the schedule reads (unused ones are harmless); base as the cpu kernel forms it.
    fargs = [r(a["base_lr"] * a["lr_scale"])] + [
        r(a[n]) for n in ("gamma", "power", "start_multiplier", "multiplier", "end_multiplier")
    ]
    iargs = [np.int64(a[n]) for n in ("stepsize", "max_iter", "num_iter", "active_period", "inactive_period")]
    first = np.int32(bool(a["active_first"]))

    def run(it):
        _count("LearningRate", "iter", it)
        lr = empty(k.dev, (), F32)
        k(1, it, lr, *fargs, *iargs, first)
        return (lr,)

    return run


# -- optimizers ------------------------------------------------------------------------------------


@table.kernel("MomentumSGDUpdate", dtypes=FLOATS)
def momentum_sgd_update(ctx: KernelContext) -> RunFn:
    op, momentum = ctx.op_type, float(ctx.args["momentum"])
    ks = _Kernels(ctx, "momentum_sgd", UPDATES=1, NESTEROV=int(bool(ctx.args["nesterov"])))
    mom, opm = ks.A.type(momentum), ks.A.type(1 + momentum)

    def run(grad, moment, lr, param):
        check_sizes(op, grad=grad, moment=moment, param=param)
        check_lr(op, lr)
        (k,) = ks(lr.dtype)
        dt = grad.dtype
        g, m, p = (empty(k.dev, a.shape, dt) for a in (grad, moment, param))
        k(grad.size, grad, moment, lr, param, g, m, p, mom, opm, np.int64(grad.size))
        return g, m, p

    return run


@table.kernel("Adam", dtypes=FLOATS)
def adam(ctx: KernelContext) -> RunFn:
    op, a = ctx.op_type, ctx.args
    beta1, beta2, eps = float(a["beta1"]), float(a["beta2"]), float(a["epsilon"])
    want_grad = ctx.num_outputs == 4
    ks = _Kernels(ctx, "adam_correction", "adam", UPDATES=1, WANT_GRAD=int(want_grad))
    A, R = ks.A.type, ks.R.type
    scalars = (A(beta1), A(1 - beta1), A(beta2), A(1 - beta2), A(eps))

    def run(param, m1, m2, grad, lr, it):
        check_sizes(op, param=param, moment_1=m1, moment_2=m2, grad=grad)
        check_lr(op, lr)
        _count(op, "iter", it)
        corr_k, k = ks(lr.dtype)
        dt = param.dtype
        c = empty(k.dev, (1,), ks.R)
        corr_k(1, it, c, R(beta1), R(beta2))
        outs = [empty(k.dev, x.shape, dt) for x in (param, m1, m2, *([grad] if want_grad else []))]
        g_out = outs[3] if want_grad else None  # NULL: the kernel skips it
        k(param.size, param, m1, m2, grad, lr, c, *outs[:3], g_out, *scalars, np.int64(param.size))
        return outs

    return run


@table.kernel("Adagrad", dtypes=FLOATS)
def adagrad(ctx: KernelContext) -> RunFn:
    op = ctx.op_type
    ks = _Kernels(ctx, "adagrad", UPDATES=1)
    eps, decay = ks.A.type(ctx.args["epsilon"]), ks.A.type(ctx.args["decay"])

    def run(param, moment, grad, lr):
        check_sizes(op, param=param, moment=moment, grad=grad)
        check_lr(op, lr)
        (k,) = ks(lr.dtype)
        p, m = empty(k.dev, param.shape, param.dtype), empty(k.dev, moment.shape, param.dtype)
        k(param.size, param, moment, grad, lr, p, m, eps, decay, np.int64(param.size))
        return p, m

    return run
