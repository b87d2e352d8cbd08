"""Cases for the tensor family (data movement: exact, every dtype; gradients on the float dtypes)."""

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


@cases("Squeeze")
def squeeze(rng):
    def case(name, shape, dims, inplace=()):
        return Case("Squeeze", name, [_data(rng, shape)], {"dims": dims}, op_class=EXACT, inplace=inplace)

    return [
        case("leading", (1, 3, 4), [0]),
        case("trailing", (5, 1), [1], inplace=[(0, 0)]),
        case("unsorted_repeated_dims", (2, 1, 3, 1), [3, 1, 1]),
        case("to_scalar", (1, 1), [0, 1]),
        case("keeps_other_size1", (1, 1, 7), [1]),
    ]


@cases("ExpandDims")
def expand_dims(rng):
    def case(name, shape, dims, inplace=()):
        return Case("ExpandDims", name, [_data(rng, shape)], {"dims": dims}, op_class=EXACT, inplace=inplace)

    return [
        case("leading", (3, 4), [0]),
        case("trailing", (3,), [1], inplace=[(0, 0)]),
        case("several", (2, 3), [0, 2, 4]),
        case("unsorted", (2, 3), [2, 0]),
        case("from_scalar", (), [0]),
    ]


@cases("Slice")
def slice_(rng):
    def case(name, shape, **args):
        return Case("Slice", name, [_data(rng, shape)], args, op_class=EXACT)

    def as_inputs(name, shape, starts, ends, dtype):
        ins = [_data(rng, shape), np.array(starts), np.array(ends)]
        return Case("Slice", name, ins, op_class=EXACT, fixed_dtype_inputs={1: dtype, 2: dtype})

    return [
        case("first_dim", (5, 4), starts=[1], ends=[3]),
        case("neg1_is_the_end", (4, 6), starts=[0, 2], ends=[-1, -1]),
        case("negative_start", (4, 6), starts=[0, -3], ends=[-1, -1]),
        case("clamped_end", (3, 4), starts=[1, 0], ends=[10, 2]),
        case("empty_range", (3, 4), starts=[1, 2], ends=[1, 4]),
        case("rank3_odd", (2, 7, 3), starts=[0, 1, 1], ends=[-1, 6, -2]),
        case("no_bounds_is_a_copy", (2, 3)),
        case("scalar", ()),
        case("size1_dims", (1, 5, 1), starts=[0, -4], ends=[1, -2]),
        as_inputs("inputs_int64", (4, 5, 2), [1, 0], [3, -2], np.int64),
        as_inputs("inputs_int32", (6, 3), [-4], [-1], np.int32),
    ]


@cases("Gather")
def gather(rng):
    def case(name, shape, indices, dtype=np.int64):
        ins = [_data(rng, shape), np.array(indices)]
        return Case("Gather", name, ins, op_class=EXACT, fixed_dtype_inputs={1: dtype})

    return [
        case("rows_repeated", (5, 3), [0, 4, 2, 2]),
        case("1d_data", (7,), [6, 0, 3]),
        case("2d_indices", (4, 2, 3), [[0, 1], [3, 3], [2, 0]]),
        case("scalar_index", (5, 3), 2),
        case("scalar_index_1d_data", (6,), 5),
        case("empty_indices", (3, 4), np.zeros((0,), np.int64)),
        case("int32_indices", (9, 2), [8, 1, 1, 0, 5], np.int32),
    ]


@cases("SparseToDense")
def sparse_to_dense(rng):
    def case(name, indices, values_shape, like_shape=None, dtype=np.int64):
        # Small values: repeated indices sum, and the sums stay exact in float16.
        ins = [np.array(indices), ints(rng, values_shape, -99, 100)]
        if like_shape is not None:
            ins.append(_data(rng, like_shape))
        return Case("SparseToDense", name, ins, op_class=EXACT, fixed_dtype_inputs={0: dtype})

    return [
        case("with_like", [0, 3, 3, 1], (4, 2), (5, 7)),
        case("infer_first_dim", [2, 0, 2], (3,)),
        case("2d_indices", [[1, 0], [1, 2]], (2, 2, 3), (4,)),
        case("int32_indices", [4, 4, 4, 0], (4, 1), (6, 2), np.int32),
        case("empty", np.zeros((0,), np.int64), (0, 3), (2,)),
    ]


@cases("Tile")
def tile(rng):
    def case(name, shape, **args):
        return Case("Tile", name, [_data(rng, shape)], args, op_class=EXACT)

    def as_inputs(name, shape, *extra):
        ins = [_data(rng, shape), *(np.array(v) for v in extra)]
        fixed = {i: np.int64 for i in range(1, len(ins))}
        return Case("Tile", name, ins, op_class=EXACT, fixed_dtype_inputs=fixed)

    return [
        case("axis0", (2, 3), tiles=3),
        case("defaults_once", (4,)),
        case("axis_neg1", (2, 3, 2), tiles=2, axis=-1),
        case("axis1_odd", (3, 5, 2), tiles=3, axis=1),
        case("size1_dims", (1, 1), tiles=5, axis=1),
        as_inputs("tiles_and_axis_inputs", (2, 3), [2], [1]),
        as_inputs("tiles_input", (3, 2), [4]),
    ]


@cases("Shape")
def shape(rng):
    def case(name, shape, **args):
        return Case("Shape", name, [_data(rng, shape)], args, op_class=EXACT)

    return [
        case("3d", (2, 3, 4)),
        case("scalar", ()),
        case("axes", (2, 3, 4), axes=[2, 0]),
        case("negative_axis", (5, 1, 7), axes=[-1]),
        case("empty_dim", (0, 3)),
    ]


@cases("ResizeLike")
def resize_like(rng):
    def case(name, shape, like, fixed=None):
        ins = [_data(rng, shape), _data(rng, like)]
        return Case("ResizeLike", name, ins, op_class=EXACT, fixed_dtype_inputs=fixed or {})

    return [
        case("to_2d", (2, 3, 4), (6, 4)),
        case("to_1d", (3, 4), (12,)),
        case("to_scalar", (1,), ()),
        case("like_int64", (2, 5), (5, 1, 2), {1: np.int64}),
    ]


@cases("ZerosLike")
def zeros_like(rng):
    def case(name, shape):
        return Case("ZerosLike", name, [_data(rng, shape)], op_class=EXACT)

    return [case("2d", (3, 4)), case("scalar", ()), case("empty", (0, 2))]
