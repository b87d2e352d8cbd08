"""The CUDNN engine: Conv and ConvGradient (forward, data gradient, weight gradient) through
NVIDIA's cuDNN frontend graph API (``pip install nvidia-cudnn-frontend nvidia-cudnn-cu12``;
CuPy 14 dropped its own cuDNN module). The cuda backend prefers it by default
(kaffa.engines: ``{"cuda": ["CUDNN"]}``), as Caffe2 did.

A graph is built per (shapes, dtype, window) and cached; the planner declines the engine when the
frontend is not importable, and a configuration cuDNN rejects at graph build time (unsupported
padding, dtype, ...) runs the default cuda kernel instead, decided once per shape. The bias is
added with CuPy. UNTESTED HERE: this machine has no GPU; the module imports without one.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from kaffa.errors import DeviceError
from kaffa.kernels import KernelContext, RunFn
from kaffa.launch.nn import ConvArgs, ConvGeometry
from kaffa_cuda.kernels import nn
from kaffa_cuda.kernels.common import F16, F32, F64, Table, wide, xp

table = Table(engine="CUDNN")

_handles: dict[int, Any] = {}
_lock = threading.Lock()


def _cudnn() -> Any:
    import cudnn  # nvidia-cudnn-frontend

    return cudnn


def unavailable(ctx: KernelContext) -> str | None:
    try:
        _cudnn()
    except Exception as e:  # not installed, or libcudnn missing
        return f"the cuDNN frontend is not importable ({type(e).__name__}: {e}); pip install kaffa[cuda]"
    if ctx.args["order"] != "NCHW":
        return "the CUDNN engine here takes NCHW"
    return None


def handle(index: int) -> Any:
    """One cuDNN handle per GPU, bound to that device's current CuPy stream."""
    with _lock:
        h = _handles.get(index)
        if h is None:
            import cupy

            cudnn = _cudnn()
            with cupy.cuda.Device(index):
                h = _handles[index] = cudnn.create_handle()
                cudnn.set_stream(handle=h, stream=cupy.cuda.get_current_stream().ptr)
        return h


def _dt(cudnn: Any, dtype: np.dtype) -> Any:
    return {F16: cudnn.data_type.HALF, F32: cudnn.data_type.FLOAT, F64: cudnn.data_type.DOUBLE}[dtype]


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


class Rejected(Exception):
    """cuDNN cannot run this configuration; the default kernel takes it."""


class ConvGraph:
    """One built cuDNN graph (fprop, dgrad or wgrad) for fixed shapes."""

    def __init__(self, kind: str, index: int, dtype: np.dtype, x: tuple, w: tuple, y: tuple, g: ConvGeometry):
        win = g.win
        pads = list(g.begins)
        # cuDNN pads symmetrically: an end pad other than the begin pad (SAME, ceil mode) is rejected.
        ends = g.exact_ends
        if any(e > b for e, b in zip(ends, pads)):
            raise Rejected(f"asymmetric padding {pads} / {ends}")
        cudnn = _cudnn()
        self.h = handle(index)
        self.kind = kind
        io = _dt(cudnn, dtype)
        comp = cudnn.data_type.DOUBLE if dtype == F64 else cudnn.data_type.FLOAT
        graph = cudnn.pygraph(
            io_data_type=io, intermediate_data_type=comp, compute_data_type=comp, handle=self.h
        )
        conv = {"padding": pads, "stride": list(win.strides), "dilation": list(win.dilations)}
        tx = graph.tensor(name="X", dim=list(x), stride=_strides(x), data_type=io)
        tw = graph.tensor(name="W", dim=list(w), stride=_strides(w), data_type=io)
        ty = graph.tensor(name="Y", dim=list(y), stride=_strides(y), data_type=io)
        try:
            if kind == "fprop":
                out = graph.conv_fprop(image=tx, weight=tw, compute_data_type=comp, **conv)
                out.set_output(True).set_data_type(io).set_dim(list(y)).set_stride(_strides(y))
                self.inputs = (tx, tw)
            elif kind == "dgrad":
                out = graph.conv_dgrad(loss=ty, filter=tw, compute_data_type=comp, **conv)
                out.set_output(True).set_data_type(io).set_dim(list(x)).set_stride(_strides(x))
                self.inputs = (ty, tw)
            else:
                out = graph.conv_wgrad(image=tx, loss=ty, compute_data_type=comp, **conv)
                out.set_output(True).set_data_type(io).set_dim(list(w)).set_stride(_strides(w))
                self.inputs = (tx, ty)
            graph.validate()
            graph.build_operation_graph()
            graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
            graph.check_support()
            graph.build_plans()
        except Exception as e:  # cudnnGraphNotSupportedError and friends
            raise Rejected(f"{type(e).__name__}: {e}") from None
        self.graph, self.out = graph, out
        self.out_shape = {"fprop": y, "dgrad": x, "wgrad": w}[kind]
        self.workspace_size = int(graph.get_workspace_size())

    def __call__(self, cp: Any, a: Any, b: Any, dtype: np.dtype) -> Any:
        out = cp.empty(self.out_shape, dtype)
        ws = cp.empty(max(1, self.workspace_size), cp.uint8)
        a, b = cp.ascontiguousarray(a), cp.ascontiguousarray(b)
        self.graph.execute({self.inputs[0]: a, self.inputs[1]: b, self.out: out}, ws, handle=self.h)
        return out


class Graphs:
    """Graphs cached by shapes; a rejected configuration is remembered (None) and runs the default
    kernel from then on."""

    def __init__(self, index: int):
        self.index = index
        self._cache: dict[tuple, ConvGraph | None] = {}

    def get(
        self, kind: str, dtype: np.dtype, x: tuple, w: tuple, y: tuple, g: ConvGeometry
    ) -> ConvGraph | None:
        key = (kind, dtype, x, w, y, g.win, g.begins)
        if key not in self._cache:
            try:
                self._cache[key] = ConvGraph(kind, self.index, dtype, x, w, y, g)
            except Rejected:
                self._cache[key] = None
        return self._cache[key]


def _out_shape(x: Any, g: ConvGeometry) -> tuple[int, ...]:
    return (int(x.shape[0]), g.m, *g.outs)


@table.kernel("Conv", dtypes=(F16, F32, F64), supports=unavailable)
def conv(ctx: KernelContext) -> RunFn:
    args = ConvArgs.from_ctx(ctx, "Conv")
    cp, graphs = xp(ctx), Graphs(ctx.device.index)
    fallback = nn.conv(ctx)  # the default kernel takes every layout and rank

    def run(x, w, b=None):
        g = args.geometry(x, w, b=b)
        gr = graphs.get("fprop", np.dtype(x.dtype), tuple(x.shape), tuple(w.shape), _out_shape(x, g), g)
        if gr is None:
            if fallback is None:
                raise DeviceError(
                    f"Conv: cuDNN rejects X {list(x.shape)}, W {list(w.shape)} and no default kernel fits"
                )
            return fallback(x, w, *(() if b is None else (b,)))
        y = gr(cp, x, w, np.dtype(x.dtype))
        if b is not None:
            y = (wide(cp, y) + b.reshape(1, -1, *(1,) * len(g.outs))).astype(x.dtype)
        return (y,)

    return run


@table.kernel("ConvGradient", dtypes=(F16, F32, F64), supports=unavailable)
def conv_gradient(ctx: KernelContext) -> RunFn:
    args = ConvArgs.from_ctx(ctx, "ConvGradient")
    cp, graphs = xp(ctx), Graphs(ctx.device.index)
    fallback = nn.conv_gradient(ctx)

    def run(x, w, dy):
        g = args.geometry(x, w, dy=dy)
        dt, xs, ws, ys = np.dtype(x.dtype), tuple(x.shape), tuple(w.shape), tuple(dy.shape)
        wgrad = graphs.get("wgrad", dt, xs, ws, ys, g)
        dgrad = graphs.get("dgrad", dt, xs, ws, ys, g) if args.with_dx else None
        if wgrad is None or (args.with_dx and dgrad is None):
            if fallback is None:
                raise DeviceError(f"ConvGradient: cuDNN rejects X {list(xs)}, W {list(ws)}")
            return fallback(x, w, dy)
        out = [wgrad(cp, x, dy, dt)]
        if not args.no_bias:
            out.append(wide(cp, dy).sum(axis=(0, *range(2, dy.ndim))).astype(dy.dtype))
        if args.with_dx:
            out.append(dgrad(cp, dy, w, dt))
        return tuple(out)

    return run
