"""Conformance cases for the spatial family (see kaffa.ops.spatial).

Resize is linear in X, so every mode gets a gradient row (the finite difference of a linear map
is exact); nearest-neighbour index choices never sit at a kink. The normalizations draw inputs
off-centre with enough spread that no variance or norm is near 0.
"""

from __future__ import annotations

from kaffa_conformance.cases import EXACT, REDUCTION, Case, cases, uniform


@cases("Resize")
def resize(rng):
    def case(name, shape, taps=16, **args):
        return Case("Resize", name, [uniform(rng, shape, -2, 2)], args, op_class=REDUCTION, reduction=taps)

    return [
        case("nearest_up_scales", (1, 2, 3, 4), scales=[1.0, 1.0, 2.0, 1.5]),
        case(
            "nearest_down_floor_asym",
            (1, 1, 5, 6),
            scales=[1.0, 1.0, 0.6, 0.5],
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        ),
        case(
            "nearest_ceil_align",
            (1, 1, 3, 4),
            sizes=[1, 1, 5, 7],
            nearest_mode="ceil",
            coordinate_transformation_mode="align_corners",
        ),
        case("nearest_prefer_ceil_axes", (2, 3, 4), axes=[2], sizes=[7], nearest_mode="round_prefer_ceil"),
        case("linear_up_half_pixel", (1, 2, 3, 3), scales=[1.0, 1.0, 2.0, 2.5], mode="linear"),
        case(
            "linear_down_pytorch",
            (1, 1, 6, 5),
            sizes=[1, 1, 3, 1],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
        ),
        case(
            "linear_align_corners_3d",
            (1, 1, 2, 3, 2),
            scales=[1.0, 1.0, 2.0, 1.5, 2.0],
            mode="linear",
            coordinate_transformation_mode="align_corners",
        ),
        case("linear_antialias_down", (1, 1, 8, 7), sizes=[1, 1, 3, 4], mode="linear", antialias=True),
        case(
            "linear_symmetric",
            (1, 1, 4, 5),
            scales=[1.0, 1.0, 1.7, 0.7],
            mode="linear",
            coordinate_transformation_mode="half_pixel_symmetric",
        ),
        case(
            "linear_not_larger",
            (1, 1, 4, 6),
            axes=[2, 3],
            sizes=[6, 6],
            mode="linear",
            keep_aspect_ratio_policy="not_larger",
        ),
        case(
            "linear_not_smaller",
            (1, 1, 4, 6),
            axes=[-2, -1],
            sizes=[6, 6],
            mode="linear",
            keep_aspect_ratio_policy="not_smaller",
        ),
        case("cubic_up", (1, 1, 4, 4), scales=[1.0, 1.0, 2.0, 1.5], mode="cubic"),
        case(
            "cubic_exclude_outside_a05",
            (1, 1, 4, 5),
            scales=[1.0, 1.0, 1.5, 2.0],
            mode="cubic",
            exclude_outside=True,
            cubic_coeff_a=-0.5,
        ),
        case("cubic_antialias_down", (1, 1, 9, 8), sizes=[1, 1, 4, 3], mode="cubic", antialias=True, taps=64),
        case(
            "cubic_asymmetric_down",
            (1, 1, 6, 6),
            scales=[1.0, 1.0, 0.5, 0.8],
            mode="cubic",
            coordinate_transformation_mode="asymmetric",
        ),
        case(
            "tf_crop_and_resize_linear",
            (1, 1, 4, 4),
            sizes=[1, 1, 3, 3],
            mode="linear",
            coordinate_transformation_mode="tf_crop_and_resize",
            roi=[0, 0, 0.4, 0.6, 1, 1, 1.2, 1.7],
            extrapolation_value=10.0,
        ),
        case(
            "tf_crop_and_resize_nearest_axes",
            (1, 2, 4, 4),
            axes=[2, 3],
            sizes=[3, 3],
            coordinate_transformation_mode="tf_crop_and_resize",
            roi=[-0.2, 0.4, 0.8, 1.3],
        ),
        case("1d_linear", (5,), scales=[2.2], mode="linear"),
    ]


@cases("ResizeNearest")
def resize_nearest(rng):
    def case(name, shape, **args):
        return Case("ResizeNearest", name, [uniform(rng, shape, -2, 2)], args, op_class=EXACT)

    return [
        case("up2", (1, 2, 3, 4), width_scale=2.0, height_scale=2.0),
        case("mixed", (2, 1, 4, 3), width_scale=1.5, height_scale=0.5),
        case("nhwc", (1, 3, 2, 2), width_scale=3.0, height_scale=2.0, order="NHWC"),
    ]


@cases("DepthToSpace")
def depth_to_space(rng):
    def case(name, shape, **args):
        return Case("DepthToSpace", name, [uniform(rng, shape, -2, 2)], args, op_class=EXACT)

    return [
        case("dcr", (1, 8, 2, 3), blocksize=2),
        case("crd", (2, 8, 2, 2), blocksize=2, mode="CRD"),
        case("dcr_b3", (1, 18, 1, 2), blocksize=3),
        case("b1", (1, 3, 2, 2), blocksize=1),
    ]


@cases("SpaceToDepth")
def space_to_depth(rng):
    def case(name, shape, **args):
        return Case("SpaceToDepth", name, [uniform(rng, shape, -2, 2)], args, op_class=EXACT)

    return [
        case("dcr", (1, 2, 4, 6), blocksize=2),
        case("crd", (2, 2, 4, 4), blocksize=2, mode="CRD"),
        case("b3", (1, 1, 3, 6), blocksize=3),
    ]


@cases("LpPool")
def lp_pool(rng):
    def case(name, shape, **args):
        k = 1
        for v in args["kernels"]:
            k *= v
        x = uniform(rng, shape, 0.2, 2.0) * rng.choice([-1.0, 1.0], size=shape)  # away from 0
        return Case("LpPool", name, [x], args, op_class=REDUCTION, reduction=k)

    return [
        case("p2_2d", (1, 2, 4, 5), kernels=[2, 2]),
        case("p1_stride_pads", (1, 1, 5, 5), kernels=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], p=1),
        case("p3_1d", (2, 2, 7), kernels=[3], p=3),
        case("p2_nhwc_dilated", (1, 5, 5, 2), kernels=[2, 2], dilations=[2, 1], order="NHWC"),
    ]


@cases("RMSNormalization")
def rms_normalization(rng):
    def case(name, shape, scale_shape, **args):
        axis = args.get("axis", -1) % len(shape)
        red = 1
        for d in shape[axis:]:
            red *= d
        return Case(
            "RMSNormalization",
            name,
            [uniform(rng, shape, -2, 2), uniform(rng, scale_shape, 0.5, 1.5)],
            args,
            op_class=REDUCTION,
            reduction=red,
        )

    return [
        case("last_axis", (2, 3, 5), (5,)),
        case("axis1", (2, 3, 4), (3, 4), axis=1, epsilon=1e-3),
        case("axis0_broadcast_scale", (2, 3), (1, 3), axis=0),
        case("neg_axis", (3, 2, 4), (2, 1), axis=-2),
    ]


@cases("InstanceNorm")
def instance_norm(rng):
    def case(name, shape, num_outputs=1, order="NCHW", **args):
        c = shape[1] if order == "NCHW" else shape[-1]
        x = uniform(rng, shape, -2, 2) + rng.uniform(-1, 1)
        spatial = 1
        for d in shape:
            spatial *= d
        return Case(
            "InstanceNorm",
            name,
            [x, uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,), -1, 1)],
            {"order": order, **args},
            num_outputs=num_outputs,
            op_class=REDUCTION,
            reduction=spatial // (shape[0] * c),
        )

    return [
        case("nchw", (2, 3, 4, 5)),
        case("nhwc_stats", (2, 4, 3, 3), num_outputs=3, order="NHWC"),
        case("rank3_eps", (1, 2, 6), epsilon=1e-3),
    ]


@cases("GroupNorm")
def group_norm(rng):
    def case(name, shape, groups, num_outputs=1, order="NCHW", **args):
        c = shape[1] if order == "NCHW" else shape[-1]
        x = uniform(rng, shape, -2, 2) + rng.uniform(-1, 1)
        total = 1
        for d in shape:
            total *= d
        return Case(
            "GroupNorm",
            name,
            [x, uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,), -1, 1)],
            {"num_groups": groups, "order": order, **args},
            num_outputs=num_outputs,
            op_class=REDUCTION,
            reduction=total // (shape[0] * groups),
        )

    return [
        case("g2", (2, 4, 3, 3), 2),
        case("g1_stats", (1, 3, 2, 4), 1, num_outputs=3),
        case("nhwc_g3", (2, 2, 3, 6), 3, order="NHWC", epsilon=1e-3),
        case("instance_like", (1, 4, 5), 4),
    ]


@cases("LpNormalization")
def lp_normalization(rng):
    def case(name, shape, **args):
        return Case(
            "LpNormalization",
            name,
            [uniform(rng, shape, 0.2, 2) * rng.choice([-1.0, 1.0], size=shape)],
            args,
            op_class=REDUCTION,
            reduction=shape[args.get("axis", -1)],
        )

    return [
        case("l2_last", (3, 4)),
        case("l1_axis0", (4, 3), axis=0, p=1),
        case("l2_axis1_3d", (2, 5, 3), axis=1),
    ]


@cases("MeanVarianceNormalization")
def mean_variance_normalization(rng):
    def case(name, shape, red, **args):
        return Case(
            "MeanVarianceNormalization",
            name,
            [uniform(rng, shape, -2, 2) + 0.5],
            args,
            op_class=REDUCTION,
            reduction=red,
        )

    return [
        case("default_axes", (2, 3, 2, 3), 12),
        case("last_axis", (3, 5), 5, axes=[-1]),
        case("axes_1_2", (2, 3, 4), 12, axes=[1, 2]),
    ]
