"""Cases for Concat, Split, Reshape, Transpose, Flatten, Copy (data movement: exact, every dtype)."""

from __future__ import annotations

import numpy as np

from kaffa_conformance.cases import EXACT, Case, cases, ints


def _data(rng, shape):
    """Integer-valued data, exact in every dtype (|v| < 1000 fits float16), with about a third
    zeros so bool runs see both values."""
    v = ints(rng, shape, -999, 1000)
    return np.where(rng.random(tuple(shape)) < 0.3, 0.0, v)


@cases("Concat")
def concat(rng):
    def case(name, shapes, num_outputs=2, **args):
        inputs = [_data(rng, s) for s in shapes]
        return Case("Concat", name, inputs, args, num_outputs=num_outputs, op_class=EXACT)

    return [
        case("default_axis_nchw", [(2, 3, 4), (2, 1, 4), (2, 5, 4)]),
        case("axis0", [(1, 3), (4, 3)], axis=0),
        case("axis_neg1", [(2, 3), (2, 5)], axis=-1),
        case("default_axis_nhwc", [(1, 2, 3, 4), (1, 2, 3, 5)], order="NHWC"),
        case("add_axis", [(2, 3)] * 3, axis=1, add_axis=1),
        case("add_axis_neg1", [(2, 3, 1)] * 2, axis=-1, add_axis=1),
        case("single_input", [(3, 4)], axis=0),
        case("many_odd", [(7, k) for k in (1, 13, 4, 6)], axis=1),
        case("one_output", [(2, 2), (2, 3)], num_outputs=1, axis=1),
    ]


@cases("Split")
def split(rng):
    def case(name, shape, num_outputs, **args):
        return Case("Split", name, [_data(rng, shape)], args, num_outputs=num_outputs, op_class=EXACT)

    return [
        case("equal_default_axis", (2, 6, 3), 3),
        case("split_arg", (2, 6, 3), 3, split=[1, 3, 2]),
        case("axis_neg1_equal", (3, 8), 4, axis=-1),
        case("add_axis", (2, 3, 4), 3, axis=1, add_axis=1),
        case("zero_size_part", (4, 5), 2, axis=0, split=[0, 4]),
        case("single_output", (3, 5), 1, axis=1),
        case("nhwc_default_axis", (1, 2, 2, 6), 2, order="NHWC"),
        Case(
            "Split",
            "sizes_input",
            [_data(rng, (7, 3)), np.array([2, 5])],
            {"axis": 0},
            num_outputs=2,
            op_class=EXACT,
            fixed_dtype_inputs={1: np.int64},
        ),
    ]


@cases("Reshape")
def reshape(rng):
    def case(name, shape, new_shape, num_outputs=2, inplace=()):
        return Case(
            "Reshape",
            name,
            [_data(rng, shape)],
            {"shape": new_shape},
            num_outputs=num_outputs,
            op_class=EXACT,
            inplace=inplace,
        )

    return [
        case("shape_arg", (2, 3, 4), [4, 6]),
        case("zero_and_neg1", (2, 3, 4), [0, -1]),
        case("neg1_first", (2, 3, 4), [-1, 4]),
        case("to_1d", (3, 5), [-1], num_outputs=1, inplace=[(0, 0)]),
        case("add_size1_dims", (6,), [1, 6, 1]),
        Case(
            "Reshape",
            "shape_input",
            [_data(rng, (2, 3, 4)), np.array([4, 0, -1])],
            num_outputs=2,
            op_class=EXACT,
            fixed_dtype_inputs={1: np.int64},
        ),
    ]


@cases("Transpose")
def transpose(rng):
    def case(name, shape, **args):
        return Case("Transpose", name, [_data(rng, shape)], args, op_class=EXACT)

    return [
        case("default_1d", (5,)),
        case("default_2d", (3, 5)),
        case("default_3d", (2, 3, 4)),
        case("nchw_to_nhwc", (2, 3, 4, 5), axes=[0, 2, 3, 1]),
        case("swap_first", (2, 3, 4), axes=[1, 0, 2]),
        case("size1_dims", (1, 7, 1), axes=[2, 0, 1]),
        case("identity", (3, 4), axes=[0, 1]),
        case("odd_large", (13, 67)),
    ]


@cases("Flatten")
def flatten(rng):
    def case(name, shape, inplace=(), **args):
        return Case("Flatten", name, [_data(rng, shape)], args, op_class=EXACT, inplace=inplace)

    return [
        case("axis0", (2, 3, 4), axis=0),
        case("default_axis1", (2, 3, 4), inplace=[(0, 0)]),
        case("axis2", (2, 3, 4, 5), axis=2),
        case("axis_rank", (2, 3, 4), axis=3),
        case("2d", (5, 7)),
        case("size1_dims", (1, 1, 6)),
    ]


@cases("Copy")
def copy(rng):
    def case(name, shape, inplace=()):
        return Case("Copy", name, [_data(rng, shape)], op_class=EXACT, inplace=inplace)

    return [
        case("1d", (7,)),
        case("3d", (2, 3, 4), inplace=[(0, 0)]),
        case("size1", (1, 1)),
        case("odd_large", (13, 67)),
    ]
