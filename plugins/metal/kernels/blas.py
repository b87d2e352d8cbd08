"""MatMul, BatchMatMul and ``gemm``, the tiled matrix product (wgsl/blas.wgsl) that the nn ops
(FC, Conv through im2col) build on.

The GEMM dispatches 2-d grids of 16 x 16-invocation workgroups with workgroup memory (a 64 x 64
tile of C each) and a batch dimension, which common.Launcher's 1-d launches cannot express, so it
has its own launcher built from the same pieces (PIPELINES, Params).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.errors import DeviceError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check, norm_axis
from kaffa_metal.allocator import MetalArray
from kaffa_metal.device import MetalDevice
from kaffa_metal.kernels.common import FLOATS, PIPELINES, Params, device, empty, prelude

table = KernelTable("metal")

TM, TN = 64, 64  # the tile of C a workgroup owns (blas.wgsl)


class _GemmLauncher:
    """The gemm entry point for one device and dtype: bind groups, 3-d dispatch."""

    def __init__(self, dev: MetalDevice, dtype: np.dtype):
        self.dev = dev
        self.pipeline = PIPELINES.get(dev, "blas", "gemm", prelude(dtype))
        self.layout = self.pipeline.get_bind_group_layout(0)
        self.params = Params(dev)
        self.max_groups = int(dev.device.limits["max-compute-workgroups-per-dimension"])

    def __call__(
        self, a, b, bias, c, offs: np.ndarray, head: list[Any], gx: int, gy: int, batch: int
    ) -> None:
        if gx > self.max_groups or gy > self.max_groups:
            raise DeviceError(
                f"gemm: a {gy * TM} x {gx * TN} tile grid exceeds the adapter's dispatch limits"
            )
        device = self.dev.device
        offs_buf = self.params(offs)
        for z0 in range(0, batch, self.max_groups):  # batches beyond the z limit: more dispatches
            buffers = [a.buffer, b.buffer, bias.buffer, c.buffer, offs_buf, self.params([*head, z0])]
            group = device.create_bind_group(
                layout=self.layout,
                entries=[
                    {"binding": i, "resource": {"buffer": buf, "offset": 0, "size": buf.size}}
                    for i, buf in enumerate(buffers)
                ],
            )
            encoder = device.create_command_encoder()
            cpass = encoder.begin_compute_pass()
            cpass.set_pipeline(self.pipeline)
            cpass.set_bind_group(0, group)
            cpass.dispatch_workgroups(gx, gy, min(self.max_groups, batch - z0))
            cpass.end()
            device.queue.submit([encoder.finish()])


_LAUNCHERS: dict[tuple[int, np.dtype], _GemmLauncher] = {}


def _launcher(dev: MetalDevice, dtype: np.dtype) -> _GemmLauncher:
    key = (dev.info.index, np.dtype(dtype))
    k = _LAUNCHERS.get(key)
    if k is None:
        k = _LAUNCHERS[key] = _GemmLauncher(dev, np.dtype(dtype))
    return k


def strided_offsets(
    batch: int, a_stride: int, b_stride: int, c_stride: int, bias_stride: int = 0
) -> np.ndarray:
    """``offsets`` for ``gemm``: batch i at (i * a_stride, i * b_stride, i * c_stride, i * bias_stride)."""
    return np.arange(batch, dtype=np.int64)[:, None] * np.array([a_stride, b_stride, c_stride, bias_stride])


def gemm(
    dev: KernelContext | MetalDevice,
    a: MetalArray,
    b: MetalArray,
    m: int,
    n: int,
    k: int,
    *,
    trans_a: bool = False,
    trans_b: bool = False,
    lda: int = 0,
    ldb: int = 0,
    ldc: int = 0,
    offsets: np.ndarray | None = None,
    bias: MetalArray | None = None,
    bias_rows: bool = False,
    alpha: float = 1.0,
    beta: float = 0.0,
    out: MetalArray | None = None,
    out_shape: Sequence[int] | None = None,
) -> MetalArray:
    """C = alpha * op(A) · op(B) + beta * C (+ bias), for every batch, on the device; returns C.

    A is read as a row-major matrix with rows of ``lda`` elements (default: op(A)'s [M, K]
    stored as is, or as [K, M] with ``trans_a``), B likewise with ``ldb``, C [M, N] with rows of
    ``ldc`` (default N). ``offsets`` ([batch, 3 or 4] element offsets of A, B, C and bias per
    batch; see ``strided_offsets``) makes it batched; default one batch at offset 0. ``bias``
    (same dtype) adds bias[m] (``bias_rows``) or bias[n] to every element. ``out`` is written
    (read too when beta != 0), else a new array of ``out_shape`` (default [M, N]) is returned.
    All arrays share A's dtype; sums are in float32.
    """
    dev = device(dev) if isinstance(dev, KernelContext) else dev
    m, n, k = int(m), int(n), int(k)
    lda = lda or (m if trans_a else k)
    ldb = ldb or (k if trans_b else n)
    ldc = ldc or n
    if offsets is None:
        offs = np.zeros((1, 4), np.int64)
    else:
        offs = np.zeros((len(offsets), 4), np.int64)
        offs[:, : np.shape(offsets)[1]] = offsets
    if out is None:
        out = empty(dev, (m, n) if out_shape is None else out_shape, a.dtype)
    batch = len(offs)
    if m == 0 or n == 0 or batch == 0:
        return out
    sam, sak = (1, lda) if trans_a else (lda, 1)
    sbk, sbn = (1, ldb) if trans_b else (ldb, 1)
    mode = 0 if bias is None else 1 if bias_rows else 2
    head = [m, n, k, sam, sak, sbk, sbn, ldc, 1, float(alpha), float(beta), mode]
    launch = _launcher(dev, a.dtype)
    launch(
        a,
        b,
        a if bias is None else bias,
        out,
        offs.astype(np.uint32).ravel(),
        head,
        -(-n // TN),
        -(-m // TM),
        batch,
    )
    return out


def _flat(x: Any, axis: int, what: str) -> tuple[int, int]:
    ax = norm_axis(axis, len(x.shape), "MatMul", what)
    return math.prod(x.shape[:ax]), math.prod(x.shape[ax:])


@table.kernel("MatMul", dtypes=FLOATS)
def matmul(ctx: KernelContext) -> RunFn:
    dev = device(ctx)
    axis_a, axis_b = ctx.args["axis_a"], ctx.args["axis_b"]
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])

    def run(a, b):
        (ra, ca), (rb, cb) = _flat(a, axis_a, "axis_a"), _flat(b, axis_b, "axis_b")
        m, ka = (ca, ra) if trans_a else (ra, ca)
        kb, n = (cb, rb) if trans_b else (rb, cb)
        check(ka == kb, f"MatMul: A {list(a.shape)} gives K={ka} but B {list(b.shape)} gives K={kb}")
        return (gemm(dev, a, b, m, n, ka, trans_a=trans_a, trans_b=trans_b, lda=ca, ldb=cb),)

    return run


@functools.lru_cache(maxsize=256)
def _batch_layout(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], broadcast: bool
) -> tuple[tuple[int, ...], np.ndarray]:
    """(output batch dims, per-batch (A offset, B offset, batch index)) of a BatchMatMul, with the
    cpu's checks."""
    ab, bb = a_shape[:-2], b_shape[:-2]
    if broadcast:
        try:
            batch = np.broadcast_shapes(ab, bb)
        except ValueError:
            check(
                False, f"BatchMatMul: batch dims of A {list(a_shape)} and B {list(b_shape)} do not broadcast"
            )
    else:
        check(
            ab == bb,
            f"BatchMatMul: A {list(a_shape)} and B {list(b_shape)} need equal batch dims without broadcast=1",
        )
        batch = ab
    count = math.prod(batch)
    # Which matrix of A (of B) each output batch reads: broadcasting index grids (host geometry).
    ia = np.broadcast_to(np.arange(math.prod(ab)).reshape(ab), batch).ravel()
    ib = np.broadcast_to(np.arange(math.prod(bb)).reshape(bb), batch).ravel()
    mats = (math.prod(a_shape[-2:]), math.prod(b_shape[-2:]))
    return tuple(int(d) for d in batch), np.stack([ia * mats[0], ib * mats[1], np.arange(count)], axis=1)


@table.kernel("BatchMatMul", dtypes=FLOATS)
def batch_matmul(ctx: KernelContext) -> RunFn:
    dev = device(ctx)
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])
    broadcast = bool(ctx.args["broadcast"])

    def run(a, b):
        check(
            a.ndim >= 2 and b.ndim >= 2,
            f"BatchMatMul: A {list(a.shape)} and B {list(b.shape)} must both be at least 2-D",
        )
        m, ka = (a.shape[-1], a.shape[-2]) if trans_a else a.shape[-2:]
        kb, n = (b.shape[-1], b.shape[-2]) if trans_b else b.shape[-2:]
        check(ka == kb, f"BatchMatMul: A {list(a.shape)} gives K={ka} but B {list(b.shape)} gives K={kb}")
        batch, offs = _batch_layout(tuple(a.shape), tuple(b.shape), broadcast)
        offs = offs * np.array([1, 1, m * n])  # C's matrices are dense, in batch order
        return (
            gemm(
                dev, a, b, m, n, ka, trans_a=trans_a, trans_b=trans_b, offsets=offs, out_shape=(*batch, m, n)
            ),
        )

    return run
