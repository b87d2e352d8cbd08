"""Conformance cases for the index family (see kaffa.ops.index).

Data is integer-valued (exact in every dtype, float16 included), so selections and data movement
are EXACT. Indices are int64 inputs of fixed dtype, with negative entries where the op allows them.
Gradient cases avoid ties (TopK draws permutations) and duplicate indices where the op overwrites
(ScatterElements/ScatterND with reduction none); reductions mul/max/min have no gradient.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import EXACT, REDUCTION, Case, cases, ints

I64 = np.int64


def _data(rng, shape, low=-9, high=10):
    return ints(rng, shape, low, high)


def _distinct(rng, shape):
    """Distinct integer values (no ties), exact in float16."""
    n = int(np.prod(shape))
    return (rng.permutation(n) - n // 2).astype(np.float64).reshape(shape)


def _idx(values):
    return np.asarray(values, dtype=I64)


# -- ArgMax / ArgMin --------------------------------------------------------------------------------
def _arg_cases(op):
    def gen(rng):
        def case(name, shape, **args):
            return Case(op, name, [_data(rng, shape, -3, 4)], args, op_class=EXACT)

        return [
            case("default_2d", (3, 5)),
            case("axis0_no_keepdims", (4, 3), axis=0, keepdims=0),
            case("select_last_index", (5, 6), axis=1, select_last_index=1),
            case("select_last_axis0", (6, 3, 2), axis=0, select_last_index=1, keepdims=0),
            case("1d", (9,)),
            case("4d_axis_neg3", (2, 3, 4, 5), axis=-3),
            case("length1_axis", (3, 1), axis=1, keepdims=0),
        ]

    return gen


cases("ArgMax")(_arg_cases("ArgMax"))
cases("ArgMin")(_arg_cases("ArgMin"))


# -- TopK --------------------------------------------------------------------------------------------
@cases("TopK")
def top_k(rng):
    def case(name, shape, k_input=None, num_outputs=2, **args):
        inputs = [_distinct(rng, shape)]
        fixed = {}
        if k_input is not None:
            inputs.append(_idx([k_input]))
            fixed = {1: I64}
        return Case(
            "TopK", name, inputs, args, num_outputs=num_outputs, op_class=EXACT, fixed_dtype_inputs=fixed
        )

    ties = Case("TopK", "ties_lower_index_first", [_data(rng, (4, 7), -2, 3)], {"k": 4}, num_outputs=2)
    ties.op_class, ties.grad = EXACT, False  # ties: the gradient is not defined at them
    ties_small = Case(
        "TopK", "ties_smallest", [_data(rng, (3, 6), -2, 3)], {"k": 3, "largest": 0}, num_outputs=2
    )
    ties_small.op_class, ties_small.grad = EXACT, False  # as above
    return [
        case("k_arg_last_axis", (3, 6), k=2),
        case("k_input", (4, 5), k_input=3),
        case("smallest", (3, 6), k=4, largest=0),
        case("axis0", (5, 3), k=2, axis=0),
        case("axis1_3d", (2, 6, 3), k=6, axis=1),
        case("k_zero", (2, 4), k=0),
        case("1d", (10,), k=3),
        case("unsorted_flag", (3, 5), k=2, sorted=0),
        case("k1", (3, 5), k=1),
        ties,
        ties_small,
    ]


# -- GatherElements / ScatterElements ------------------------------------------------------------------
@cases("GatherElements")
def gather_elements(rng):
    def case(name, shape, idx_shape, axis, **kw):
        dim = shape[axis]
        idx = rng.integers(-dim, dim, size=idx_shape)
        return Case(
            "GatherElements",
            name,
            [_data(rng, shape), idx],
            {"axis": axis},
            op_class=EXACT,
            fixed_dtype_inputs={1: I64},
            **kw,
        )

    return [
        case("axis0", (3, 4), (2, 4), 0),
        case("axis1", (3, 4), (3, 6), 1),
        case("axis_neg1_3d", (2, 3, 5), (2, 2, 4), -1),
        case("smaller_off_axis", (4, 5), (2, 3), 0),
        case("1d", (7,), (10,), 0),
        case("empty", (3, 4), (0, 4), 0),
    ]


def _unique_along(rng, data_shape, idx_shape, axis, negative=True):
    """Indices that never repeat along `axis` (a permutation prefix per line)."""
    dim = data_shape[axis]
    moved = list(idx_shape)
    n = moved.pop(axis)
    lines = [rng.permutation(dim)[:n] for _ in range(int(np.prod(moved)))]
    arr = np.array(lines, dtype=I64).reshape((*moved, n))
    arr = np.moveaxis(arr, -1, axis)
    if negative:
        arr = np.where(rng.random(arr.shape) < 0.3, arr - dim, arr)
    return arr


@cases("ScatterElements")
def scatter_elements(rng):
    def case(name, shape, idx_shape, axis, reduction="none", unique=True, low=-9, high=10, **kw):
        if unique:
            idx = _unique_along(rng, shape, idx_shape, axis % len(shape))
        else:
            dim = shape[axis]
            idx = rng.integers(-dim, dim, size=idx_shape)
        inputs = [_data(rng, shape, low, high), idx, _data(rng, idx_shape, low, high)]
        args = {"axis": axis} if reduction == "none" else {"axis": axis, "reduction": reduction}
        return Case("ScatterElements", name, inputs, args, op_class=EXACT, fixed_dtype_inputs={1: I64}, **kw)

    return [
        case("axis0", (3, 4), (2, 4), 0),
        case("axis1", (3, 5), (3, 2), 1),
        case("axis_neg1_3d", (2, 3, 5), (2, 2, 3), -1),
        case("inplace", (4, 3), (2, 3), 0, inplace=[(0, 0)]),
        case("add_duplicates", (3, 4), (5, 4), 0, "add", unique=False),
        case("add_axis1", (2, 6), (2, 9), 1, "add", unique=False),
        # mul/max/min have no gradient (only none and add do).
        case("mul_duplicates", (3, 4), (4, 4), 0, "mul", unique=False, low=-2, high=3, grad=False),
        case("max_duplicates", (3, 4), (5, 4), 0, "max", unique=False, grad=False),
        case("min_axis1", (3, 4), (3, 6), 1, "min", unique=False, grad=False),
    ]


# -- GatherND / ScatterND -----------------------------------------------------------------------------
def _nd_indices(rng, data_shape, lead, k, b=0):
    cols = [rng.integers(-data_shape[b + j], data_shape[b + j], size=lead) for j in range(k)]
    return np.stack(cols, axis=-1).astype(I64)


@cases("GatherND")
def gather_nd(rng):
    def case(name, shape, lead, k, b=0):
        idx = _nd_indices(rng, shape, (*shape[:b], *lead), k, b)
        args = {"batch_dims": b} if b else {}
        return Case(
            "GatherND", name, [_data(rng, shape), idx], args, op_class=EXACT, fixed_dtype_inputs={1: I64}
        )

    return [
        case("k1_rows", (4, 3), (2,), 1),
        case("k2_elements", (4, 3), (5,), 2),
        case("k1_3d_lead2", (3, 4, 2), (2, 3), 1),
        case("k3_full", (2, 3, 4), (4,), 3),
        case("batch_dims1", (2, 3, 4), (2,), 1, b=1),
        case("batch_dims1_k2", (3, 4, 5), (2,), 2, b=1),
    ]


def _unique_nd(rng, shape, n, k):
    """n distinct index tuples into the first k dims of shape."""
    flat = rng.permutation(int(np.prod(shape[:k])))[:n]
    return np.stack(np.unravel_index(flat, shape[:k]), axis=-1).astype(I64)


@cases("ScatterND")
def scatter_nd(rng):
    def case(name, shape, idx, reduction="none", b=0, low=-9, high=10, **kw):
        upd_shape = (*idx.shape[:-1], *shape[b + idx.shape[-1] :])
        args = {}
        if reduction != "none":
            args["reduction"] = reduction
        if b:
            args["batch_dims"] = b
        inputs = [_data(rng, shape, low, high), idx, _data(rng, upd_shape, low, high)]
        return Case("ScatterND", name, inputs, args, op_class=EXACT, fixed_dtype_inputs={1: I64}, **kw)

    dup = _idx([[1], [0], [1], [-1]])
    return [
        case("k1_rows", (4, 3), _unique_nd(rng, (4, 3), 2, 1)),
        case("k2_elements", (4, 3), _unique_nd(rng, (4, 3), 5, 2)),
        case("k2_3d_slices", (3, 4, 2), _unique_nd(rng, (3, 4, 2), 3, 2).reshape(3, 1, 2)),
        case("negative", (4, 3), _idx([[-1, -3], [0, 2]])),
        case("inplace", (5, 2), _unique_nd(rng, (5, 2), 3, 1), inplace=[(0, 0)]),
        case("add_duplicates", (4, 3), dup, "add"),
        case("batch_dims1", (2, 4, 3), _idx([[[3], [0]], [[1], [2]]]), b=1),
        case("batch_dims1_add", (2, 4), _idx([[[1], [1]], [[0], [3]]]), "add", b=1),
        # mul/max/min have no gradient (only none and add do).
        case("mul_duplicates", (4, 3), dup, "mul", low=-2, high=3, grad=False),
        case("max_duplicates", (4, 3), dup, "max", grad=False),
        case("min_duplicates", (4, 3), dup, "min", grad=False),
    ]


# -- Trilu ----------------------------------------------------------------------------------------------
@cases("Trilu")
def trilu(rng):
    def case(name, shape, k_input=None, **kw):
        inputs, fixed = [_data(rng, shape)], {}
        if k_input is not None:
            inputs.append(np.array(k_input, dtype=I64))
            fixed = {1: I64}
        args = {a: kw.pop(a) for a in ("upper", "k") if a in kw}
        return Case("Trilu", name, inputs, args, op_class=EXACT, fixed_dtype_inputs=fixed, **kw)

    return [
        case("upper_square", (4, 4)),
        case("lower_square", (4, 4), upper=0),
        case("upper_wide_k1", (3, 5), k=1),
        case("lower_tall_kneg1", (5, 3), upper=0, k=-1),
        case("k_input_neg", (4, 5), k_input=-2),
        case("k_input_lower_pos", (4, 5), k_input=2, upper=0),
        case("k_beyond", (3, 4), k=7),
        case("k_beyond_lower", (3, 4), k=-5, upper=0),
        case("batched_3d", (2, 3, 4), upper=0),
        case("inplace", (3, 3), k=1, inplace=[(0, 0)]),
    ]


# -- OneHot ---------------------------------------------------------------------------------------------
@cases("OneHot")
def one_hot(rng):
    def case(name, idx, depth, axis=None, idx_dtype=I64):
        args = {} if axis is None else {"axis": axis}
        inputs = [np.asarray(idx, dtype=np.float64), np.array(depth, dtype=I64), np.array([2.0, 5.0])]
        return Case("OneHot", name, inputs, args, op_class=EXACT, fixed_dtype_inputs={0: idx_dtype, 1: I64})

    return [
        case("1d", [0, 3, 1, 2], 4),
        case("2d_axis_last", [[1, 0], [2, 4]], 5),
        case("axis0", [[1, 0, 2], [2, 1, 0]], 3, axis=0),
        case("axis1_of_3", [[1, 0, 2], [2, 1, 0]], 3, axis=1),
        case("negative_and_out_of_range", [-1, -3, 3, 7, 0], 3),
        case("float_indices", [0.0, 2.7, 1.2, -1.5], 3, idx_dtype=np.float64),
        case("depth1", [0, 0, 1], 1),
    ]


# -- Range ----------------------------------------------------------------------------------------------
@cases("Range")
def range_(rng):
    def case(name, start, limit, delta, dtypes=None):
        inputs = [np.array(v, dtype=np.float64) for v in (start, limit, delta)]
        return Case("Range", name, inputs, dtypes=dtypes)

    floats = dtypes.FLOAT_TYPES
    return [
        case("positive", 0, 10, 3),
        case("negative_delta", 10, 4, -2),
        case("exact_end", 1, 9, 2),
        case("empty", 5, 1, 2),
        case("one", 3, 4, 5),
        case("fractional", 0.5, 3.0, 0.25, floats),
        case("fractional_negative", 1.0, -2.0, -0.75, floats),
    ]


# -- CumSum / CumProd ------------------------------------------------------------------------------------
def _cum_cases(op, low, high):
    def gen(rng):
        def case(name, shape, axis=None, axis_input=None, data=None, **args):
            x = _data(rng, shape, low, high) if data is None else data
            inputs, fixed = [x], {}
            if axis_input is not None:
                inputs.append(np.array(axis_input, dtype=I64))
                fixed = {1: I64}
            if axis is not None:
                args["axis"] = axis
            ax = (axis_input if axis_input is not None else (axis or 0)) % len(shape)
            inplace = args.pop("inplace", ())
            return Case(
                op,
                name,
                inputs,
                args,
                op_class=REDUCTION,
                reduction=shape[ax],
                fixed_dtype_inputs=fixed,
                inplace=inplace,
            )

        out = [
            case("1d", (6,)),
            case("axis1", (3, 5), axis=1),
            case("axis_input", (3, 4), axis_input=1),
            case("axis_input_neg", (2, 3, 4), axis_input=-1),
            case("exclusive", (4, 3), exclusive=1),
            case("reverse", (3, 5), axis=1, reverse=1),
            case("exclusive_reverse", (2, 5, 2), axis=1, exclusive=1, reverse=1),
            case("inplace", (3, 4), axis=0, inplace=[(0, 0)]),
        ]
        return out

    return gen


cases("CumSum")(_cum_cases("CumSum", -9, 10))


@cases("CumProd")
def cum_prod(rng):
    # Factors in {-2, -1, 1, 2}: no zeros (but see with_zeros), products stay exact in float16.
    def factors(shape):
        return rng.choice([-2.0, -1.0, 1.0, 2.0], size=shape)

    def case(name, x, axis_input=None, **args):
        inputs, fixed = [x], {}
        if axis_input is not None:
            inputs.append(np.array(axis_input, dtype=I64))
            fixed = {1: I64}
        ax = (axis_input if axis_input is not None else args.get("axis", 0)) % x.ndim
        return Case(
            "CumProd", name, inputs, args, op_class=REDUCTION, reduction=x.shape[ax], fixed_dtype_inputs=fixed
        )

    zeros = factors((3, 5))
    zeros[0, 1] = zeros[1, 3] = zeros[2, 0] = zeros[2, 2] = 0.0
    return [
        case("1d", factors((6,))),
        case("axis1", factors((3, 5)), axis=1),
        case("axis_input", factors((3, 4)), axis_input=1),
        case("exclusive", factors((4, 3)), exclusive=1),
        case("reverse", factors((3, 5)), axis=1, reverse=1),
        case("exclusive_reverse", factors((2, 5, 2)), axis=1, exclusive=1, reverse=1),
        case("with_zeros", zeros, axis=1),
        case("with_zeros_exclusive_reverse", zeros.copy(), axis=1, exclusive=1, reverse=1),
    ]


# -- EyeLike, ConstantOfShape -----------------------------------------------------------------------------
@cases("EyeLike")
def eye_like(rng):
    def case(name, shape, **args):
        return Case("EyeLike", name, [_data(rng, shape)], args, op_class=EXACT)

    return [
        case("square", (4, 4)),
        case("wide_k1", (3, 5), k=1),
        case("tall_kneg2", (5, 3), k=-2),
        case("k_beyond", (3, 3), k=4),
        case("dtype_int32", (3, 4), dtype=np.int32),
        case("dtype_float32", (4, 2), k=-1, dtype=np.float32),
        case("empty", (0, 3)),
    ]


@cases("ConstantOfShape")
def constant_of_shape(rng):
    def case(name, shape, **args):
        return Case(
            "ConstantOfShape",
            name,
            [np.array(shape, dtype=I64).reshape(-1)],
            args,
            op_class=EXACT,
            fixed_dtype_inputs={0: I64},
        )

    return [
        case("default_zero", [2, 3]),
        case("ones_3d", [2, 1, 4], value=1.0),
        case("fractional", [5], value=2.5),
        case("negative", [3, 2], value=-3.0),
        case("scalar", [], value=7.0),
        case("zero_dim", [2, 0, 3], value=1.0),
    ]


# -- NonZero, Compress -----------------------------------------------------------------------------------
@cases("NonZero")
def non_zero(rng):
    def case(name, shape):
        x = np.where(rng.random(shape) < 0.4, 0.0, _data(rng, shape, 1, 9))
        return Case("NonZero", name, [x], op_class=EXACT)

    out = [case("1d", (9,)), case("2d", (3, 4)), case("3d", (2, 3, 4))]
    out.append(Case("NonZero", "all_zero", [np.zeros((2, 3))], op_class=EXACT))
    out.append(Case("NonZero", "scalar", [np.array(3.0)], op_class=EXACT))
    return out


@cases("Compress")
def compress(rng):
    def case(name, shape, cond, **args):
        return Case(
            "Compress",
            name,
            [_data(rng, shape), np.array(cond, dtype=bool)],
            args,
            op_class=EXACT,
            fixed_dtype_inputs={1: bool},
        )

    return [
        case("flat", (2, 3), [1, 0, 1, 1, 0, 1]),
        case("flat_short_condition", (2, 3), [0, 1, 1]),
        case("axis0", (4, 3), [1, 0, 1, 1], axis=0),
        case("axis1", (3, 4), [0, 1, 1, 0], axis=1),
        case("axis_neg1_short", (2, 3, 5), [1, 0, 1], axis=-1),
        case("all_false", (3, 2), [0, 0, 0], axis=0),
    ]


# -- Hardmax, ReverseSequence ---------------------------------------------------------------------------
@cases("Hardmax")
def hardmax(rng):
    def case(name, x, **args):
        return Case("Hardmax", name, [x], args, op_class=EXACT)

    return [
        case("last_axis", _distinct(rng, (3, 5))),
        case("axis0", _distinct(rng, (4, 3)), axis=0),
        case("3d_axis1", _distinct(rng, (2, 4, 3)), axis=1),
        case("ties_first", _data(rng, (5, 4), -1, 2)),
        case("1d", _distinct(rng, (7,))),
    ]


@cases("ReverseSequence")
def reverse_sequence(rng):
    def case(name, shape, lens, **args):
        return Case(
            "ReverseSequence",
            name,
            [_data(rng, shape), np.array(lens, dtype=I64)],
            args,
            op_class=EXACT,
            fixed_dtype_inputs={1: I64},
        )

    return [
        case("time_major", (4, 3), [4, 2, 1]),
        case("batch_major", (3, 5), [1, 5, 3], batch_axis=0, time_axis=1),
        case("time_major_3d", (5, 2, 3), [0, 5]),
        case("batch_major_4d", (2, 4, 2, 2), [3, 4], batch_axis=0, time_axis=1),
    ]
