"""The ONEDNN engine: float32 2-D Conv, FusedConv, MaxPool and AveragePool, FC, and the NCHW <-> NHWC
Transposes, through oneDNN's JIT kernels (the ``onednn`` extra, ``pip install onednn-cpu-gomp``), as
Caffe2's cpu ran them through its MKLDNN/IDEEP engine. The cpu backend prefers it by default
(kaffa.engines: ``{"cpu": ["ONEDNN"]}``).

oneDNN keeps activations channels-last on AVX2/AVX-512 machines, so an NHWC op reads and writes
its arrays in place, and an NCHW op pays two reorders; ``kaffa.passes.channels_last`` rewrites a
predict net to NHWC for a backend whose ``conv_order`` says so. FusedConv's residual and
activation are oneDNN post-ops (sum, then eltwise relu or clip), written in the same pass as the
convolution. Filters are reordered to oneDNN's blocked layout once per read-only array (a
Predictor's frozen parameters) and on every call otherwise. Once a net binds an op to the engine,
numpy's OpenBLAS runs on one thread (``_one_blas_thread`` says why).

One primitive is built per input shapes and cached with the op's kernel; a configuration oneDNN
rejects, other ranks and other dtypes run the default cpu kernel. Scratchpads are passed per call
(user scratchpad mode), so a primitive may run on any thread; each plan runs one call at a time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.launch.nn import ConvArgs, ConvGeometry, check_residual, fc_dims, layout
from kaffa.ops.geometry import Window

from . import dnnl
from .kernels import nn, tensor

F32 = np.dtype(np.float32)
table = KernelTable("cpu", engine="ONEDNN")


def unavailable(ctx: KernelContext | None = None) -> str | None:
    if os.environ.get("KAFFA_DISABLE_ONEDNN", "") in ("1", "true"):
        return "KAFFA_DISABLE_ONEDNN is set"
    return dnnl.unavailable()


_BLAS_LIMIT: list[Any] = []


def _one_blas_thread() -> None:
    """Once the engine runs ops, oneDNN's OpenMP team owns the cores, and OpenBLAS (numpy's BLAS)
    runs its GEMMs on the calling thread. OpenBLAS's idle workers spin after every GEMM; next to
    the OpenMP team they made each convolution after a GEMM 3-5x slower here, and a LeNet
    training step twice as slow. An OPENBLAS_NUM_THREADS the user set is left alone."""
    if _BLAS_LIMIT or os.environ.get("OPENBLAS_NUM_THREADS"):
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _BLAS_LIMIT.append(threadpool_limits(limits=1, user_api="blas"))


_ELTWISE = {"": None, "Relu": dnnl.ELTWISE_RELU, "Clip": dnnl.ELTWISE_CLIP}


class _Bound:
    """A memory rebound only when the array changes (weights, biases and scratch buffers keep
    theirs between runs; reading an array's address costs microseconds)."""

    def __init__(self, md: dnnl.MemoryDesc) -> None:
        self.mem = dnnl.Memory(md)
        self._array: np.ndarray | None = None

    def bind(self, a: np.ndarray) -> None:
        if a is not self._array:
            self.mem.bind(a)
            self._array = a


class _Weights:
    """A filter reordered into the layout a primitive chose: once per read-only array (a
    Predictor's frozen parameters), on every call for a writable one (training may change it).
    The cache keys on the array object, so callers pass the blob itself, not a reshaped view."""

    def __init__(self, user: dnnl.MemoryDesc, chosen: dnnl.MemoryDesc) -> None:
        self.md = chosen
        self.src, self.dst = dnnl.Memory(user), dnnl.Memory(chosen)
        self.reorder = dnnl.Call(
            dnnl.reorder(user, chosen), [(dnnl.ARG_FROM, self.src), (dnnl.ARG_TO, self.dst)]
        )
        self._hit: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, w: np.ndarray) -> np.ndarray:
        hit = self._hit
        if hit is not None and hit[0] is w:
            return hit[1]
        buf = dnnl.buffer(self.md)
        wc = np.ascontiguousarray(w)  # a name keeps a copy alive until the reorder has read it
        self.src.bind(wc)
        self.dst.bind(buf)
        self.reorder()
        if not w.flags.writeable:
            self._hit = (w, buf)
        return buf


def _bind_inputs(plan: _ConvPlan | _FCPlan, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> None:
    """Binds X, the (reordered) filter and the bias of a convolution or inner product; the plan's
    bound memories keep any contiguous copy alive."""
    plan.w.bind(plan.weights(w))
    if plan.b is not None:
        plan.b.bind(b if b.flags.c_contiguous and b.dtype == F32 else np.ascontiguousarray(b, F32))
    plan.x.bind(np.ascontiguousarray(x))


class _ConvPlan:
    """One oneDNN convolution for fixed shapes, with the reorders its layouts need (none for NHWC)."""

    def __init__(
        self, x: tuple, w: tuple, g: ConvGeometry, group: int, nchw: bool, bias: bool, z: bool, act: tuple
    ) -> None:
        n, c = x[0], (x[1] if nchw else x[3])
        m, (kh, kw), outs = g.m, g.kern, g.outs
        self.y_shape = (n, m, *outs) if nchw else (n, *outs, m)
        tag = "abcd" if nchw else "acdb"
        if group == 1:
            wdims, wtag = [m, c, kh, kw], tag
        else:
            wdims, wtag = [group, m // group, c // group, kh, kw], ("abcde" if nchw else "abdec")
        user_x = dnnl.MemoryDesc.make([n, c, *g.sizes], tag)
        user_y = dnnl.MemoryDesc.make([n, m, *outs], tag)
        # relu's alpha is its negative slope; clip's alpha and beta are its bounds
        attr = dnnl.Attr(z, _ELTWISE[act[0]], *(act[1:] if act[0] == "Clip" else (0.0, 0.0)))
        prim = dnnl.convolution(
            dnnl.MemoryDesc.make([n, c, *g.sizes], "any" if nchw else tag),
            dnnl.MemoryDesc.make(wdims, "any"),
            dnnl.MemoryDesc.make([m], "a") if bias else None,
            dnnl.MemoryDesc.make([n, m, *outs], "any" if nchw else tag),
            g.win.strides,
            g.win.dilations,
            g.begins,
            g.exact_ends,  # oneDNN takes a negative end pad too
            attr,
        )
        x_md, w_md, y_md = (prim.md(q) for q in dnnl.QUERIES)
        self.weights = _Weights(dnnl.MemoryDesc.make(wdims, wtag), w_md)
        self.x, self.y, self.w = _Bound(user_x), _Bound(user_y), _Bound(w_md)
        self.b = _Bound(dnnl.MemoryDesc.make([m], "a")) if bias else None
        # NCHW: oneDNN's own layout in buffers that live with the plan (its lock serialises
        # calls), with reorders in and out.
        self.x_in = self.y_in = self.y_out = None
        src = dst = None
        if x_md != user_x:
            src = self.src = _Bound(x_md)  # the plan holds the buffer the primitive writes
            src.bind(dnnl.buffer(x_md))
            self.x_in = dnnl.Call(
                dnnl.reorder(user_x, x_md), [(dnnl.ARG_FROM, self.x.mem), (dnnl.ARG_TO, src.mem)]
            )
        if y_md != user_y:
            dst = self.dst = _Bound(y_md)
            dst.bind(dnnl.buffer(y_md))
            self.y_in = dnnl.Call(
                dnnl.reorder(user_y, y_md), [(dnnl.ARG_FROM, self.y.mem), (dnnl.ARG_TO, dst.mem)]
            )
            self.y_out = dnnl.Call(
                dnnl.reorder(y_md, user_y), [(dnnl.ARG_FROM, dst.mem), (dnnl.ARG_TO, self.y.mem)]
            )
        src, dst = src or self.x, dst or self.y
        args = [(dnnl.ARG_SRC, src.mem), (dnnl.ARG_WEIGHTS, self.w.mem), (dnnl.ARG_DST, dst.mem)]
        if self.b is not None:
            args.append((dnnl.ARG_BIAS, self.b.mem))
        self.conv = dnnl.Call(prim, args)
        self._lock = threading.Lock()

    def __call__(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None
    ) -> np.ndarray:
        y = np.empty(self.y_shape, F32)
        with self._lock:
            _bind_inputs(self, x, w, b)
            if self.x_in is not None:
                self.x_in()
            if z is not None:  # the sum post-op adds what dst holds
                if self.y_in is None:
                    np.copyto(y, z)
                else:
                    self.y.bind(np.ascontiguousarray(z, F32))
                    self.y_in()
            self.y.bind(y)
            self.conv()
            if self.y_out is not None:
                self.y_out()
        return y


def _conv(ctx: KernelContext, op: str, act: tuple) -> RunFn:
    _one_blas_thread()
    args = ConvArgs.from_ctx(ctx, op)
    fallback = nn.fused_conv(ctx) if op == "FusedConv" else nn.conv(ctx)
    plans: dict[tuple, _ConvPlan | None] = {}

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, z: np.ndarray | None = None):
        # Plans are keyed by every input's shape: a hit means these shapes passed the checks
        # before, so the hot path skips them (they cost more than a small convolution).
        key = (
            x.shape,
            w.shape,
            x.dtype,
            w.dtype,
            None if b is None else b.shape,
            None if z is None else z.shape,
        )
        plan = plans.get(key, False)
        if plan is False:
            plan = plans[key] = _plan(x, w, b, z)
        if plan is None:
            return fallback(*(a for a in (x, w, b, z) if a is not None))
        return (plan(x, w, b, z),)

    def _plan(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None) -> _ConvPlan | None:
        if x.ndim != 4 or x.dtype != F32 or w.dtype != F32:
            return None
        g = args.geometry(x, w, b=b)
        if z is not None:
            check_residual(op, z, layout(x.shape[0], g.m, g.outs, args.nchw))
        try:
            return _ConvPlan(x.shape, w.shape, g, args.group, args.nchw, b is not None, z is not None, act)
        except dnnl.DnnlError:
            return None  # oneDNN cannot run this configuration: the default kernel does

    return run


@table.kernel("Conv", dtypes=(F32,), supports=unavailable)
def conv(ctx: KernelContext) -> RunFn:
    return _conv(ctx, "Conv", ("", 0.0, 0.0))


@table.kernel("FusedConv", dtypes=(F32,), supports=unavailable)
def fused_conv(ctx: KernelContext) -> RunFn:
    a = ctx.args
    return _conv(ctx, "FusedConv", (a["activation"], float(a["min"]), float(a["max"])))


class _OneToOne:
    """A primitive from one array to a new one (a pooling, a reorder) for fixed shapes, on the
    caller's layouts."""

    def __init__(self, prim: dnnl.Primitive, x_md: dnnl.MemoryDesc, y_md: dnnl.MemoryDesc, y_shape: tuple):
        self.y_shape = y_shape
        self.x, self.y = dnnl.Memory(x_md), dnnl.Memory(y_md)
        self.call = dnnl.Call(prim, [(dnnl.ARG_SRC, self.x), (dnnl.ARG_DST, self.y)])
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.empty(self.y_shape, F32)
        x = np.ascontiguousarray(x)  # a name keeps a copy alive until the primitive has read it
        with self._lock:
            self.x.bind(x)
            self.y.bind(y)
            self.call()
        return y


class _PoolPlan(_OneToOne):
    """One oneDNN pooling for fixed shapes (no reorders)."""

    def __init__(self, x: tuple, nchw: bool, alg: int, win: Any, outs: tuple, begins: tuple, ends: tuple):
        n, c = x[0], (x[1] if nchw else x[3])
        sizes = x[2:] if nchw else x[1:3]
        tag = "abcd" if nchw else "acdb"
        x_md = dnnl.MemoryDesc.make([n, c, *sizes], tag)
        y_md = dnnl.MemoryDesc.make([n, c, *outs], tag)
        prim = dnnl.pooling(alg, x_md, y_md, win.strides, win.kernels, win.dilations, begins, ends)
        super().__init__(prim, x_md, y_md, (n, c, *outs) if nchw else (n, *outs, c))


def _pool(ctx: KernelContext, average: bool) -> RunFn:
    _one_blas_thread()
    args = ctx.args
    nchw = args["order"] == "NCHW"
    fallback = nn.average_pool(ctx) if average else nn.max_pool(ctx)
    alg = dnnl.POOLING_MAX
    if average:
        alg = (
            dnnl.POOLING_AVG_INCLUDE_PADDING
            if args.get("count_include_pad")
            else dnnl.POOLING_AVG_EXCLUDE_PADDING
        )
    plans: dict[tuple, _PoolPlan | None] = {}

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        plan = plans.get(x.shape, False)
        if plan is False:
            plan = plans[x.shape] = _plan(x)
        return fallback(x) if plan is None else (plan(x),)

    def _plan(x: np.ndarray) -> _PoolPlan | None:
        if args["global_pooling"] or x.ndim != 4 or x.dtype != F32:
            return None
        win = Window.from_args(args, 2)
        sizes = tuple(x.shape[2:] if nchw else x.shape[1:3])
        outs, begins, ends = nn._resolve(win, sizes)
        # oneDNN's include-padding average divides by the whole window, also where it hangs past
        # the explicit pads (ceil mode); kaffa counts only the explicit pads.
        if average and args.get("count_include_pad") and tuple(ends) != tuple(win.declared_end_pads(sizes)):
            return None
        try:
            return _PoolPlan(x.shape, nchw, alg, win, tuple(outs), tuple(begins), tuple(ends))
        except dnnl.DnnlError:
            return None  # oneDNN cannot run this configuration: the default kernel does

    return run


@table.kernel("MaxPool", dtypes=(F32,), supports=unavailable)
def max_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, average=False)


@table.kernel("AveragePool", dtypes=(F32,), supports=unavailable)
def average_pool(ctx: KernelContext) -> RunFn:
    return _pool(ctx, average=True)


class _FCPlan:
    """One oneDNN inner product for fixed shapes: Y [N, M] = X [N, K] Wᵀ (+ b)."""

    def __init__(self, n: int, k: int, m: int, bias: bool) -> None:
        self.y_shape = (n, m)
        x_md, y_md = dnnl.MemoryDesc.make([n, k], "ab"), dnnl.MemoryDesc.make([n, m], "ab")
        b_md = dnnl.MemoryDesc.make([m], "a") if bias else None
        prim = dnnl.inner_product(x_md, dnnl.MemoryDesc.make([m, k], "any"), b_md, y_md)
        self.weights = _Weights(dnnl.MemoryDesc.make([m, k], "ab"), prim.md(dnnl.QUERY_WEIGHTS_MD))
        self.x, self.w, self.y = _Bound(x_md), _Bound(self.weights.md), _Bound(y_md)
        self.b = None if b_md is None else _Bound(b_md)
        args = [(dnnl.ARG_SRC, self.x.mem), (dnnl.ARG_WEIGHTS, self.w.mem), (dnnl.ARG_DST, self.y.mem)]
        if self.b is not None:
            args.append((dnnl.ARG_BIAS, self.b.mem))
        self.fc = dnnl.Call(prim, args)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = np.empty(self.y_shape, F32)
        with self._lock:
            _bind_inputs(self, x, w, b)
            self.y.bind(y)
            self.fc()
        return y


@table.kernel("FC", dtypes=(F32,), supports=unavailable)
def fc(ctx: KernelContext) -> RunFn:
    _one_blas_thread()
    axis, axis_w = ctx.args["axis"], ctx.args["axis_w"]
    fallback = nn.fc(ctx)
    # Keyed by the inputs' shapes and dtypes, as Conv's plans: a hit skips fc_dims's checks.
    Entry = tuple[_FCPlan, int, int, int, int]  # the plan, FC's axis, N, K, M
    plans: dict[tuple, Entry | None] = {}

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        key = (x.shape, w.shape, x.dtype, w.dtype, None if b is None else b.shape)
        entry = plans.get(key, False)
        if entry is False:
            entry = plans[key] = _plan(x, w, b)
        if entry is None:
            return fallback(*(a for a in (x, w, b) if a is not None))
        plan, ax, n, k, m = entry
        # W and b as they are (same objects every run: the filter cache keys on identity); the
        # primitive reads their contiguous bytes.
        y = plan(x.reshape(n, k), w, b)
        return (y.reshape(*x.shape[:ax], m),)

    def _plan(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> Entry | None:
        if x.dtype != F32 or w.dtype != F32:
            return None
        ax, _, n, k, m = fc_dims(x, w, axis, axis_w, b)
        try:
            return _FCPlan(n, k, m, b is not None), ax, n, k, m
        except dnnl.DnnlError:
            return None  # oneDNN cannot run this configuration: the default kernel does

    return run


class _TransposePlan(_OneToOne):
    """NCHW <-> NHWC of a float32 4-D array as one oneDNN reorder (multi-threaded, blocked; numpy's
    strided copy is several times slower): the layout Transposes of kaffa.passes.channels_last."""

    def __init__(self, shape: tuple, to_nhwc: bool) -> None:
        n, c, h, w = (
            (shape[0], shape[1], shape[2], shape[3]) if to_nhwc else (shape[0], shape[3], shape[1], shape[2])
        )
        src, dst = ("abcd", "acdb") if to_nhwc else ("acdb", "abcd")
        x_md, y_md = dnnl.MemoryDesc.make([n, c, h, w], src), dnnl.MemoryDesc.make([n, c, h, w], dst)
        super().__init__(dnnl.reorder(x_md, y_md), x_md, y_md, (n, h, w, c) if to_nhwc else (n, c, h, w))


_LAYOUTS = {(0, 2, 3, 1): True, (0, 3, 1, 2): False}  # axes -> to NHWC


@table.kernel("Transpose", dtypes=(F32,), supports=unavailable)
def transpose(ctx: KernelContext) -> RunFn:
    _one_blas_thread()
    fallback = tensor.transpose(ctx)
    to_nhwc = _LAYOUTS.get(tuple(ctx.args["axes"]))
    if to_nhwc is None:
        return fallback
    plans: dict[tuple, _TransposePlan] = {}

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim != 4 or x.dtype != F32:
            return fallback(x)
        plan = plans.get(x.shape)
        if plan is None:
            plan = plans[x.shape] = _TransposePlan(x.shape, to_nhwc)
        return (plan(x),)

    return run


def describe() -> dict[str, Any]:
    """What the engine runs on, for ``kaffa info`` and the benchmark table."""
    reason = unavailable()
    if reason is not None:
        return {"available": False, "reason": reason}
    return {"available": True, "version": dnnl.version(), "library": dnnl.library().path}
