"""EQ, LT, GT, And, Or, Not: every output is bool, and WGSL has no storable bool, so none of them
can run on metal (the allocator refuses bool arrays).

The comparisons are registered for the dtypes metal holds, with a ``supports`` predicate that
refuses them at net creation with the allocator's reason: the conformance matrix and the
placement report then show the gap exactly, and a fallback policy runs them on cpu. And, Or and
Not take bool inputs, which cannot be fed to metal at all, so they are not registered.
"""

from __future__ import annotations

from kaffa.errors import KernelBuildError
from kaffa.kernels import KernelContext, KernelTable, RunFn
from kaffa_metal.kernels.common import NUMERIC
from kaffa_metal.kernels.elementwise import holds_outputs

table = KernelTable("metal")


def _bool_output(ctx: KernelContext) -> str | None:
    return holds_outputs(ctx) or "its bool output cannot live on metal"


@table.kernel("EQ", "LT", "GT", dtypes=NUMERIC, supports=_bool_output)
def compare(ctx: KernelContext) -> RunFn:
    raise KernelBuildError(f"{ctx.op_type} on metal: {_bool_output(ctx)}")  # never selected
