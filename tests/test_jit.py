"""The cpu backend's numba-compiled loops (kaffa_cpu.kernels.jit) against plain numpy, and the
numpy paths that run without numba (KAFFA_DISABLE_JIT=1) through the conformance suite."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from kaffa_cpu.kernels import jit

pytestmark = pytest.mark.skipif(not jit.AVAILABLE, reason="numba is not installed (the jit extra)")


def _depthwise_ref(x, w, b, z, strides, pads_begin, pads_end, dilations, act, lo, hi):
    c = x.shape[0]
    kh, kw = w.shape[1:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (pads_begin[0], pads_end[0]), (pads_begin[1], pads_end[1])))
    oh = (xp.shape[1] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (xp.shape[2] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    y = np.zeros((c, oh, ow)) + b[:, None, None]
    for a, e in itertools.product(range(kh), range(kw)):
        r0, c0 = a * dilations[0], e * dilations[1]
        tap = xp[
            :,
            r0 : r0 + (oh - 1) * strides[0] + 1 : strides[0],
            c0 : c0 + (ow - 1) * strides[1] + 1 : strides[1],
        ]
        y += w[:, a, e, None, None] * tap
    if z is not None:
        y += z
    if act == jit.ACT_RELU:
        y = np.maximum(y, 0)
    elif act == jit.ACT_CLIP:
        y = np.minimum(np.maximum(y, lo), hi)
    return y


GEOMETRIES = [
    # (C, H, W, KH, KW, strides, pads_begin, pads_end, dilations)
    (5, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1), (1, 1)),
    (4, 9, 8, 3, 3, (2, 2), (1, 1), (1, 1), (1, 1)),
    (3, 8, 13, 3, 3, (1, 2), (0, 1), (2, 0), (1, 1)),
    (6, 11, 9, 5, 5, (1, 1), (2, 2), (2, 2), (1, 1)),
    (2, 10, 10, 3, 3, (1, 1), (2, 2), (2, 2), (2, 2)),
    (3, 6, 5, 1, 3, (3, 1), (0, 0), (0, 0), (1, 1)),
    (17, 1, 1, 3, 3, (1, 1), (1, 1), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[:5])) + f"_s{g[5]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [jit.ACT_NONE, jit.ACT_RELU, jit.ACT_CLIP])
@pytest.mark.parametrize("with_z", [False, True])
def test_depthwise_matches_numpy(geometry, dtype, act, with_z):
    c, h, wd, kh, kw, strides, pb, pe, dil = geometry
    rng = np.random.default_rng(len(geometry) + act)
    x = rng.standard_normal((c, h, wd)).astype(dtype)
    w = rng.standard_normal((c, kh, kw)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    want_shape = _depthwise_ref(x, w, b, None, strides, pb, pe, dil, 0, 0, 0).shape
    z = rng.standard_normal(want_shape).astype(dtype) if with_z else None
    want = _depthwise_ref(x, w, b, z, strides, pb, pe, dil, act, -0.5, 0.75)
    y = np.full(want_shape, np.nan, dtype)
    jit.depthwise(x, w, b, z, y, strides, pb, dil, act, -0.5, 0.75)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("act", [jit.ACT_NONE, jit.ACT_RELU, jit.ACT_CLIP])
def test_epilogue_matches_numpy(act):
    rng = np.random.default_rng(act)
    y = rng.standard_normal((6, 37)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    z = rng.standard_normal((6, 37)).astype(np.float32)
    for bias, res in [(b, None), (None, z), (b, z)]:
        want = y.astype(np.float64)
        if bias is not None:
            want = want + bias[:, None]
        if res is not None:
            want = want + res
        if act == jit.ACT_RELU:
            want = np.maximum(want, 0)
        elif act == jit.ACT_CLIP:
            want = np.clip(want, -0.25, 0.5)
        got = y.copy()
        jit.epilogue(got, bias, res, act, -0.25, 0.5)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_numpy_paths_pass_conformance_without_numba():
    """With KAFFA_DISABLE_JIT=1 the Conv and FusedConv kernels take their numpy paths (and no
    Winograd); they must pass the same conformance cases."""
    env = {**os.environ, "KAFFA_DISABLE_JIT": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "from kaffa_cpu.kernels import jit; print(jit.AVAILABLE)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"
    ops = ["Conv", "FusedConv"]
    cmd = [sys.executable, "-m", "kaffa.cli", "conformance", "--backend", "cpu"]
    for op in ops:
        cmd += ["--op", op]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "conformance: OK" in run.stdout


def test_conv_scratch_buffers_never_leak_between_paddings():
    """Convolutions whose padded inputs have the same shape but the image at a different offset
    (pads 0/2 and 1/1) or of a different size (5x5 with pads 1/1, 4x4 with pads 1/2) share the
    reused-buffer pool: each must still see a zero border."""
    from kaffa import Workspace
    from kaffa.core import Net

    def conv_ref(x, w, pads):  # pads: top, left, bottom, right
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        oh, ow = xp.shape[2] - 2, xp.shape[3] - 2
        return sum(
            np.einsum("nchw,mc->nmhw", xp[:, :, a : a + oh, e : e + ow], w[:, :, a, e])
            for a, e in itertools.product(range(3), range(3))
        )

    rng = np.random.default_rng(3)
    ws = Workspace()
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x4 = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    ws.feed_blob("x", x)
    ws.feed_blob("x4", x4)
    ws.feed_blob("w", w)
    net = Net("paddings")
    net.Conv(["x", "w"], "y_a", pads=[0, 0, 2, 2])
    net.Conv(["x", "w"], "y_b", pads=[1, 1, 1, 1])
    net.Conv(["x4", "w"], "y_c", pads=[1, 1, 2, 2])
    ws.create_net(net)
    cases = (("y_a", x, [0, 0, 2, 2]), ("y_b", x, [1, 1, 1, 1]), ("y_c", x4, [1, 1, 2, 2]))
    for _ in range(3):  # later runs reuse the buffers the first one returned
        ws.run_net("paddings")
        for out, inp, pads in cases:
            np.testing.assert_allclose(ws.fetch_blob(out), conv_ref(inp, w, pads), rtol=1e-5, atol=1e-5)


WINOGRAD_SHAPES = [
    # (C, M, H, W, pads t, l, b, r): sizes inside the Winograd window (14x14 .. 28x28 outputs),
    # odd ones (a half tile at the edge) and asymmetric padding
    (3, 5, 14, 14, (1, 1, 1, 1)),
    (4, 6, 15, 17, (1, 1, 1, 1)),
    (2, 3, 18, 16, (0, 2, 1, 0)),
    (5, 4, 30, 30, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("shape", WINOGRAD_SHAPES, ids=lambda s: "x".join(map(str, s[:4])))
@pytest.mark.parametrize("act", [jit.ACT_NONE, jit.ACT_RELU, jit.ACT_CLIP])
def test_winograd_matches_im2col(shape, act):
    """A read-only 3x3 filter takes the Winograd path; the same filter writable takes im2col."""
    from kaffa.ops.geometry import Window
    from kaffa_cpu.kernels import nn

    c, m, h, wd, pads = shape
    rng = np.random.default_rng(c * m)
    x = rng.standard_normal((2, c, h, wd)).astype(np.float32)
    frozen = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    frozen.flags.writeable = False
    b = rng.standard_normal(m).astype(np.float32)
    win = Window((3, 3), (1, 1), (1, 1), pads[:2], pads[2:])
    outs, begins, ends = win.resolve((h, wd))
    assert nn._winograd_ok(frozen, win, outs)
    z = rng.standard_normal((2, m, *outs)).astype(np.float32)
    args = (1, win, outs, begins, ends, (act, -0.5, 0.75))
    for _ in range(2):  # the second run uses the cached filter transform
        got = nn._conv_nchw(x, frozen, b, z, *args)
        want = nn._conv_nchw(x, frozen.copy(), b, z, *args)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_winograd_only_for_frozen_filters():
    """A writable filter may change in place between runs, so it never uses a cached transform."""
    from kaffa.ops.geometry import Window
    from kaffa_cpu.kernels import nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 16, 16)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    win = Window((3, 3), (1, 1), (1, 1), (1, 1), (1, 1))
    outs, begins, ends = win.resolve((16, 16))
    assert not nn._winograd_ok(w, win, outs)
    first = nn._conv_nchw(x, w, None, None, 1, win, outs, begins, ends, (0, 0.0, 0.0))
    w *= 2  # in place, as a training step may
    second = nn._conv_nchw(x, w, None, None, 1, win, outs, begins, ends, (0, 0.0, 0.0))
    np.testing.assert_allclose(second, 2 * first, rtol=1e-5, atol=1e-5)


def test_predictor_freezes_only_its_own_parameters():
    import kaffa
    from kaffa import Workspace
    from kaffa.checkpoint import fill_op
    from kaffa.core import Net
    from kaffa.proto import NetDef

    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    init = NetDef(name="init")
    init.op.append(fill_op("w", w))
    net = Net("pred")
    net.Conv(["x", "w"], "y", pad=1)
    pred = net.Proto()
    pred.external_input[:] = ["x", "w"]
    pred.external_output[:] = ["y"]
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    own = kaffa.Predictor(init, pred)
    assert not own.workspace._blobs["w"].flags.writeable
    shared = Workspace()
    kaffa.Predictor(init, pred, workspace=shared)
    assert shared._blobs["w"].flags.writeable  # training may share this workspace
    (y,) = own.run([x])
    assert y.shape == (1, 4, 16, 16)
