"""ONNX translators onto the spatial family (see kaffa.ops.spatial): Resize, Upsample,
DepthToSpace, SpaceToDepth, LpPool, RMSNormalization, InstanceNormalization, GroupNormalization,
LpNormalization, MeanVarianceNormalization."""

from __future__ import annotations

import numpy as np

from kaffa.onnx.importer import Context, Node, translator, unsupported
from kaffa.onnx.ops_nn import _window


def _floats(v) -> list[float]:
    return [float(x) for x in np.asarray(v, dtype=np.float64).ravel()]


@translator("Resize")
def _resize(ctx: Context, node: Node) -> None:
    x = node.inputs[0]
    args: dict = {}
    if ctx.opset < 11:  # Resize-10: X, scales; asymmetric coordinates, nearest rounds down
        scales = ctx.need_const(node.input(1), "scales")
        args.update(scales=_floats(scales), coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        mode = node.attr("mode", "nearest")
        ctx.op("Resize", [x], node.outputs[:1], mode=mode, **args)
        return
    roi_name, scales_name, sizes_name = node.input(1), node.input(2), node.input(3)
    scales = ctx.const(scales_name) if scales_name else None
    sizes = ctx.const(sizes_name) if sizes_name else None
    if scales_name and scales is None:
        raise unsupported("scales must be a constant", scales_name)
    if sizes_name and sizes is None:
        raise unsupported("sizes must be a constant", sizes_name)
    if scales is not None and scales.size:
        args["scales"] = _floats(scales)
    elif sizes is not None and sizes.size:
        args["sizes"] = [int(v) for v in np.asarray(sizes).ravel()]
    else:
        raise unsupported("neither scales nor sizes is given")
    ctm = node.attr("coordinate_transformation_mode", "half_pixel")
    if ctm == "tf_crop_and_resize":
        roi = ctx.need_const(roi_name, "roi") if roi_name else None
        if roi is None or not roi.size:
            raise unsupported("tf_crop_and_resize without roi")
        args["roi"] = _floats(roi)
    axes = node.attr("axes")
    if axes is not None:
        args["axes"] = [int(a) for a in axes]
    ctx.op(
        "Resize",
        [x],
        node.outputs[:1],
        mode=node.attr("mode", "nearest"),
        coordinate_transformation_mode=ctm,
        nearest_mode=node.attr("nearest_mode", "round_prefer_floor"),
        cubic_coeff_a=float(node.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(node.attr("exclude_outside", 0)),
        extrapolation_value=float(node.attr("extrapolation_value", 0.0)),
        antialias=bool(node.attr("antialias", 0)),
        keep_aspect_ratio_policy=node.attr("keep_aspect_ratio_policy", "stretch"),
        **args,
    )


@translator("Upsample")
def _upsample(ctx: Context, node: Node) -> None:
    scales = node.attr("scales")
    if scales is None:
        scales = ctx.need_const(node.input(1), "scales")
    mode = node.attr("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    ctx.op(
        "Resize",
        node.inputs[:1],
        node.outputs[:1],
        mode=mode,
        scales=_floats(scales),
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


@translator("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx: Context, node: Node) -> None:
    mode = node.attr("mode", "DCR")  # SpaceToDepth has mode from opset 25 on
    ctx.op(node.op_type, node.inputs[:1], node.outputs[:1], blocksize=int(node.attr("blocksize")), mode=mode)


@translator("LpPool")
def _lp_pool(ctx: Context, node: Node) -> None:
    kernels = [int(k) for k in node.attr("kernel_shape")]
    args = _window(ctx, node, len(kernels), kernels)
    p = node.attr("p", 2)
    if float(p) != int(p):
        raise unsupported(f"non-integer p {p}")
    ctx.op("LpPool", node.inputs[:1], node.outputs[:1], p=int(p), **args)


@translator("RMSNormalization")
def _rms_norm(ctx: Context, node: Node) -> None:
    ctx.op(
        "RMSNormalization",
        node.inputs[:2],
        node.outputs[:1],
        axis=int(node.attr("axis", -1)),
        epsilon=float(node.attr("epsilon", 1e-5)),
    )


@translator("InstanceNormalization")
def _instance_norm(ctx: Context, node: Node) -> None:
    ctx.op("InstanceNorm", node.inputs[:3], node.outputs[:1], epsilon=float(node.attr("epsilon", 1e-5)))


@translator("GroupNormalization")
def _group_norm(ctx: Context, node: Node) -> None:
    groups = int(node.attr("num_groups"))
    x, scale, bias = node.inputs[:3]
    if ctx.opset < 21:  # GroupNormalization-18: scale and bias per group
        shape = ctx.shape(x)
        if shape is None or len(shape) < 2 or shape[1] is None:
            raise unsupported("opset-18 GroupNormalization needs a static channel count")
        per = int(shape[1]) // groups
        s = ctx.need_const(scale, "scale")
        b = ctx.need_const(bias, "bias")
        scale = ctx.add_const(x + "_gn_scale", np.repeat(s, per))
        bias = ctx.add_const(x + "_gn_bias", np.repeat(b, per))
    ctx.op(
        "GroupNorm",
        [x, scale, bias],
        node.outputs[:1],
        num_groups=groups,
        epsilon=float(node.attr("epsilon", 1e-5)),
    )


@translator("LpNormalization")
def _lp_normalization(ctx: Context, node: Node) -> None:
    ctx.op(
        "LpNormalization",
        node.inputs[:1],
        node.outputs[:1],
        axis=int(node.attr("axis", -1)),
        p=int(node.attr("p", 2)),
    )


@translator("MeanVarianceNormalization")
def _mvn(ctx: Context, node: Node) -> None:
    axes = node.attr("axes")
    ctx.op(
        "MeanVarianceNormalization",
        node.inputs[:1],
        node.outputs[:1],
        axes=[int(a) for a in axes] if axes is not None else [0, 2, 3],
    )
