"""Index and selection ops: ArgMax, ArgMin, TopK, GatherElements/ScatterElements, GatherND/ScatterND,
Trilu, OneHot, Range, CumSum, NonZero, Compress and friends (schemas, shape inference, gradients).
"""

from __future__ import annotations
