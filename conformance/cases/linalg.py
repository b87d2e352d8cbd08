"""Cases for Einsum and Det.

Einsum runs on integer dtypes too, so its data is integer-valued (exact everywhere) except in the
``float_values`` case. Det's matrices are drawn well away from singular (a scaled identity plus
noise), with one exactly singular case for the gradient's adjugate.
"""

from __future__ import annotations

import numpy as np

from kaffa import dtypes
from kaffa_conformance.cases import GEMM, Case, cases, ints, uniform

# (name, equation, input shapes, length of the longest sum behind one output element)
_EINSUM = [
    ("matmul", "ij,jk->ik", [(3, 4), (4, 5)], 4),
    ("batch_matmul_spaces", "bij, bjk -> bik", [(2, 3, 4), (2, 4, 2)], 4),
    ("transpose", "ij->ji", [(3, 4)], 1),
    ("sum_rows", "ij->i", [(3, 5)], 5),
    ("implicit_inner", "i,i", [(6,), (6,)], 6),
    ("implicit_outer_sorted", "ji,k", [(2, 3), (4,)], 1),
    ("trace", "ii", [(4, 4)], 4),
    ("batch_diagonal", "...ii->...i", [(3, 4, 4)], 1),
    ("ellipsis_broadcast", "...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)], 4),
    ("broadcast_size1", "ab,ab->a", [(3, 1), (3, 4)], 4),
    ("three_inputs", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], 12),
    ("sum_only_in_one", "ij,k->k", [(3, 2), (4,)], 6),
    ("scalar", "->", [()], 1),
    ("diag_times", "ii,i->i", [(3, 3), (3,)], 1),
]


@cases("Einsum")
def einsum(rng):
    out = [
        Case(
            "Einsum",
            name,
            [ints(rng, s, -3, 4) for s in shapes],
            {"equation": eq},
            op_class=GEMM,
            reduction=k,
        )
        for name, eq, shapes, k in _EINSUM
    ]
    out.append(
        Case(
            "Einsum",
            "float_values",
            [uniform(rng, (4, 6)), uniform(rng, (6, 3))],
            {"equation": "ik,kj->ij"},
            op_class=GEMM,
            reduction=6,
            dtypes=dtypes.FLOAT_TYPES,
        )
    )
    return out


@cases("Det")
def det(rng):
    def well_conditioned(*shape):
        m = shape[-1]
        return 2.0 * np.eye(m) + uniform(rng, shape, -0.5, 0.5)

    singular = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.5, -1.0, 0.25]])
    return [
        Case("Det", name, [x], op_class=GEMM, reduction=max(x.shape[-1], 1) ** 2)
        for name, x in (
            ("2x2", well_conditioned(2, 2)),
            ("3x3", well_conditioned(3, 3)),
            ("batch", well_conditioned(3, 2, 4, 4)),
            ("1x1", well_conditioned(5, 1, 1)),
            ("singular", singular),
        )
    ]
