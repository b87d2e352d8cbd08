"""Cases for Allreduce, Broadcast, Allgather, Barrier, run in one process (world size 1, where each
is an identity): they check the kernels' plumbing (several inputs fused per dtype, mixed dtypes,
in place, 0-d and empty tensors) and that outputs keep shapes and dtypes. Integer-valued data
keeps float16 exact."""

from __future__ import annotations

import numpy as np

from kaffa.dtypes import FLOAT_TYPES
from kaffa_conformance.cases import EXACT, Case, cases, ints, uniform


@cases("Allreduce")
def allreduce(rng):
    def case(name, inputs, **args):
        n = len(inputs)
        floats = FLOAT_TYPES if args.get("reduction") == "mean" else None  # a mean of ints is refused
        return Case(
            "Allreduce",
            name,
            inputs,
            args,
            num_outputs=n,
            op_class=EXACT,
            inplace=[(i, i) for i in range(n)],
            dtypes=floats,
        )

    return [
        case("sum_one", [ints(rng, (3, 4))]),
        case("mean_one", [uniform(rng, (5,))], reduction="mean"),
        case("sum_fused", [ints(rng, (2, 3)), ints(rng, (7,)), ints(rng, ())]),
        case("mean_fused", [uniform(rng, (4, 1, 3)), uniform(rng, (9,))], reduction="mean"),
        case("empty", [np.zeros((0, 3)), ints(rng, (2,))]),
        Case(
            "Allreduce",
            "sum_mixed_dtypes",
            [ints(rng, (3,)), np.arange(6, dtype=np.int64).reshape(2, 3)],
            num_outputs=2,
            op_class=EXACT,
            fixed_dtype_inputs={1: np.int64},
        ),
        case("comm_self", [ints(rng, (2, 2))], comm="self"),
        case("timeout", [ints(rng, (4,))], timeout=5.0),
    ]


@cases("Broadcast")
def broadcast(rng):
    def case(name, inputs, **args):
        n = len(inputs)
        return Case(
            "Broadcast", name, inputs, args, num_outputs=n, op_class=EXACT, inplace=[(i, i) for i in range(n)]
        )

    return [
        case("one", [uniform(rng, (3, 4))]),
        case("fused_odd_sizes", [uniform(rng, (3,)), uniform(rng, (5, 1)), uniform(rng, ())]),
        case("empty", [np.zeros((2, 0))]),
        case("root_0_explicit", [ints(rng, (6,))], root=0),
        case("comm_self", [uniform(rng, (2, 3))], comm="self"),
    ]


@cases("Allgather")
def allgather(rng):
    def case(name, x, **args):
        return Case("Allgather", name, [x], args, op_class=EXACT)

    return [
        case("1d", uniform(rng, (5,))),
        case("3d", uniform(rng, (2, 3, 4))),
        case("one_row", ints(rng, (1, 7))),
        case("comm_self", uniform(rng, (3, 2)), comm="self"),
    ]


@cases("Barrier")
def barrier(rng):
    return [
        Case("Barrier", "pass_one", [uniform(rng, (4, 2))], op_class=EXACT, inplace=[(0, 0)]),
        Case(
            "Barrier",
            "pass_two",
            [uniform(rng, (3,)), uniform(rng, (2, 2))],
            num_outputs=2,
            op_class=EXACT,
            inplace=[(0, 0), (1, 1)],
        ),
    ]
