"""MaxPool, AveragePool and their gradients for 2-D NCHW (cu/pool.cu). Window geometry (output
sizes, SAME/VALID, Caffe's ceil mode, what count_include_pad counts) comes from
kaffa.launch.pool, as on the other backends. Other layouts, ranks and dilated windows run on cpu
(or on the CUDNN engine)."""

from __future__ import annotations

import numpy as np

from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.pool import PoolGeometry, check_pool_gradient, pool_setup
from kaffa_cuda.kernels.common import FLOATS, Launcher, Table, xp

table = Table()


def pool2d_nchw(ctx: KernelContext) -> str | None:
    if ctx.args["order"] != "NCHW":
        return "the cuda pooling kernels take order NCHW"
    if any(d != 1 for d in ctx.args.get("dilations") or [1]):
        return "the cuda pooling kernels take no dilation"
    if ctx.inputs and ctx.inputs[0].shape is not None and len(ctx.inputs[0].shape) != 4:
        return "the cuda pooling kernels take 2-D images (4-d X)"
    return None


def _args(shape, geo: PoolGeometry) -> tuple:
    sizes, outs, kern, strides, _, begins, lo, hi = geo.fields
    nc = np.int64(int(shape[0]) * int(shape[1]))
    base = (nc, *sizes, *outs, *kern, *strides, *begins)
    return tuple(v if isinstance(v, np.integer) else np.int32(v) for v in base), (
        np.int32(lo[0]),
        np.int32(hi[0]),
        np.int32(lo[1]),
        np.int32(hi[1]),
    )


def _check_2d(op: str, x) -> None:
    from kaffa.schema import check

    check(x.ndim == 4, f"{op}: the cuda kernel takes 4-d NCHW X, got {list(x.shape)}")


@table.kernel("MaxPool", "AveragePool", dtypes=FLOATS, supports=pool2d_nchw, raw=True)
def pool(ctx: KernelContext) -> RunFn:
    setup, average = pool_setup(ctx)
    k = Launcher(ctx, "pool", "avg_pool" if average else "max_pool")
    cp, op = xp(ctx), ctx.op_type

    def run(x):
        _check_2d(op, x)
        geo = setup(tuple(x.shape))
        x = cp.ascontiguousarray(x)
        y = cp.empty(geo.out_shape, x.dtype)
        base, bounds = _args(x.shape, geo)
        k(y.size, x, y, *base, *(bounds if average else ()))
        return (y,)

    return run


@table.kernel("MaxPoolGradient", "AveragePoolGradient", dtypes=FLOATS, supports=pool2d_nchw, raw=True)
def pool_gradient(ctx: KernelContext) -> RunFn:
    setup, average = pool_setup(ctx)
    k = Launcher(ctx, "pool", "avg_pool_gradient" if average else "max_pool_gradient")
    cp, op = xp(ctx), ctx.op_type

    def run(x, y, dy):
        _check_2d(op, x)
        geo = setup(tuple(x.shape))
        check_pool_gradient(op, y, dy, geo.out_shape)
        x, y, dy = cp.ascontiguousarray(x), cp.ascontiguousarray(y), cp.ascontiguousarray(dy)
        dx = cp.empty(x.shape, dy.dtype)
        base, bounds = _args(x.shape, geo)
        if average:
            k(dx.size, dy, dx, *base, *bounds)
        else:
            k(dx.size, x, y, dy, dx, *base)
        return (dx,)

    return run
