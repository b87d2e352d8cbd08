"""numba-compiled loops for the cpu Conv paths that numpy cannot do in one pass.

Optional: with numba installed (``pip install 'kaffa[jit]'``) ``AVAILABLE`` is true and the Conv
kernels in nn.py use these; without it they use their numpy paths, which compute the same values.
Each function works on 2-D NCHW float32/float64 data, one sample at a time: where numpy makes one
memory pass per ufunc over whole tensors, these read each input once and write each output once,
working on a channel at a time while it is in cache.

* ``depthwise``: a depthwise convolution (one KH x KW filter per channel) with the bias, an
  optional residual and the activation applied before the row is stored.
* ``epilogue``: bias + optional residual + activation over a GEMM's output, in place.
* ``winograd_input`` / ``winograd_output``: the tile transforms of Winograd F(2x2, 3x3) (the
  output one with the epilogue applied on the way out).

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


def _depthwise(x, wt, bias, z, y, sh, sw, ph, pw, dh, dw, act, lo, hi, has_z):  # pragma: no cover
    c, h, w = x.shape
    _, oh_n, ow_n = y.shape
    kh_n, kw_n = wt.shape[1], wt.shape[2]
    # Each channel is copied into zero-bordered scratch planes that stay in cache (no padded
    # copy of the tensor), one per (row, column) phase of the stride: padded cell (r, q) goes to
    # plane (r % sh, q % sw) at (r // sh, q // sw). Then every tap reads one plane shifted by a
    # constant, and the output rows, each padded to the plane width wq, form one long vector:
    # each tap is one long vectorized loop, even for 7x7 maps. Columns past ow_n are never
    # stored; a spare row lets the last taps run past the end. Every channel writes the same
    # interior cells, so the border stays zero from the one allocation.
    hq = max((ph + h + sh - 1) // sh, ((kh_n - 1) * dh) // sh + oh_n) + 1
    wq = max((pw + w + sw - 1) // sw, ((kw_n - 1) * dw) // sw + ow_n)
    plane = hq * wq
    buf = np.zeros(sh * sw * plane, x.dtype)  # the phase planes, flat (1-D slices stay views)
    n = oh_n * wq
    acc = np.empty(n, x.dtype)
    for ch in range(c):
        for pr in range(sh):
            i0, row0, rows = _phase_span(ph, pr, sh, h)
            if rows == 0:
                continue
            for pc in range(sw):
                j0, col0, cols = _phase_span(pw, pc, sw, w)
                if cols == 0:
                    continue
                base = (pr * sw + pc) * plane + i0 * wq + j0
                for r in range(rows):
                    dst = buf[base + r * wq :]
                    for q in range(cols):
                        dst[q] = x[ch, row0 + r * sh, col0 + q * sw]
        acc[:] = bias[ch]
        for kh in range(kh_n):
            r = kh * dh
            for kw in range(kw_n):
                q = kw * dw
                tap = buf[((r % sh) * sw + q % sw) * plane + (r // sh) * wq + q // sw :]
                wv = wt[ch, kh, kw]
                for i in range(n):
                    acc[i] += wv * tap[i]
        # Residual and activation on the way out, written out here rather than through _store:
        # its three row views per call doubled the time on 7x7 maps.
        out = y[ch]
        for oh in range(oh_n):
            base = oh * wq
            for i in range(ow_n):
                v = acc[base + i]
                if has_z:
                    v += z[ch, oh, i]
                if act == 1:
                    v = v if v > 0 else v * 0  # v * 0 keeps NaN, as np.maximum does
                elif act == 2:
                    v = min(max(v, lo), hi)
                out[oh, i] = v


def _phase_span(pad, phase, stride, size):  # pragma: no cover - compiled, inlined
    """Along one axis of a depthwise input padded by ``pad``: the first cell of phase plane
    ``phase`` that holds data, the input index that lands there, and how many input cells the
    plane takes (0 if none)."""
    first = (pad - phase + stride - 1) // stride if pad > phase else 0
    start = first * stride + phase - pad
    return first, start, max((size - start + stride - 1) // stride, 0)


def _epilogue(y, bias, z, act, lo, hi, has_bias, has_z):  # pragma: no cover - compiled
    m, n = y.shape
    for i in range(m):
        row = y[i]
        if has_bias:
            b = bias[i]
            for j in range(n):
                row[j] += b
        _store(row, row, z[i], n, has_z, act, lo, hi)


def _store(src, dst, zr, n, has_z, act, lo, hi):  # pragma: no cover - compiled, inlined
    # dst[:n] = act(src[:n] (+ zr[:n])): each branch its own loop, so each one vectorizes.
    if has_z:
        for i in range(n):
            dst[i] = src[i] + zr[i]
    else:
        for i in range(n):
            dst[i] = src[i]
    if act == 1:
        for i in range(n):
            v = dst[i]
            dst[i] = v if v > 0 else v * 0  # v * 0 keeps NaN, as np.maximum does
    elif act == 2:
        for i in range(n):
            dst[i] = min(max(dst[i], lo), hi)


def _wino_input(xp, v, th, tw):  # pragma: no cover - compiled
    # Winograd F(2x2, 3x3) input transform V = Bᵀ d B of every 4x4 tile d (stride 2) of the
    # padded sample xp [C, 2*th + 2, 2*tw + 2], into v [16, C, th * tw]. A row of tiles at a
    # time through views (plain loop counters index them: no negative-index checks, vectorizable).
    c = xp.shape[0]
    for ch in range(c):
        for ty in range(th):
            x0, x1, x2, x3 = xp[ch, 2 * ty], xp[ch, 2 * ty + 1], xp[ch, 2 * ty + 2], xp[ch, 2 * ty + 3]
            out = v[:, ch, ty * tw : (ty + 1) * tw]
            e0, o0, e1, o1 = x0[0::2], x0[1::2], x0[2::2], x0[3::2]
            f0, p0, f1, p1 = x1[0::2], x1[1::2], x1[2::2], x1[3::2]
            g0, q0, g1, q1 = x2[0::2], x2[1::2], x2[2::2], x2[3::2]
            h0, r0, h1, r1 = x3[0::2], x3[1::2], x3[2::2], x3[3::2]
            for t in range(tw):
                # Bᵀ d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3); columns j = 0..3 of the tile
                # are the even/odd views at t and t + 1.
                a0, a1, a2, a3 = e0[t] - g0[t], o0[t] - q0[t], e1[t] - g1[t], o1[t] - q1[t]
                b0, b1, b2, b3 = f0[t] + g0[t], p0[t] + q0[t], f1[t] + g1[t], p1[t] + q1[t]
                c0, c1, c2, c3 = g0[t] - f0[t], q0[t] - p0[t], g1[t] - f1[t], q1[t] - p1[t]
                d0, d1, d2, d3 = f0[t] - h0[t], p0[t] - r0[t], f1[t] - h1[t], p1[t] - r1[t]
                # (Bᵀ d) B: the same combination along each row
                out[0, t], out[1, t], out[2, t], out[3, t] = a0 - a2, a1 + a2, a2 - a1, a1 - a3
                out[4, t], out[5, t], out[6, t], out[7, t] = b0 - b2, b1 + b2, b2 - b1, b1 - b3
                out[8, t], out[9, t], out[10, t], out[11, t] = c0 - c2, c1 + c2, c2 - c1, c1 - c3
                out[12, t], out[13, t], out[14, t], out[15, t] = d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _wino_output(mt, y, bias, z, act, lo, hi, has_z, tw):  # pragma: no cover - compiled
    # Winograd F(2x2, 3x3) output transform Y = Aᵀ m A of every tile's 16 products mt [16, M, T]
    # into y [M, OH, OW], with the bias, the residual z and the activation on the way out. A row
    # of tiles at a time through views, as _wino_input; odd sizes drop the last row / column.
    m_n, oh_n, ow_n = y.shape
    th = mt.shape[2] // tw
    rowbuf = np.empty((2, 2 * tw), y.dtype)
    for m in range(m_n):
        b = bias[m]
        for ty in range(th):
            s = mt[:, m, ty * tw : (ty + 1) * tw]
            top, bot = rowbuf[0], rowbuf[1]
            for t in range(tw):
                # Aᵀ m: rows (m0 + m1 + m2, m1 - m2 - m3) per column j, then the same along rows
                u0 = s[0, t] + s[4, t] + s[8, t]
                u1 = s[1, t] + s[5, t] + s[9, t]
                u2 = s[2, t] + s[6, t] + s[10, t]
                u3 = s[3, t] + s[7, t] + s[11, t]
                w0 = s[4, t] - s[8, t] - s[12, t]
                w1 = s[5, t] - s[9, t] - s[13, t]
                w2 = s[6, t] - s[10, t] - s[14, t]
                w3 = s[7, t] - s[11, t] - s[15, t]
                top[2 * t] = u0 + u1 + u2 + b
                top[2 * t + 1] = u1 - u2 - u3 + b
                bot[2 * t] = w0 + w1 + w2 + b
                bot[2 * t + 1] = w1 - w2 - w3 + b
            for k in range(2):
                i = 2 * ty + k
                if i < oh_n:
                    _store(rowbuf[k], y[m, i], z[m, i], ow_n, has_z, act, lo, hi)


if AVAILABLE:
    _store = numba.njit(cache=CACHE, inline="always", fastmath={"contract"}, boundscheck=False)(_store)
    _phase_span = numba.njit(cache=CACHE, inline="always")(_phase_span)
    _DEPTHWISE = _compile(_depthwise)
    _EPILOGUE = _compile(_epilogue)
    _WINO_INPUT = _compile(_wino_input)
    _WINO_OUTPUT = _compile(_wino_output)


def winograd_input(xp: np.ndarray, v: np.ndarray, tiles: tuple[int, int]) -> None:
    """v [16, C, TH * TW] = Bᵀ d B for the 4x4 tiles (stride 2) of the padded sample xp
    [C, 2 * TH + 2, 2 * TW + 2] (Winograd F(2x2, 3x3))."""
    _WINO_INPUT(xp, v, *tiles)


def winograd_output(
    mt: np.ndarray,
    y: np.ndarray,
    bias: np.ndarray,
    z: np.ndarray | None,
    tw: int,
    act: int,
    lo: float,
    hi: float,
) -> None:
    """y [M, OH, OW] = act(Aᵀ m A + bias (+ z)) from the tile products mt [16, M, TH * TW]."""
    t = y.dtype.type
    _WINO_OUTPUT(mt, y, bias, y if z is None else z, act, t(lo), t(hi), z is not None, tw)


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
    _DEPTHWISE(x, w, bias, zz, y, *strides, *pads, *dilations, act, t(lo), t(hi), z is not None)


def epilogue(
    y: np.ndarray, bias: np.ndarray | None, z: np.ndarray | None, act: int, lo: float, hi: float
) -> None:
    """In place on y [M, P]: y = act(y + bias[:, None] (+ z [M, P]))."""
    b = bias if bias is not None else y[:, 0]
    zz = z if z is not None else y
    t = y.dtype.type
    _EPILOGUE(y, b, zz, act, t(lo), t(hi), bias is not None, z is not None)
