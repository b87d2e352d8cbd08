"""numba-compiled loops for the cpu Conv paths that numpy cannot do in one pass.

Optional: with numba installed (``pip install 'kaffa[jit]'``) ``AVAILABLE`` is true and the Conv
kernels in nn.py use these; without it they use their numpy paths, which compute the same values.
Each function works on 2-D NCHW float32/float64 data, one sample at a time: where numpy makes one
memory pass per ufunc over whole tensors, these read each input once and write each output once,
working on a channel at a time while it is in cache.

* ``depthwise``: a depthwise convolution (one KH x KW filter per channel) with the bias, an
  optional residual and the activation applied before the row is stored.
* ``epilogue``: bias + optional residual + activation over a GEMM's output, in place.

Activation codes: 0 none, 1 Relu (max(y, 0)), 2 Clip (min(max(y, lo), hi)).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

ACT_NONE, ACT_RELU, ACT_CLIP = 0, 1, 2
CACHE = os.environ.get("KAFFA_JIT_CACHE", "1") != "0"

try:  # numba is the `jit` extra; kaffa runs without it
    if os.environ.get("KAFFA_DISABLE_JIT", "") not in ("", "0"):
        raise ImportError("KAFFA_DISABLE_JIT is set")
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised by the no-numba test run
    numba = None
    AVAILABLE = False


def _compile(fn: Any) -> Any:
    # Serial on purpose: numba's parallel pools (OpenMP or workqueue) and OpenBLAS's threads take
    # turns on the same cores between ops; measured on ResNet-18 / MobileNetV2 (2 cores), spinning
    # pools made whole nets 3-10x slower and passive ones still lost to serial loops.
    # fastmath "contract" only: lets LLVM emit fused multiply-adds, nothing that reorders sums.
    return numba.njit(parallel=False, cache=CACHE, fastmath={"contract"}, nogil=True, boundscheck=False)(fn)


def _make_window(pool: bool) -> Any:
    # ``pool`` is a closure constant: numba compiles each variant with the other's loops removed.
    def window(x, wt, bias, z, y, sh, sw, ph, pw, dh, dw, act, lo, hi, has_z, pad):  # pragma: no cover
        c, h, w = x.shape
        _, oh_n, ow_n = y.shape
        kh_n, kw_n = wt.shape[1], wt.shape[2]
        # A depthwise convolution (pool=False: the taps times wt, summed, plus bias) or a max pool
        # (pool=True: wt only gives the window size). Each channel is copied into scratch planes
        # bordered with ``pad`` that stay in cache (no padded copy of the tensor), one per (row,
        # column) phase of the stride: padded cell (r, q) goes to plane (r % sh, q % sw) at
        # (r // sh, q // sw). Then every tap reads one plane shifted by a constant, and the output
        # rows, each padded to the plane width wq, form one long vector: each tap is one long
        # vectorized loop, even for 7x7 maps. Columns past ow_n are never stored; a spare row lets
        # the last taps run past the end. Every channel writes the same interior cells, so the
        # border keeps ``pad`` from the one allocation.
        hq = max((ph + h + sh - 1) // sh, ((kh_n - 1) * dh) // sh + oh_n) + 1
        wq = max((pw + w + sw - 1) // sw, ((kw_n - 1) * dw) // sw + ow_n)
        plane = hq * wq
        buf = np.full(sh * sw * plane, pad, x.dtype)  # the phase planes, flat (1-D slices stay views)
        n = oh_n * wq
        acc = np.empty(n, x.dtype)
        for ch in range(c):
            for pr in range(sh):
                i0 = (ph - pr + sh - 1) // sh if ph > pr else 0
                row0 = i0 * sh + pr - ph
                if row0 >= h:
                    continue
                rows = (h - row0 + sh - 1) // sh
                for pc in range(sw):
                    j0 = (pw - pc + sw - 1) // sw if pw > pc else 0
                    col0 = j0 * sw + pc - pw
                    if col0 >= w:
                        continue
                    cols = (w - col0 + sw - 1) // sw
                    base = (pr * sw + pc) * plane + i0 * wq + j0
                    for r in range(rows):
                        dst = buf[base + r * wq :]
                        for q in range(cols):
                            dst[q] = x[ch, row0 + r * sh, col0 + q * sw]
            if pool:
                acc[:] = pad
            else:
                acc[:] = bias[ch]
            for kh in range(kh_n):
                r = kh * dh
                for kw in range(kw_n):
                    q = kw * dw
                    tap = buf[((r % sh) * sw + q % sw) * plane + (r // sh) * wq + q // sw :]
                    if pool:
                        for i in range(n):
                            v = tap[i]
                            if v > acc[i] or v != v:  # NaN wins, as np.maximum
                                acc[i] = v
                    else:
                        wv = wt[ch, kh, kw]
                        for i in range(n):
                            acc[i] += wv * tap[i]
            # Residual and activation on the way out, each branch its own loop (vectorizable).
            for oh in range(oh_n):
                row = acc[oh * wq :]
                out = y[ch, oh]
                if has_z:
                    zr = z[ch, oh]
                    for i in range(ow_n):
                        out[i] = row[i] + zr[i]
                else:
                    for i in range(ow_n):
                        out[i] = row[i]
                if act == 1:
                    for i in range(ow_n):
                        v = out[i]
                        out[i] = v if v > 0 else v * 0  # v * 0 keeps NaN, as np.maximum does
                elif act == 2:
                    for i in range(ow_n):
                        out[i] = min(max(out[i], lo), hi)

    return window


def _epilogue(y, bias, z, act, lo, hi, has_bias, has_z):  # pragma: no cover - compiled
    m, n = y.shape
    for i in range(m):
        row = y[i]
        if has_bias:
            b = bias[i]
            for j in range(n):
                row[j] += b
        if has_z:
            zr = z[i]
            for j in range(n):
                row[j] += zr[j]
        if act == 1:
            for j in range(n):
                row[j] = max(row[j], 0)
        elif act == 2:
            for j in range(n):
                row[j] = min(max(row[j], lo), hi)


if AVAILABLE:
    _DEPTHWISE = _compile(_make_window(False))
    _MAX_POOL = _compile(_make_window(True))
    _EPILOGUE = _compile(_epilogue)


def depthwise(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    z: np.ndarray | None,
    y: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
    act: int,
    lo: float,
    hi: float,
) -> None:
    """y [C, OH, OW] = act(depthwise(x [C, H, W], w [C, KH, KW]) + bias [C] (+ z [C, OH, OW])),
    ``pads`` the top and left padding (the output size fixes the rest)."""
    zz = y if z is None else z
    t = y.dtype.type  # bounds in the data's dtype: float32 data stays in float32 arithmetic
    _DEPTHWISE(x, w, bias, zz, y, *strides, *pads, *dilations, act, t(lo), t(hi), z is not None, t(0))


def max_pool(
    x: np.ndarray,
    y: np.ndarray,
    kernels: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int],
    dilations: tuple[int, int],
) -> None:
    """y [C, OH, OW] = the max of each 2-D window of ``x`` [C, H, W] padded with -inf (``pads``:
    top and left; the output size fixes the rest)."""
    t = y.dtype.type
    shape = np.empty((1, *kernels), y.dtype)  # only its shape is read: the window size
    args = (*strides, *pads, *dilations, ACT_NONE, t(0), t(0), False, t(-np.inf))
    _MAX_POOL(x, shape, y[:, 0, 0], y, y, *args)


def epilogue(
    y: np.ndarray, bias: np.ndarray | None, z: np.ndarray | None, act: int, lo: float, hi: float
) -> None:
    """In place on y [M, P]: y = act(y + bias[:, None] (+ z [M, P]))."""
    b = bias if bias is not None else y[:, 0]
    zz = z if z is not None else y
    _EPILOGUE(y, b, zz, act, lo, hi, bias is not None, z is not None)
