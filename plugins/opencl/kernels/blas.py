"""GEMM on the opencl device (cl/blas.cl) and the ops that are one GEMM: MatMul, BatchMatMul.

``Gemm`` is the host side of the kernel: any M, N, K, transposes and other layouts as element
strides, a batch whose per-entry offsets come from a small table (strided, broadcast and
per-group batches alike), alpha/beta with a separate C0 input (outputs are always new buffers)
and an optional bias along rows or columns. FC and convolution (kaffa_opencl.kernels.nn) use it.

Tile configurations (measured on PoCL 3.0, AMD EPYC, 2 cores; see cl/blas.cl for the design):
float32 and float16 (computed in float) use 256x128 tiles with K steps of 128 and 4x16 register
blocks for big products, 32x64x64 with 4x16 for small ones; float64 128x128x128 / 32x64x64 with
4x8 blocks (local memory holds 512 KiB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa.schema import check, norm_axis
from kaffa_opencl.device import OpenCLDevice
from kaffa_opencl.kernels.common import FLOATS, PROGRAMS, Consts, Launcher, device, empty, type_options

table = KernelTable("opencl")

# (TM, TN, TK, RM, RN) by compute type: big tiles, small tiles.
_CONFIGS = {
    "float": ((256, 128, 128, 4, 16), (32, 64, 64, 4, 16)),
    "double": ((128, 128, 128, 4, 8), (32, 64, 64, 4, 8)),
}
_BIG_M, _BIG_N = 256, 128  # products at least this big take the big tiles


class Gemm:
    """C = alpha * op(A) · op(B) + beta * C0 (+ bias) for one dtype on one device.

    Each instance has its own kernel objects (they hold their arguments), so an op builds one."""

    def __init__(self, dev: OpenCLDevice, dtype: Any):
        self.dev = dev
        self.dtype = np.dtype(dtype)
        kind = "double" if self.dtype == np.float64 else "float"
        self.arith = np.float64 if kind == "double" else np.float32
        self.configs = []
        for tm, tn, tk, rm, rn in _CONFIGS[kind]:
            opts = type_options(self.dtype, TM=tm, TN=tn, TK=tk, RM=rm, RN=rn)
            prg = PROGRAMS.get(dev, "blas", (*opts, "-cl-mad-enable"))
            self.configs.append(((tm, tn), Launcher(dev, prg, "gemm")))
        self.consts = Consts(dev)

    def __call__(
        self,
        a: Any,
        b: Any,
        m: int,
        n: int,
        k: int,
        a_strides: tuple[int, int],
        b_strides: tuple[int, int],
        *,
        out: Any = None,
        out_shape: Sequence[int] | None = None,
        c_strides: tuple[int, int] | None = None,
        offsets: np.ndarray | None = None,
        batch: int = 1,
        alpha: float = 1.0,
        beta: float = 0.0,
        c0: Any = None,
        bias: Any = None,
        bias_rows: bool = False,
    ) -> Any:
        """Element (i, j) of op(A) is at a[i * a_strides[0] + j * a_strides[1]] (plus the batch
        entry's offset), and so for op(B) and C (``c_strides`` default: row-major [M, N]).
        ``offsets`` is int64 [batch, 4]: (A, B, C, bias) offsets per batch entry; default: none
        for a single product, else contiguous batches of A, B and C. Writes ``out`` (allocated
        with ``out_shape`` when not given) and returns it."""
        if out is None:
            out = empty(self.dev, out_shape if out_shape is not None else (m, n), self.dtype)
        if c_strides is None:
            c_strides = (n, 1)
        if offsets is None:
            idx = np.arange(batch, dtype=np.int64)
            offsets = np.stack([idx * m * k, idx * k * n, idx * m * n, idx * 0], axis=1)
        if m <= 0 or n <= 0 or batch <= 0:
            return out
        if k <= 0:  # an empty sum: C = beta * C0 + bias through the same kernel, K = 0
            k = 0
        (tm, tn), knl = self.configs[0 if m >= _BIG_M and n >= _BIG_N else 1]
        i64 = np.int64
        knl(
            (-(-n // tn), -(-m // tm), batch),
            a,
            b,
            c0,
            bias,
            out,
            self.consts(np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)),
            np.int32(m),
            np.int32(n),
            np.int32(k),
            i64(a_strides[0]),
            i64(a_strides[1]),
            i64(b_strides[0]),
            i64(b_strides[1]),
            i64(c_strides[0]),
            i64(c_strides[1]),
            self.arith(alpha),
            self.arith(beta),
            np.int32(bool(bias_rows)),
            local=(1, 1, 1),
        )
        return out


_GEMMS: dict[tuple[int, str], Gemm] = {}


def gemm(
    dev_or_ctx: OpenCLDevice | KernelContext,
    a: Any,
    b: Any,
    trans_a: bool = False,
    trans_b: bool = False,
    alpha: float = 1.0,
    beta: float = 0.0,
    c: Any = None,
) -> Any:
    """alpha * op(a) · op(b) + beta * c for 2-D pyopencl arrays, as a new array (the convenience
    entry point; kernels hold their own ``Gemm``)."""
    dev = dev_or_ctx if isinstance(dev_or_ctx, OpenCLDevice) else device(dev_or_ctx)
    key = (dev.info.index, np.dtype(a.dtype).str)
    g = _GEMMS.get(key)
    if g is None:
        g = _GEMMS[key] = Gemm(dev, a.dtype)
    (ar, ac), (br, bc) = a.shape, b.shape
    m, k = (ac, ar) if trans_a else (ar, ac)
    kb, n = (bc, br) if trans_b else (br, bc)
    if k != kb:
        raise ValueError(f"gemm: op(A) is {m}x{k} but op(B) is {kb}x{n}")
    return g(
        a,
        b,
        m,
        n,
        k,
        (1, ac) if trans_a else (ac, 1),
        (1, bc) if trans_b else (bc, 1),
        alpha=alpha,
        beta=beta if c is not None else 0.0,
        c0=c if c is not None and beta != 0 else None,
    )


# -- MatMul, BatchMatMul ----------------------------------------------------------------------------


@table.kernel("MatMul", dtypes=FLOATS)
def matmul(ctx: KernelContext) -> RunFn:
    axis_a, axis_b = ctx.args["axis_a"], ctx.args["axis_b"]
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])
    g = Gemm(device(ctx), ctx.dtype or np.float32)

    def run(a, b):
        ax = norm_axis(axis_a, a.ndim, "MatMul", "axis_a")
        bx = norm_axis(axis_b, b.ndim, "MatMul", "axis_b")
        ar, ac = math.prod(a.shape[:ax]), math.prod(a.shape[ax:])
        br, bc = math.prod(b.shape[:bx]), math.prod(b.shape[bx:])
        m, k = (ac, ar) if trans_a else (ar, ac)
        kb, n = (bc, br) if trans_b else (br, bc)
        check(k == kb, f"MatMul: A {list(a.shape)} gives K={k} but B {list(b.shape)} gives K={kb}")
        y = g(
            a,
            b,
            m,
            n,
            k,
            (1, ac) if trans_a else (ac, 1),
            (1, bc) if trans_b else (bc, 1),
            out_shape=(m, n),
        )
        return (y,)

    return run


def _batch_offsets(a_batch: tuple[int, ...], b_batch: tuple[int, ...], a_size: int, b_size: int, c_size: int):
    """(batch shape, int64 [batch, 4] offsets) for numpy-broadcast batch dims."""
    shape = np.broadcast_shapes(a_batch, b_batch)
    count = math.prod(shape)
    ia = np.broadcast_to(np.arange(math.prod(a_batch), dtype=np.int64).reshape(a_batch), shape)
    ib = np.broadcast_to(np.arange(math.prod(b_batch), dtype=np.int64).reshape(b_batch), shape)
    ic = np.arange(count, dtype=np.int64)
    offs = np.stack([ia.reshape(-1) * a_size, ib.reshape(-1) * b_size, ic * c_size, ic * 0], axis=1)
    return tuple(int(d) for d in shape), offs


@table.kernel("BatchMatMul", dtypes=FLOATS)
def batch_matmul(ctx: KernelContext) -> RunFn:
    trans_a, trans_b = bool(ctx.args["trans_a"]), bool(ctx.args["trans_b"])
    broadcast = bool(ctx.args["broadcast"])
    g = Gemm(device(ctx), ctx.dtype or np.float32)
    cache: dict[tuple, tuple] = {}

    def run(a, b):
        sa, sb = tuple(a.shape), tuple(b.shape)
        check(
            len(sa) >= 2 and len(sb) >= 2,
            f"BatchMatMul: A {list(sa)} and B {list(sb)} must both be at least 2-D",
        )
        m, k = (sa[-1], sa[-2]) if trans_a else (sa[-2], sa[-1])
        kb, n = (sb[-1], sb[-2]) if trans_b else (sb[-2], sb[-1])
        check(k == kb, f"BatchMatMul: A {list(sa)} gives K={k} but B {list(sb)} gives K={kb}")
        key = (sa, sb)
        hit = cache.get(key)
        if hit is None:
            if broadcast:
                try:
                    np.broadcast_shapes(sa[:-2], sb[:-2])
                except ValueError:
                    check(False, f"BatchMatMul: batch dims of A {list(sa)} and B {list(sb)} do not broadcast")
            else:
                check(
                    sa[:-2] == sb[:-2],
                    f"BatchMatMul: A {list(sa)} and B {list(sb)} need equal batch dims without broadcast=1",
                )
            hit = _batch_offsets(sa[:-2], sb[:-2], m * k, k * n, m * n)
            if len(cache) > 16:
                cache.clear()
            cache[key] = hit
        batch, offs = hit
        y = g(
            a,
            b,
            m,
            n,
            k,
            (1, sa[-1]) if trans_a else (sa[-1], 1),
            (1, sb[-1]) if trans_b else (sb[-1], 1),
            out_shape=(*batch, m, n),
            offsets=offs,
            batch=len(offs),
        )
        return (y,)

    return run
