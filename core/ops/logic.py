"""Comparisons and logic: EQ, LT, GT, And, Or, Not (schemas, shape inference). None is differentiable.

The binary ops broadcast like Add: numpy broadcasting, or Caffe2's legacy ``broadcast=1`` with
``axis`` / ``axis_str``. Outputs are bool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaffa import dtypes
from kaffa.ops.math import BINARY_ARGS, broadcast_shapes, canon_binary, legacy_b_shape
from kaffa.schema import TensorInfo, check, define, same_dtype


def _infer_binary_bool(name: str, logical: bool):
    def infer(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
        a, b = ins
        dtype = same_dtype(name, ins)
        if logical:
            check(
                dtype is None or dtype == dtypes.BOOL,
                f"{name}: inputs must be bool, got {dtypes.name(dtype)}",
            )
        if a.shape is None or b.shape is None:
            return [TensorInfo(None, dtypes.BOOL)]
        if args["broadcast"]:
            legacy_b_shape(name, a.shape, b.shape, args["axis"])
            return [TensorInfo(a.shape, dtypes.BOOL)]
        return [TensorInfo(broadcast_shapes(name, a.shape, b.shape), dtypes.BOOL)]

    return infer


for _name, _sym, _types, _inplace in (
    ("EQ", "A == B", (*dtypes.ALL_NUMERIC_TYPES, dtypes.BOOL), None),
    ("LT", "A < B", dtypes.ALL_NUMERIC_TYPES, None),
    ("GT", "A > B", dtypes.ALL_NUMERIC_TYPES, None),
    ("And", "A and B", (dtypes.BOOL,), {(0, 0), (1, 0)}),
    ("Or", "A or B", (dtypes.BOOL,), {(0, 0), (1, 0)}),
):
    define(
        _name,
        family="logic",
        doc=f"Elementwise {_sym} -> bool, with numpy broadcasting (or Caffe2's legacy broadcast=1).",
        inputs=2,
        input_docs=[("A", "left operand"), ("B", "right operand, same dtype")],
        output_docs=[("C", "bool, broadcast shape")],
        args=BINARY_ARGS,
        canonicalize=canon_binary,
        inplace=_inplace,
        infer=_infer_binary_bool(_name, logical=_name in ("And", "Or")),
        dtypes=_types,
        differentiable=False,
    )


def _infer_not(args: Mapping[str, Any], ins: list[TensorInfo], n: int) -> list[TensorInfo]:
    x = ins[0]
    check(x.dtype is None or x.dtype == dtypes.BOOL, f"Not: X must be bool, got {dtypes.name(x.dtype)}")
    return [x]


define(
    "Not",
    family="logic",
    doc="Elementwise logical not of a bool tensor.",
    inputs=1,
    input_docs=[("X", "bool input")],
    output_docs=[("Y", "bool")],
    inplace="one_to_one",
    infer=_infer_not,
    dtypes=(dtypes.BOOL,),
    differentiable=False,
)
