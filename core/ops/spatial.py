"""Image and normalisation ops ONNX needs: Resize, DepthToSpace/SpaceToDepth, LpPool, RMSNormalization,
InstanceNormalization, GroupNormalization, LpNormalization, MeanVarianceNormalization (schemas,
shape inference, gradients).
"""

from __future__ import annotations
