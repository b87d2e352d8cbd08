"""Fillers: ConstantFill, GivenTensor*Fill, GaussianFill, UniformFill, XavierFill, MSRAFill. No
gradients.

Shape comes from the `shape` argument, from input 0's shape, or (input_as_shape=1) from input 0's
values; `extra_shape` is appended. Random fillers draw from a generator seeded by the op's
DeviceOption.random_seed (or kaffa.set_random_seed), so seeded nets are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kaffa import dtypes
from kaffa.schema import Arg, ArgType, TensorInfo, check, define

F32 = np.dtype(np.float32)

_SHAPE_ARGS = [
    Arg("shape", ArgType.INTS, [], "output shape (without an input)"),
    Arg("extra_shape", ArgType.INTS, [], "dims appended to the shape"),
    Arg("input_as_shape", ArgType.BOOL, False, "input 0 holds the shape as a 1-D int tensor"),
]


def fill_shape(args: Mapping[str, Any], ins: list[TensorInfo], op: str) -> tuple[int | None, ...] | None:
    extra = tuple(args["extra_shape"])
    if not ins:
        check(all(d >= 0 for d in args["shape"]), f"{op}: shape {args['shape']} has a negative dim")
        return tuple(args["shape"]) + extra
    check(not args["shape"], f"{op}: give the shape either as the `shape` argument or as input 0, not both")
    if args["input_as_shape"]:
        s = ins[0].shape
        check(
            s is None or len(s) == 1, f"{op}: with input_as_shape the input must be 1-D, got {list(s or ())}"
        )
        if s is None or s[0] is None:
            return None
        return (None,) * s[0] + extra
    return None if ins[0].shape is None else tuple(ins[0].shape) + extra


# Fillers whose scale comes from the shape: the least rank they need for their fan.
_MIN_RANK = {"XavierFill": 1, "MSRAFill": 2}
_RANDOM = ("GaussianFill", "UniformFill", "XavierFill", "MSRAFill")


def _fill_infer(default_dtype: np.dtype | None, op: str = "fill"):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        dtype = args.get("dtype") or default_dtype
        shape = fill_shape(args, ins, op)
        rank = _MIN_RANK.get(op, 0)
        check(
            shape is None or len(shape) >= rank,
            f"{op} needs an output of rank >= {rank} (its fan is computed from dim {rank - 1}), "
            f"got shape {list(shape or ())}",
        )
        if (
            "values" in args and shape is not None and None not in shape
        ):  # GivenTensor*Fill: one value per element
            want = int(np.prod(shape, dtype=np.int64))
            check(
                len(args["values"]) == want,
                f"{len(args['values'])} values cannot fill shape {list(shape)} ({want} elements)",
            )
        return [TensorInfo(shape, dtype)]

    return infer


def _fill_op(name: str, doc: str, args: list[Arg], default_dtype: np.dtype | None, claims) -> None:
    define(
        name,
        family="fill",
        doc=doc,
        inputs=(0, 1),
        input_docs=[
            ("shape_or_like", "a tensor whose shape (or, with input_as_shape, values) sets the shape")
        ],
        output_docs=[("output", "filled tensor")],
        args=[*_SHAPE_ARGS, *args],
        infer=_fill_infer(default_dtype, name),
        dtypes=claims,
        type_input=None,
        differentiable=False,
        stochastic=name in _RANDOM,
    )


_fill_op(
    "ConstantFill",
    "Fill with `value` (cast to `dtype`).",
    [Arg("value", ArgType.FLOAT, 0.0, "the constant"), Arg("dtype", ArgType.DTYPE, F32, "output dtype")],
    F32,
    dtypes.ALL_TYPES,
)
_fill_op(
    "GaussianFill",
    "Fill with normal samples N(mean, std²).",
    [Arg("mean", ArgType.FLOAT, 0.0), Arg("std", ArgType.FLOAT, 1.0), Arg("dtype", ArgType.DTYPE, F32)],
    F32,
    dtypes.FLOAT_TYPES,
)
_fill_op(
    "UniformFill",
    "Fill with uniform samples in [min, max).",
    [Arg("min", ArgType.FLOAT, 0.0), Arg("max", ArgType.FLOAT, 1.0), Arg("dtype", ArgType.DTYPE, F32)],
    F32,
    dtypes.FLOAT_TYPES,
)

_fill_op(
    "XavierFill",
    "Fill with uniform samples in [-s, s], s = sqrt(3 / fan_in), fan_in = size / shape[0] "
    "(Caffe2's rule; for FC weights [N, K] that is K, for Conv filters C/group * kH * kW).",
    [Arg("dtype", ArgType.DTYPE, F32)],
    F32,
    dtypes.FLOAT_TYPES,
)
_fill_op(
    "MSRAFill",
    "Fill with normal samples N(0, s²), s = sqrt(2 / fan_out), fan_out = size / shape[1] "
    "(Caffe2's rule; for Conv filters [M, C, kH, kW] that is M * kH * kW).",
    [Arg("dtype", ArgType.DTYPE, F32)],
    F32,
    dtypes.FLOAT_TYPES,
)

# GivenTensor*Fill: the values are in the op (how init_net.pb stores weights).
for _name, _arg_type, _dtype in (
    ("GivenTensorFill", ArgType.FLOATS, F32),
    ("GivenTensorDoubleFill", ArgType.FLOATS, np.dtype(np.float64)),
    ("GivenTensorIntFill", ArgType.INTS, np.dtype(np.int32)),
    ("GivenTensorInt64Fill", ArgType.INTS, np.dtype(np.int64)),
    ("GivenTensorBoolFill", ArgType.INTS, np.dtype(np.bool_)),
):
    _extra = [Arg("values", _arg_type, [], "the elements, row-major", bulk=True)]
    if _name == "GivenTensorFill":
        _extra.append(Arg("dtype", ArgType.DTYPE, F32, "output dtype"))
    _fill_op(
        _name,
        f"Fill with the given values ({_dtype.name}).",
        _extra,
        _dtype,
        dtypes.FLOAT_TYPES if _name == "GivenTensorFill" else (_dtype,),
    )
