"""The cpu kernels' tricky semantics, against naive loops written here (not the conformance
reference, so that the two are independent checks)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import kaffa
from kaffa.core import DeviceOption
from kaffa.errors import ShapeError


def run_op(op: str, inputs: list, num_outputs: int = 1, ws: kaffa.Workspace | None = None, **args):
    """Run one op on cpu and return its outputs as a list."""
    ws = ws or kaffa.Workspace("cpu-kernels")
    names = [f"in{i}" for i in range(len(inputs))]
    for n, x in zip(names, inputs):
        ws.feed_blob(n, x)
    outs = [f"out{j}" for j in range(num_outputs)]
    net = kaffa.Net(op)
    getattr(net, op)(names, outs, **args)
    ws.create_net(net, overwrite=True)
    ws.run_net(op)
    return [ws.fetch_blob(o) for o in outs]


# -- naive references --------------------------------------------------------------------------------


def naive_conv(x, w, b, stride, pads_begin, dilation, group, out_sizes):
    """NCHW N-d convolution, one output pixel at a time. Zero padding of pads_begin at the start;
    out_sizes decides how far the windows go."""
    n = x.shape[0]
    m, cg = w.shape[:2]
    kern = w.shape[2:]
    mg = m // group
    y = np.zeros((n, m, *out_sizes))
    for pos in itertools.product(*(range(o) for o in out_sizes)):
        for g in range(group):
            for oc in range(g * mg, (g + 1) * mg):
                acc = 0.0
                for tap in itertools.product(*(range(k) for k in kern)):
                    idx = [
                        p * s - pb + t * d for p, s, pb, t, d in zip(pos, stride, pads_begin, tap, dilation)
                    ]
                    if all(0 <= i < size for i, size in zip(idx, x.shape[2:])):
                        acc = (
                            acc
                            + x[(slice(None), slice(g * cg, (g + 1) * cg), *idx)] @ w[(oc, slice(None), *tap)]
                        )
                y[(slice(None), oc, *pos)] = acc + (0 if b is None else b[oc])
    return y


def naive_pool(x, kernel, stride, pads_begin, out_sizes, mode, divisor_hi=None):
    """NCHW pooling over the cells inside the image; ``divisor_hi`` (per axis) makes average count
    every cell in [-pad_begin, divisor_hi) instead."""
    y = np.zeros((*x.shape[:2], *out_sizes))
    for pos in itertools.product(*(range(o) for o in out_sizes)):
        starts = [p * s - pb for p, s, pb in zip(pos, stride, pads_begin)]
        ranges = [range(max(st, 0), min(st + k, size)) for st, k, size in zip(starts, kernel, x.shape[2:])]
        cells = np.stack([x[(slice(None), slice(None), *i)] for i in itertools.product(*ranges)], -1)
        if mode == "max":
            y[(slice(None), slice(None), *pos)] = cells.max(-1)
        else:
            if divisor_hi is None:
                count = cells.shape[-1]
            else:
                count = math.prod(min(st + k, hi) - st for st, k, hi in zip(starts, kernel, divisor_hi))
            y[(slice(None), slice(None), *pos)] = cells.sum(-1) / count
    return y


# -- Conv --------------------------------------------------------------------------------------------


def test_conv_groups_dilation_stride_matches_naive(rng):
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    (y,) = run_op("Conv", [x, w, b], group=2, strides=[2, 1], dilations=[2, 3], pads=[1, 2, 0, 1])
    # out = (size + pads - extent) // stride + 1: H (9+1+0-5)//2+1 = 3, W (8+2+1-4)//1+1 = 8
    want = naive_conv(x, w, b, (2, 1), (1, 2), (2, 3), 2, (3, 8))
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_conv_1d_and_3d_match_naive(rng):
    x1, w1 = rng.standard_normal((2, 3, 11)), rng.standard_normal((4, 3, 3))
    (y1,) = run_op("Conv", [x1, w1], kernels=[3], strides=[2], pads=[1, 2])
    np.testing.assert_allclose(y1, naive_conv(x1, w1, None, (2,), (1,), (1,), 1, (6,)), atol=1e-12)
    x3, w3 = rng.standard_normal((1, 2, 4, 5, 3)), rng.standard_normal((3, 2, 2, 3, 2))
    (y3,) = run_op("Conv", [x3, w3], pads=[1], strides=[1, 2, 1])
    np.testing.assert_allclose(
        y3, naive_conv(x3, w3, None, (1, 2, 1), (1, 1, 1), (1, 1, 1), 1, (5, 3, 4)), atol=1e-12
    )


def test_conv_nhwc_equals_transposed_nchw(rng):
    x = rng.standard_normal((2, 6, 7, 9)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    args = dict(group=3, stride=2, pad=1, dilation=2)
    (nchw,) = run_op("Conv", [x, w, b], **args)
    to_nhwc = (0, 2, 3, 1)
    (nhwc,) = run_op("Conv", [x.transpose(to_nhwc), w.transpose(to_nhwc), b], order="NHWC", **args)
    assert nhwc.dtype == np.float32
    np.testing.assert_allclose(nhwc, nchw.transpose(to_nhwc), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
def test_conv_in_batch_chunks_matches_one_gemm(rng, monkeypatch, order):
    from kaffa_cpu.kernels import nn

    x, w = rng.standard_normal((5, 4, 6, 5)), rng.standard_normal((6, 2, 3, 3))
    if order == "NHWC":
        x, w = x.transpose(0, 2, 3, 1), w.transpose(0, 2, 3, 1)
    (whole,) = run_op("Conv", [x, w], group=2, pad=1, order=order)
    monkeypatch.setattr(nn, "COLS_BUDGET_BYTES", 1)  # one sample per GEMM
    (chunked,) = run_op("Conv", [x, w], group=2, pad=1, order=order)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)


def test_conv_float16_computes_in_float32(rng):
    x = rng.standard_normal((1, 16, 6, 6)).astype(np.float16)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float16)
    (y,) = run_op("Conv", [x, w], pad=1)
    assert y.dtype == np.float16
    want = naive_conv(x.astype(np.float64), w.astype(np.float64), None, (1, 1), (1, 1), (1, 1), 1, (6, 6))
    # One rounding to float16 at the end: within half an ulp of |y| (plus float32 noise).
    np.testing.assert_allclose(y, want, rtol=2**-10, atol=1e-2)


def test_conv_net_reruns_with_new_shapes(rng):
    ws = kaffa.Workspace("reshape-conv")
    w = rng.standard_normal((2, 3, 3, 3))
    ws.feed_blob("x", rng.standard_normal((1, 3, 5, 5)))
    ws.feed_blob("w", w)
    net = kaffa.Net("c")
    net.Conv(["x", "w"], "y", kernel=3, pad=1)
    ws.create_net(net)
    ws.run_net("c")
    assert ws.fetch_blob("y").shape == (1, 2, 5, 5)
    x = rng.standard_normal((3, 3, 8, 6))
    ws.feed_blob("x", x)
    ws.run_net("c")
    np.testing.assert_allclose(
        ws.fetch_blob("y"), naive_conv(x, w, None, (1, 1), (1, 1), (1, 1), 1, (8, 6)), atol=1e-12
    )


def test_conv_legacy_same_and_valid(rng):
    x, w = rng.standard_normal((1, 2, 7, 8)), rng.standard_normal((3, 2, 4, 4))
    (same,) = run_op("Conv", [x, w], stride=2, legacy_pad=2)
    # SAME: out = ceil(size / stride); total pad (out-1)*s + k - size, the odd one at the end.
    assert same.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(same, naive_conv(x, w, None, (2, 2), (1, 1), (1, 1), 1, (4, 4)), atol=1e-12)
    (valid,) = run_op("Conv", [x, w], stride=2, pad=3, legacy_pad=1)  # VALID ignores pads
    np.testing.assert_allclose(valid, naive_conv(x, w, None, (2, 2), (0, 0), (1, 1), 1, (2, 3)), atol=1e-12)


# -- pooling -----------------------------------------------------------------------------------------


def test_caffe_ceil_mode_pool_shapes_and_values(rng):
    x = rng.standard_normal((1, 2, 8, 8))
    (y,) = run_op("MaxPool", [x], kernel=3, stride=2, legacy_pad=3)
    assert y.shape == (1, 2, 4, 4)  # floor mode would give 3: the last window hangs past the end
    np.testing.assert_array_equal(y, naive_pool(x, (3, 3), (2, 2), (0, 0), (4, 4), "max"))
    x7 = rng.standard_normal((1, 2, 7, 7))
    (y7,) = run_op("AveragePool", [x7], kernel=2, stride=2, pad=1, legacy_pad=3)
    # ceil((7 + 2 - 2) / 2) + 1 = 5, but the 5th window would start in the end pad: 4.
    assert y7.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(y7, naive_pool(x7, (2, 2), (2, 2), (1, 1), (4, 4), "avg"), atol=1e-12)


def test_average_pool_count_include_pad():
    x = np.ones((1, 1, 3, 3))
    (plain,) = run_op("AveragePool", [x], kernel=3, pad=1)
    np.testing.assert_allclose(plain, np.ones((1, 1, 3, 3)))  # padding is not counted
    (incl,) = run_op("AveragePool", [x], kernel=3, pad=1, count_include_pad=1)
    want = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9
    np.testing.assert_allclose(incl[0, 0], want)


def test_average_pool_count_include_pad_ignores_ceil_overhang(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    (y,) = run_op("AveragePool", [x], kernel=3, stride=2, pad=1, legacy_pad=3, count_include_pad=1)
    # ceil((6 + 2 - 3) / 2) + 1 = 4 windows; the last covers input 5, pad 6 and overhang 7.
    assert y.shape == (1, 2, 4, 4)
    want = naive_pool(x, (3, 3), (2, 2), (1, 1), (4, 4), "avg", divisor_hi=(7, 7))
    np.testing.assert_allclose(y, want, atol=1e-12)
    assert y[0, 0, 3, 3] == pytest.approx(x[0, 0, 5, 5] / 4)  # 2x2 counted cells: input + pad


def test_max_pool_padding_never_wins_and_nhwc(rng):
    x = rng.uniform(-2, -1, (2, 3, 7, 7)).astype(np.float32)
    (y,) = run_op("MaxPool", [x], kernel=3, pad=1, stride=2)
    assert y.max() < 0
    np.testing.assert_array_equal(y, naive_pool(x, (3, 3), (2, 2), (1, 1), (4, 4), "max"))
    (yh,) = run_op("MaxPool", [x.transpose(0, 2, 3, 1)], kernel=3, pad=1, stride=2, order="NHWC")
    np.testing.assert_array_equal(yh, y.transpose(0, 2, 3, 1))


def test_global_pooling(rng):
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float16)
    (avg,) = run_op("AveragePool", [x], global_pooling=1, order="NHWC")
    assert avg.shape == (2, 1, 1, 3) and avg.dtype == np.float16
    np.testing.assert_allclose(avg, x.astype(np.float64).mean(axis=(1, 2), keepdims=True), atol=2e-3)
    (mx,) = run_op("MaxPool", [x], global_pooling=1)
    np.testing.assert_array_equal(mx, x.max(axis=(2, 3), keepdims=True))


# -- FC, MatMul ---------------------------------------------------------------------------------------


def test_fc_axis_and_runtime_shape_error(rng):
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 12)), rng.standard_normal(5)
    (y,) = run_op("FC", [x, w, b])
    np.testing.assert_allclose(y, x.reshape(2, 12) @ w.T + b)
    ws = kaffa.Workspace("fc-shapes")
    run_op("FC", [x, w, b], ws=ws)
    ws.feed_blob("in0", rng.standard_normal((2, 7)))
    with pytest.raises(ShapeError, match="FC"):
        ws.run_net("FC")


def test_matmul_axes_and_transposes(rng):
    a, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((5, 4))
    (y,) = run_op("MatMul", [a, b], axis_a=1, trans_a=1, trans_b=1)
    np.testing.assert_allclose(y, a.reshape(4, 6).T @ b.T)
    assert y.shape == (6, 5)
    a16, b16 = a.astype(np.float16), rng.standard_normal((3, 5)).astype(np.float16)
    (y16,) = run_op("MatMul", [a16, b16], axis_a=2)
    assert y16.dtype == np.float16 and y16.shape == (8, 5)
    want = a16.reshape(8, 3).astype(np.float64) @ b16.astype(np.float64)
    np.testing.assert_allclose(y16, want, rtol=2**-10, atol=1e-3)


# -- elementwise --------------------------------------------------------------------------------------


def test_legacy_broadcast(rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    (y,) = run_op("Mul", [a, b], broadcast=1, axis=1)
    np.testing.assert_array_equal(y, a * b[None, :, :, None])
    c = rng.standard_normal(5).astype(np.float32)
    (y2,) = run_op("Sub", [a, c], broadcast=1)  # axis -1: B matches A's trailing dims
    np.testing.assert_array_equal(y2, a - c)
    d = rng.standard_normal(3).astype(np.float32)
    (y3,) = run_op("Add", [a, d], broadcast=1, axis_str="C", order="NCHW")
    np.testing.assert_array_equal(y3, a + d[:, None, None])


def test_numpy_broadcast_keeps_dtype(rng):
    a = rng.standard_normal((3, 1)).astype(np.float16)
    b = rng.standard_normal((4,)).astype(np.float16)
    (y,) = run_op("Add", [a, b])
    assert y.dtype == np.float16 and y.shape == (3, 4)
    # 0-d operands (numpy's ufuncs would return a scalar, not an array)
    ws = kaffa.Workspace("scalars")
    net = kaffa.Net("s")
    net.ConstantFill([], "a", shape=[], value=1.5)
    net.ConstantFill([], "b", shape=[], value=2.0)
    net.Add(["a", "b"], "c")
    net.Transpose(["c"], "t")
    ws.run_net_once(net)
    for name in "ct":
        s = ws.fetch_blob(name)
        assert isinstance(s, np.ndarray) and s.shape == () and s == 3.5


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_div_truncates_toward_zero(dtype):
    a = np.array([-7, 7, -7, 7, -6, 0, -1], dtype)
    b = np.array([2, 2, -2, -2, 2, -3, 5], dtype)
    (y,) = run_op("Div", [a, b])
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [-3, 3, 3, -3, -3, 0, 0])


def test_sum_variadic_float16_and_shape_check(rng):
    xs = [rng.standard_normal((3, 4)).astype(np.float16) for _ in range(4)]
    (y,) = run_op("Sum", xs)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, sum(x.astype(np.float32) for x in xs).astype(np.float16))
    ws = kaffa.Workspace("sum-shapes")
    run_op("Sum", xs[:2], ws=ws)
    ws.feed_blob("in1", xs[1][:1])  # [1, 4] would broadcast in numpy
    with pytest.raises(ShapeError, match="Sum"):
        ws.run_net("Sum")


# -- tensor ---------------------------------------------------------------------------------------------


def test_reshape_zero_and_minus_one_with_old_shape(rng):
    x = rng.standard_normal((2, 3, 4))
    y, old = run_op("Reshape", [x], 2, shape=[0, -1])
    assert y.shape == (2, 12) and old.dtype == np.int64
    np.testing.assert_array_equal(old, [2, 3, 4])
    (z,) = run_op("Reshape", [x, np.array([4, 0, -1], np.int64)])
    assert z.shape == (4, 3, 2)
    np.testing.assert_array_equal(z.ravel(), x.ravel())


def test_split_by_input_sizes_and_concat_split_info(rng):
    x = rng.standard_normal((2, 6, 3))
    parts = run_op("Split", [x, np.array([1, 0, 5], np.int32)], 3, axis=1)
    assert [p.shape for p in parts] == [(2, 1, 3), (2, 0, 3), (2, 5, 3)]
    y, info = run_op("Concat", parts, 2, axis=1)
    assert info.dtype == np.int32
    np.testing.assert_array_equal(info, [1, 0, 5])
    np.testing.assert_array_equal(y, x)
    stacked, info2 = run_op("Concat", [x, x], 2, axis=-1, add_axis=1)
    assert stacked.shape == (2, 6, 3, 2)
    np.testing.assert_array_equal(info2, [1, 1])
    a, b = run_op("Split", [stacked], 2, axis=-1, add_axis=1)
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, x)
    assert a.flags.c_contiguous


def test_split_sizes_must_sum(rng):
    with pytest.raises(ShapeError, match="sum to 6"):
        run_op("Split", [rng.standard_normal((6,)), np.array([2, 2], np.int64)], 2, axis=0)


def test_transpose_flatten_copy(rng):
    x = rng.standard_normal((2, 3, 4)) > 0
    (t,) = run_op("Transpose", [x])
    np.testing.assert_array_equal(t, x.T)
    assert t.flags.c_contiguous
    (f,) = run_op("Flatten", [x], axis=2)
    assert f.shape == (6, 4) and f.dtype == np.bool_
    (c,) = run_op("Copy", [x])
    np.testing.assert_array_equal(c, x)


# -- fills ------------------------------------------------------------------------------------------------


def _fill_net(op: str, seed: int | None, **args) -> kaffa.Net:
    net = kaffa.Net(op)
    opt = None if seed is None else DeviceOption("cpu", random_seed=seed)
    getattr(net, op)([], "y", device_option=opt, **args)
    return net


def test_seeded_gaussian_fill_is_reproducible_and_normal():
    draws = []
    for _ in range(2):
        ws = kaffa.Workspace("fill")
        ws.create_net(_fill_net("GaussianFill", 7, shape=[200, 100], mean=2.0, std=3.0))
        ws.run_net("GaussianFill")
        first = ws.fetch_blob("y")
        ws.run_net("GaussianFill")
        draws.append((first, ws.fetch_blob("y")))
    (a1, a2), (b1, b2) = draws
    np.testing.assert_array_equal(a1, b1)  # same seed, same stream
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # every run draws new values
    assert a1.dtype == np.float32 and a1.shape == (200, 100)
    n = a1.size  # 6 standard errors: mean SE = std / sqrt(n), std SE = std / sqrt(2n)
    assert abs(a1.mean() - 2.0) < 6 * 3.0 / math.sqrt(n)
    assert abs(a1.std() - 3.0) < 6 * 3.0 / math.sqrt(2 * n)


def test_uniform_fill_range_and_like_input():
    ws = kaffa.Workspace("uniform")
    ws.feed_blob("like", np.zeros((100, 50), np.float32))
    net = kaffa.Net("u")
    net.UniformFill(["like"], "y", min=-1.0, max=1.0, dtype=np.float16, extra_shape=[2])
    ws.run_net_once(net)
    y = ws.fetch_blob("y")
    assert y.shape == (100, 50, 2) and y.dtype == np.float16
    assert y.min() >= -1 and y.max() < 1
    assert abs(float(y.astype(np.float64).mean())) < 6 * (2 / math.sqrt(12)) / math.sqrt(y.size)


def test_constant_and_given_fills():
    (c,) = run_op("ConstantFill", [np.array([2, 3], np.int64)], input_as_shape=1, value=1.7, dtype=np.int32)
    assert c.dtype == np.int32 and c.shape == (2, 3) and (c == 1).all()
    big = [2**62 + 1, -(2**40) - 3]
    (g,) = run_op("GivenTensorInt64Fill", [], shape=[2], values=big)
    assert g.dtype == np.int64 and g.tolist() == big  # no detour through float64
    (bo,) = run_op("GivenTensorBoolFill", [], shape=[3], values=[0, 1, 1])
    assert bo.dtype == np.bool_ and bo.tolist() == [False, True, True]
    (h,) = run_op("GivenTensorFill", [np.zeros((2, 1))], values=[0.5, 1.5], dtype=np.float16)
    assert h.dtype == np.float16 and h.tolist() == [[0.5], [1.5]]
    with pytest.raises(ShapeError, match="3 values"):
        run_op("GivenTensorFill", [], shape=[2, 2], values=[1.0, 2.0, 3.0])


def test_given_tensor_fill_values_parse_as_arrays_exactly():
    """GivenTensor*Fill's values (bulk: millions of numbers in init nets) parse to numpy arrays
    straight from protobuf's buffer, with every value kept (float32 bits, large int64s)."""
    from kaffa.checkpoint import fill_op
    from kaffa.schema import SCHEMAS

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)
    big = np.array([2**62 + 1, -(2**61) - 3, 7], dtype=np.int64)
    for value in (w, big):
        op = fill_op("p", value)
        args = SCHEMAS.get(op.type).parse_args(op.arg)
        assert isinstance(args["values"], np.ndarray)
        np.testing.assert_array_equal(args["values"].astype(value.dtype), value.reshape(-1))
        ws = kaffa.Workspace()
        ws.run_operator_once(op)
        np.testing.assert_array_equal(ws.fetch_blob("p"), value)
