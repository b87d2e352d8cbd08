"""Conformance cases for the sampling family (see kaffa.ops.sampling).

Grids reach past [-1, 1] so every padding mode is exercised; random coordinates never land on a
cell boundary, where linear and cubic interpolation have kinks, so every GridSample case is a
gradient case. Pooling inputs are distinct values (no ties), MaxUnpool indices distinct cells.
Shapes stay small: the references loop over every sample and tap.
"""

from __future__ import annotations

import math

import numpy as np

from kaffa_conformance.cases import EXACT, GEMM, REDUCTION, Case, cases, uniform

I64 = np.int64


@cases("GridSample")
def grid_sample(rng):
    def case(name, x_shape, out_sp, taps, **args):
        k = len(x_shape) - 2
        grid = uniform(rng, (x_shape[0], *out_sp, k), -1.25, 1.25)
        return Case(
            "GridSample",
            name,
            [uniform(rng, x_shape, -2, 2), grid],
            args,
            op_class=REDUCTION,
            reduction=taps,
        )

    return [
        case("linear_zeros", (2, 2, 3, 4), (3, 2), 4),
        case("linear_border_align", (1, 3, 4, 3), (2, 3), 4, padding_mode="border", align_corners=True),
        case("linear_reflection", (1, 2, 3, 5), (2, 4), 4, padding_mode="reflection"),
        case(
            "linear_reflection_align", (1, 1, 4, 4), (3, 3), 4, padding_mode="reflection", align_corners=True
        ),
        case("nearest_zeros", (2, 1, 3, 4), (2, 3), 1, mode="nearest"),
        case("nearest_border", (1, 2, 4, 3), (3, 2), 1, mode="nearest", padding_mode="border"),
        case(
            "nearest_reflection_align",
            (1, 1, 3, 3),
            (2, 4),
            1,
            mode="nearest",
            padding_mode="reflection",
            align_corners=True,
        ),
        case("cubic_zeros", (1, 2, 4, 5), (2, 3), 16, mode="cubic"),
        case(
            "cubic_border_align",
            (1, 1, 4, 4),
            (3, 2),
            16,
            mode="cubic",
            padding_mode="border",
            align_corners=True,
        ),
        case("cubic_reflection", (1, 1, 5, 4), (2, 2), 16, mode="cubic", padding_mode="reflection"),
        case("volumetric_linear", (1, 2, 3, 2, 3), (2, 2, 2), 8),
        case(
            "volumetric_nearest_border", (1, 1, 2, 3, 2), (2, 1, 3), 1, mode="nearest", padding_mode="border"
        ),
        case("1d_linear_reflection", (2, 2, 5), (4,), 2, padding_mode="reflection"),
    ]


@cases("AffineGrid")
def affine_grid(rng):
    def case(name, size, **args):
        k = len(size) - 2
        theta = uniform(rng, (size[0], k, k + 1), -1.5, 1.5)
        return Case("AffineGrid", name, [theta], {"size": size, **args}, op_class=REDUCTION, reduction=k + 1)

    return [
        case("2d", [2, 3, 4, 5]),
        case("2d_align_corners", [1, 1, 3, 4], align_corners=True),
        case("2d_size1_align", [1, 2, 1, 3], align_corners=True),
        case("3d", [2, 1, 2, 3, 4]),
        case("3d_align_corners", [1, 2, 3, 2, 2], align_corners=True),
    ]


@cases("Col2Im")
def col2im(rng):
    def case(name, n, c, image, block, strides=(1,), pads=(0,), dilations=(1,)):
        k = len(image)

        def fit(v, m):
            return list(v) * m if len(v) == 1 else list(v)

        st, dl, pd = fit(strides, k), fit(dilations, k), fit(pads, 2 * k)
        blocks = [(image[j] + pd[j] + pd[k + j] - dl[j] * (block[j] - 1) - 1) // st[j] + 1 for j in range(k)]
        x = uniform(rng, (n, c * math.prod(block), math.prod(blocks)))
        args = {
            "image_shape": list(image),
            "block_shape": list(block),
            "strides": list(strides),
            "pads": list(pads),
            "dilations": list(dilations),
        }
        overlap = math.prod(-(-b // s) for b, s in zip(block, st))
        return Case("Col2Im", name, [x], args, op_class=REDUCTION, reduction=overlap)

    return [
        case("2d", 1, 1, (5, 5), (1, 5)),
        case("2d_strides_overlap", 2, 2, (5, 5), (3, 3), strides=(2, 2)),
        case("2d_pads", 1, 2, (5, 4), (2, 3), pads=(1, 0, 1, 1)),
        case("2d_dilations", 1, 1, (6, 6), (2, 2), dilations=(1, 3)),
        case("3d", 1, 2, (3, 4, 3), (1, 2, 2)),
        case("1d_stride_pad", 2, 1, (7,), (3,), strides=(2,), pads=(1,)),
    ]


@cases("DeformConv")
def deform_conv(rng):
    def case(name, x_shape, w_shape, bias=False, mask=False, offset_group=1, **args):
        k = len(x_shape) - 2
        kern = w_shape[2:]
        strides = args.get("strides", [1] * k)
        pads = args.get("pads", [0] * (2 * k))
        dil = args.get("dilations", [1] * k)
        outs = [
            (x_shape[2 + j] + pads[j] + pads[k + j] - dil[j] * (kern[j] - 1) - 1) // strides[j] + 1
            for j in range(k)
        ]
        n, kp = x_shape[0], math.prod(kern)
        inputs = [
            uniform(rng, x_shape),
            uniform(rng, w_shape),
            uniform(rng, (n, offset_group * kp * k, *outs), -1.5, 1.5),
        ]
        if bias or mask:
            inputs.append(uniform(rng, (w_shape[0],)))
        if mask:
            inputs.append(uniform(rng, (n, offset_group * kp, *outs), 0, 1))
        red = 4 * w_shape[1] * kp
        return Case(
            "DeformConv", name, inputs, {"offset_group": offset_group, **args}, op_class=GEMM, reduction=red
        )

    return [
        case("2d", (1, 2, 4, 4), (3, 2, 2, 2)),
        case("2d_pads_bias", (2, 1, 3, 4), (2, 1, 2, 2), bias=True, pads=[1, 1, 1, 1]),
        case("2d_mask_stride", (1, 2, 5, 5), (2, 2, 3, 3), mask=True, strides=[2, 2]),
        case("2d_groups_offset_groups", (1, 4, 4, 3), (4, 2, 2, 2), group=2, offset_group=2),
        case("2d_dilation", (1, 1, 5, 5), (1, 1, 2, 2), dilations=[2, 1], kernels=[2, 2]),
        case("1d", (2, 2, 6), (2, 2, 3), pads=[1, 0]),
    ]


def _distinct(rng, shape):
    """Distinct integer values (no ties), exact in float16."""
    n = math.prod(shape)
    return (rng.permutation(n) - n // 2).astype(np.float64).reshape(shape)


@cases("MaxPoolWithIndices")
def max_pool_with_indices(rng):
    def case(name, shape, **args):
        return Case("MaxPoolWithIndices", name, [_distinct(rng, shape)], args, num_outputs=2, op_class=EXACT)

    return [
        case("2d", (2, 2, 5, 5), kernels=[2, 2], strides=[2, 2]),
        case("2d_pads_overlap", (1, 2, 5, 4), kernels=[3, 3], pads=[1, 1, 1, 1]),
        case("2d_column_major", (1, 2, 4, 5), kernels=[2, 2], strides=[2, 1], storage_order=1),
        case(
            "2d_dilation_ceil", (1, 1, 6, 7), kernels=[2, 2], dilations=[2, 2], strides=[2, 2], legacy_pad=3
        ),
        case("1d", (2, 3, 9), kernels=[3], strides=[2]),
        case("3d", (1, 1, 4, 3, 4), kernels=[2, 2, 2], strides=[2, 1, 2]),
    ]


@cases("MaxUnpool")
def max_unpool(rng):
    def case(name, x_shape, out_shape=None, **args):
        k = len(x_shape) - 2
        kern = args["kernels"]
        strides = args.get("strides", [1] * k)
        pads = args.get("pads", [0] * (2 * k))
        sp = [(x_shape[2 + j] - 1) * strides[j] + kern[j] - pads[j] - pads[k + j] for j in range(k)]
        total = x_shape[0] * x_shape[1] * math.prod(sp)
        idx = rng.choice(total, size=math.prod(x_shape), replace=False).reshape(x_shape)
        if out_shape is not None:
            args["output_shape"] = out_shape
        return Case(
            "MaxUnpool",
            name,
            [uniform(rng, x_shape), idx.astype(I64)],
            args,
            op_class=EXACT,
            fixed_dtype_inputs={1: I64},
        )

    return [
        case("2d", (1, 2, 2, 2), kernels=[2, 2], strides=[2, 2]),
        case("2d_output_shape", (2, 1, 2, 3), [2, 1, 5, 7], kernels=[2, 2], strides=[2, 2]),
        case("2d_pads", (1, 1, 3, 3), kernels=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        case("1d", (2, 2, 4), kernels=[2], strides=[2]),
    ]
