"""Cases for FC, Conv, FusedConv, ConvTranspose, MaxPool, AveragePool, PadImage.

Odd spatial sizes (7, 9, 13) break tiling, batch 1 and size-1 dims hit degenerate loops, and one
case per op has ~64 channels so GEMM tiling and blocking are exercised. Every case is also a
gradient case (kaffa_conformance.gradcheck), so sizes stay small.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, GEMM, REDUCTION, Case, cases, ints, uniform


# -- FC --------------------------------------------------------------------------------------------
@cases("FC")
def fc(rng):
    def case(name, x_shape, w_shape, bias=True, reduction=None, **args):
        inputs = [uniform(rng, x_shape), uniform(rng, w_shape)]
        if bias:
            inputs.append(uniform(rng, (math.prod(w_shape[: args.get("axis_w", 1)]),)))
        k = reduction or math.prod(x_shape[args.get("axis", 1) :])
        return Case("FC", name, inputs, args, op_class=GEMM, reduction=k)

    return [
        case("2d", (3, 5), (4, 5)),
        case("no_bias", (2, 7), (3, 7), bias=False),
        case("batch1_odd", (1, 13), (7, 13)),
        case("k1", (5, 1), (3, 1)),
        case("4d_x_flattened", (2, 3, 2, 2), (5, 12)),
        case("axis2", (2, 3, 4, 5), (6, 20), axis=2),
        case("axis_neg1", (2, 3, 8), (5, 8), axis=-1),
        case("axis_w2", (3, 4, 5), (2, 3, 20), axis_w=2),
        case("large", (17, 96), (64, 96)),
    ]


# -- Conv ------------------------------------------------------------------------------------------
@cases("Conv")
def conv(rng):
    def case(name, x_shape, w_shape, bias=True, **args):
        inputs = [uniform(rng, x_shape), uniform(rng, w_shape)]
        if bias:
            inputs.append(uniform(rng, (w_shape[0],)))
        per_group = math.prod(w_shape[1:])  # C/group * prod(kernel), either layout
        return Case("Conv", name, inputs, args, op_class=GEMM, reduction=per_group)

    nhwc = {"order": "NHWC"}
    return [
        case("2d_3x3", (2, 3, 7, 7), (4, 3, 3, 3), kernel=3),
        case("2d_no_kernel_arg_rect", (2, 3, 7, 6), (5, 3, 2, 3), bias=False),
        case("2d_stride2_pad1", (1, 4, 8, 9), (6, 4, 3, 3), kernel=3, stride=2, pad=1),
        case(
            "2d_asym_pads",
            (1, 2, 6, 7),
            (3, 2, 3, 2),
            kernel_h=3,
            kernel_w=2,
            pads=[0, 1, 2, 0],
            strides=[1, 2],
        ),
        case("2d_pad_tlbr", (2, 3, 5, 5), (2, 3, 3, 3), pad_t=2, pad_l=0, pad_b=1, pad_r=1, bias=False),
        case("2d_dilation2", (1, 3, 9, 9), (2, 3, 3, 3), dilation=2, pad=2),
        case("2d_group2", (2, 4, 5, 5), (6, 2, 3, 3), group=2, pad=1),
        case("2d_depthwise", (1, 6, 5, 5), (6, 1, 3, 3), group=6, stride=2, bias=False),
        case("2d_1x1_size1_dims", (3, 8, 1, 5), (5, 8, 1, 1)),
        # The cpu kernel's direct paths: 1x1 filters (no columns) and depthwise (per-tap sums).
        case("2d_1x1_stride2", (2, 6, 7, 7), (4, 6, 1, 1), stride=2),
        case("2d_depthwise_pad_dilation", (2, 5, 7, 6), (5, 1, 3, 3), group=5, pad=2, dilation=2),
        case("nhwc", (2, 7, 7, 3), (4, 3, 3, 3), pad=1, stride=2, **nhwc),
        case("nhwc_group2_dilation2", (1, 9, 8, 4), (4, 3, 3, 2), group=2, dilation=2, **nhwc),
        case("1d", (2, 3, 13), (4, 3, 3), kernels=[3], pads=[1, 2], strides=[2]),
        case("3d", (1, 2, 5, 6, 4), (3, 2, 3, 3, 2), pads=[1], strides=[1, 2, 1]),
        case("valid", (1, 3, 8, 8), (2, 3, 3, 3), stride=2, legacy_pad=1),
        case("same_even_kernel", (1, 3, 7, 8), (2, 3, 4, 4), stride=2, legacy_pad=2),
        case("large_64ch", (1, 64, 9, 9), (64, 64, 3, 3), pad=1),
        # The gradient skips dX (Caffe2's no_gradient_to_input, e.g. for a layer fed by data).
        case("no_gradient_to_input", (2, 2, 5, 4), (3, 2, 2, 2), stride=2, no_gradient_to_input=1),
        case("caffe_ceil", (1, 2, 6, 6), (2, 2, 3, 3), stride=2, legacy_pad=3),
    ]


# -- FusedConv -------------------------------------------------------------------------------------
def _conv_out_shape(x_shape, w_shape, nhwc=False, stride=1, pad=0, dilation=1):
    """Conv's output shape for a square stride / pad / dilation (what Z must match)."""
    sizes, kern = (x_shape[1:-1], w_shape[1:-1]) if nhwc else (x_shape[2:], w_shape[2:])
    outs = [(s + 2 * pad - dilation * (k - 1) - 1) // stride + 1 for s, k in zip(sizes, kern)]
    return (x_shape[0], *outs, w_shape[0]) if nhwc else (x_shape[0], w_shape[0], *outs)


@cases("FusedConv")
def fused_conv(rng):
    relu, relu6 = {"activation": "Relu"}, {"activation": "Clip", "min": 0.0, "max": 6.0}
    narrow = {"activation": "Clip", "min": -0.5, "max": 0.4}

    def case(name, x_shape, w_shape, bias=True, z=False, scale=1.0, inplace=(), **args):
        # scale 2 spreads the sums past 6, so Clip(0, 6) cases hit both bounds.
        inputs = [uniform(rng, x_shape, -scale, scale), uniform(rng, w_shape, -scale, scale)]
        if bias or z:  # Z needs a bias input before it
            inputs.append(uniform(rng, (w_shape[0],), -scale, scale))
        if z:
            geo = {k: args[k] for k in ("stride", "pad", "dilation") if k in args}
            out = _conv_out_shape(x_shape, w_shape, args.get("order") == "NHWC", **geo)
            inputs.append(uniform(rng, out, -scale, scale))
        per_group = math.prod(w_shape[1:]) + (1 if z else 0)
        return Case("FusedConv", name, inputs, args, op_class=GEMM, reduction=per_group, inplace=inplace)

    return [
        case("3x3_pad1_relu", (2, 3, 7, 7), (4, 3, 3, 3), pad=1, **relu),
        case("3x3_pad1_z_no_activation", (2, 3, 7, 7), (4, 3, 3, 3), pad=1, z=True),
        case("3x3_stride2_z_relu", (1, 4, 9, 9), (6, 4, 3, 3), stride=2, pad=1, z=True, **relu),
        case("1x1_relu", (2, 6, 7, 7), (4, 6, 1, 1), **relu),
        case("1x1_stride2_z_clip6", (1, 5, 9, 9), (3, 5, 1, 1), stride=2, z=True, scale=2.0, **relu6),
        case("dw_clip6", (1, 6, 7, 7), (6, 1, 3, 3), group=6, pad=1, scale=2.0, **relu6),
        case("dw_stride2_clip6", (2, 5, 9, 9), (5, 1, 3, 3), group=5, stride=2, pad=1, scale=2.0, **relu6),
        case("dw_dilation2_z_relu", (1, 4, 9, 9), (4, 1, 3, 3), group=4, pad=2, dilation=2, z=True, **relu),
        case("group2_z_relu", (2, 4, 7, 7), (6, 2, 3, 3), group=2, pad=1, z=True, **relu),
        case("no_bias_relu_odd13", (1, 3, 13, 13), (2, 3, 3, 3), bias=False, **relu),
        case("no_bias_clip_narrow", (2, 3, 9, 7), (3, 3, 3, 3), bias=False, **narrow),
        case("no_activation_no_bias", (1, 2, 7, 9), (3, 2, 2, 2), bias=False),
        case("large_64ch_z_relu", (1, 64, 9, 9), (64, 64, 3, 3), pad=1, z=True, **relu),
        # Y may overwrite Z (the pass writes Add(conv, z) -> z that way).
        case("z_in_place_relu", (2, 3, 7, 7), (4, 3, 3, 3), pad=1, z=True, inplace=[(3, 0)], **relu),
        case("no_dx_relu", (2, 2, 7, 7), (3, 2, 3, 3), stride=2, no_gradient_to_input=1, **relu),
        case("nhwc_z_relu", (2, 7, 7, 3), (4, 3, 3, 3), pad=1, stride=2, z=True, order="NHWC", **relu),
        case("1d_z_clip6", (2, 3, 13), (4, 3, 3), pad=1, z=True, scale=2.0, **relu6),
    ]


# -- ConvTranspose ---------------------------------------------------------------------------------
@cases("ConvTranspose")
def conv_transpose(rng):
    def case(name, x_shape, w_shape, bias=True, **args):
        nhwc = args.get("order") == "NHWC"
        group = args.get("group", 1)
        m = w_shape[-1 if nhwc else 1] * group
        inputs = [uniform(rng, x_shape), uniform(rng, w_shape)]
        if bias:
            inputs.append(uniform(rng, (m,)))
        kernel = w_shape[1:-1] if nhwc else w_shape[2:]
        # One output cell sums at most C/group channels x every kernel tap.
        reduction = w_shape[0] // group * math.prod(kernel)
        return Case("ConvTranspose", name, inputs, args, op_class=GEMM, reduction=reduction)

    nhwc = {"order": "NHWC"}
    return [
        case("2d_3x3", (2, 3, 5, 5), (3, 4, 3, 3), kernel=3),
        case("2d_no_kernel_arg_rect", (2, 2, 3, 4), (2, 3, 2, 3), bias=False),
        case("2d_stride2_pad1_adj1", (1, 4, 4, 5), (4, 2, 3, 3), kernel=3, stride=2, pad=1, adj=1),
        case(
            "2d_asym_pads_adjs",
            (1, 2, 4, 3),
            (2, 3, 3, 2),
            kernel_h=3,
            kernel_w=2,
            pads=[0, 1, 2, 0],
            strides=[2, 3],
            adjs=[1, 2],
        ),
        case(
            "2d_pad_tlbr_adj_hw",
            (2, 3, 3, 3),
            (3, 2, 3, 3),
            pad_t=2,
            pad_l=0,
            pad_b=1,
            pad_r=1,
            stride_h=2,
            stride_w=2,
            adj_h=0,
            adj_w=1,
            bias=False,
        ),
        case("2d_group2", (1, 4, 3, 3), (4, 3, 3, 3), group=2, stride=2, pad=1),
        case("2d_depthwise", (2, 3, 4, 4), (3, 1, 3, 3), group=3, stride=2),
        case("2d_kernel_larger_than_input", (1, 2, 2, 2), (2, 3, 4, 4), stride=3, adj=2),
        case("2d_1x1_size1_dims", (3, 5, 1, 1), (5, 2, 1, 1)),
        case("nhwc", (2, 4, 4, 3), (3, 3, 3, 4), stride=2, pad=1, adj=1, **nhwc),
        case("nhwc_group2", (1, 3, 5, 4), (4, 2, 2, 3), group=2, stride=2, bias=False, **nhwc),
        case("1d", (2, 3, 6), (3, 2, 3), kernels=[3], strides=[2], pads=[1, 0]),
        case("3d", (1, 2, 3, 3, 2), (2, 3, 2, 2, 2), strides=[2, 1, 2], pads=[1, 0, 0, 0, 1, 0]),
        # VALID and SAME mean no padding for a transposed convolution (the pad is ignored).
        case("valid_ignores_pads", (1, 2, 4, 4), (2, 3, 3, 3), stride=2, pad=1, legacy_pad=1),
        case("same", (1, 2, 3, 4), (2, 2, 4, 4), stride=2, legacy_pad=2),
        case("large_64ch", (1, 64, 5, 5), (64, 64, 3, 3), stride=2, pad=1, adj=1),
        case("no_gradient_to_input", (2, 2, 3, 3), (2, 2, 2, 2), stride=2, no_gradient_to_input=1),
    ]


# -- pooling ---------------------------------------------------------------------------------------
def _window_size(args, rank):
    """The largest number of cells one window sums over (for the tolerance)."""
    if args.get("global_pooling"):
        return None
    if "kernels" in args:
        ks = args["kernels"]
    elif "kernel" in args:
        ks = [args["kernel"]]
    else:
        ks = [args["kernel_h"], args["kernel_w"]]
    return math.prod(ks * (rank - 2) if len(ks) == 1 else ks)


def _distinct(rng, shape, low, high):
    """Distinct values k / 1024 in [low, high): exact in float16 (|k| <= 2048), and no two cells of a
    max-pooling window tie, so the gradient has one winner even after rounding."""
    grid = np.arange(round(low * 1024), round(high * 1024)) / 1024
    assert grid.size >= math.prod(shape), f"not enough distinct values for {shape}"
    return rng.choice(grid, size=tuple(shape), replace=False)


def _pool_cases(op, rng):
    average = op == "AveragePool"

    def case(name, shape, low=-1.0, high=1.0, **args):
        window = _window_size(args, len(shape))
        if window is None:  # global: the whole spatial extent
            spatial = shape[2:] if args.get("order", "NCHW") == "NCHW" else shape[1:-1]
            window = math.prod(spatial)
        if average:
            return Case(
                op, name, [uniform(rng, shape, low, high)], args, op_class=REDUCTION, reduction=window
            )
        if low == -1.0 and high == 1.0:
            low, high = -2.0, 2.0  # room for the 3136 distinct values of the largest case
        return Case(
            op, name, [_distinct(rng, shape, low, high)], args, op_class=EXACT, dtypes=dtypes.FLOAT_TYPES
        )

    nhwc = {"order": "NHWC"}
    out = [
        case("2x2_stride2", (2, 3, 8, 8), kernel=2, stride=2),
        case("3x3_stride2_odd", (1, 3, 13, 11), kernel=3, stride=2),
        case("rect_asym_pads", (1, 2, 6, 7), kernel_h=2, kernel_w=3, pads=[1, 0, 0, 2], strides=[2, 1]),
        case("global", (2, 5, 3, 4), global_pooling=1),
        case("global_nhwc_64ch", (1, 7, 7, 64), global_pooling=1, **nhwc),
        case("nhwc", (2, 7, 7, 4), kernel=3, stride=2, pad=1, **nhwc),
        case("1d", (2, 3, 11), kernels=[3], strides=[2], pads=[1, 0]),
        case("3d", (1, 2, 5, 6, 4), kernel=2, stride=2),
        case("valid", (1, 2, 8, 8), kernel=3, stride=2, legacy_pad=1),
        case("same", (1, 2, 8, 7), kernel=3, stride=2, legacy_pad=2),
        # Caffe ceil mode: the last window hangs past the end (8 -> 4 windows of 3, stride 2)...
        case("caffe_ceil", (1, 3, 8, 8), kernel=3, stride=2, legacy_pad=3),
        # ...and is dropped when it would start in the end pad (7 + pad 1: 4 windows, not 5).
        case("caffe_ceil_clipped", (1, 2, 7, 7), kernel=2, stride=2, pad=1, legacy_pad=3),
    ]
    if average:
        out += [
            case("pad1_count_pad", (1, 2, 7, 7), kernel=3, pad=1, count_include_pad=1),
            case(
                "rect_asym_pads_count_pad",
                (1, 2, 6, 7),
                kernel_h=2,
                kernel_w=3,
                pads=[1, 0, 0, 2],
                count_include_pad=1,
            ),
            case("same_count_pad", (1, 2, 8, 7), kernel=4, stride=2, legacy_pad=2, count_include_pad=1),
            # Counts the declared pad (1) but not the ceil-mode overhang beyond it.
            case(
                "caffe_ceil_count_pad",
                (1, 2, 6, 6),
                kernel=3,
                stride=2,
                pad=1,
                legacy_pad=3,
                count_include_pad=1,
            ),
        ]
    else:
        out += [
            # All inputs negative: a zero-padded max would be wrong at the border.
            case("negative_pad1", (1, 2, 7, 7), low=-2.0, high=-1.0, kernel=3, pad=1),
            case("dilation2", (1, 2, 7, 7), kernel=2, dilation=2),
        ]
        # int8 / uint8 (and the float dtypes): integer data in [0, 100), exact everywhere. Ties are
        # common, so no gradient check. The padded case checks that padding (the dtype's minimum
        # for integers) never wins.
        for name, shape, args in (
            ("int_2x2_stride2", (2, 3, 8, 8), {"kernel": 2, "stride": 2}),
            ("int_3x3_pad1", (1, 2, 7, 7), {"kernel": 3, "pad": 1}),
            ("int_global", (2, 3, 4, 5), {"global_pooling": 1}),
            ("int_caffe_ceil", (1, 2, 8, 8), {"kernel": 3, "stride": 2, "legacy_pad": 3}),
        ):
            out.append(Case(op, name, [ints(rng, shape, 0, 100)], args, op_class=EXACT, grad=False))
    return out


@cases("MaxPool")
def max_pool(rng):
    return _pool_cases("MaxPool", rng)


@cases("AveragePool")
def average_pool(rng):
    return _pool_cases("AveragePool", rng)


# -- PadImage --------------------------------------------------------------------------------------
@cases("PadImage")
def pad_image(rng):
    def case(name, shape, **args):
        return Case("PadImage", name, [uniform(rng, shape)], args, op_class=EXACT)

    nhwc = {"order": "NHWC"}
    return [
        case("constant_pad1", (2, 3, 4, 5), pad=1),
        case("constant_value_tlbr", (1, 2, 3, 4), pad_t=2, pad_l=0, pad_b=1, pad_r=3, value=-1.5),
        case("reflect_pad2", (1, 2, 5, 4), pad=2, mode="reflect"),
        # Reflect pads may reach size - 1.
        case("reflect_asym_max", (2, 2, 4, 5), pads=[1, 0, 3, 4], mode="reflect"),
        case("edge_pad_beyond_size", (1, 2, 2, 3), pad=3, mode="edge"),
        case("edge_size1", (2, 3, 1, 1), pads=[2, 0, 1, 1], mode="edge"),
        case("no_pad", (1, 2, 3, 3), pads=[0]),
        case("nhwc_reflect", (2, 5, 4, 3), pad_t=1, pad_l=2, pad_b=2, pad_r=1, mode="reflect", **nhwc),
        case("nhwc_constant", (1, 3, 2, 4), pad=1, value=2.0, **nhwc),
        case("1d_edge", (2, 3, 5), pads=[2, 1], mode="edge"),
        case("3d_reflect", (1, 2, 3, 4, 3), pads=[1], mode="reflect"),
        # wrap may reach past the size (the axis repeats).
        case("wrap_beyond_size", (1, 2, 3, 2), pads=[1, 3, 4, 2], mode="wrap"),
        case("nhwc_wrap", (2, 3, 4, 2), pad=1, mode="wrap", **nhwc),
    ]
