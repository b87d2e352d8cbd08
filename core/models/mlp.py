"""Multi-layer perceptron."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from kaffa import brew
from kaffa.model_helper import ModelHelper
from kaffa.models.common import Blob, head

_ACTIVATIONS = {"relu": brew.relu, "tanh": brew.tanh, "sigmoid": brew.sigmoid}


def mlp(
    model: ModelHelper,
    data: Blob,
    dims: Sequence[int],
    label: Blob | None = None,
    is_test: bool = False,
    activation: str = "relu",
    dropout: float = 0.0,
    prefix: str = "fc",
    return_logits: bool = False,
) -> Any:
    """FC layers ``<prefix>1 .. <prefix>K`` over ``dims = [dim_in, hidden..., num_classes]``, with
    ``activation`` (relu, tanh, sigmoid) and, in training, Dropout(``dropout``) between them; then
    the softmax (see ``kaffa.models.common.head`` for ``label`` and ``return_logits``)."""
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"mlp: dims must be [dim_in, ..., dim_out] with positive sizes, got {dims}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    h: Blob = data
    for k, (d_in, d_out) in enumerate(itertools.pairwise(dims), start=1):
        h = brew.fc(model, h, f"{prefix}{k}", dim_in=d_in, dim_out=d_out)
        if k < len(dims) - 1:
            h = _ACTIVATIONS[activation](model, h, f"{prefix}{k}_{activation}")
            if dropout > 0 and not is_test:
                h = brew.dropout(model, h, f"{prefix}{k}_dropout", ratio=dropout)
    return head(model, h, label, return_logits)
