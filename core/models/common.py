"""What every classifier builder shares: the softmax (or loss) head, spatial bookkeeping, counting."""

from __future__ import annotations

import math
from typing import Any

from kaffa import brew
from kaffa.core import BlobReference
from kaffa.model_helper import ModelHelper

Blob = str | BlobReference


def head(model: ModelHelper, logits: Blob, label: Blob | None, return_logits: bool) -> Any:
    """Caffe2's convention: the ``softmax`` blob, or ``(softmax, loss)`` (SoftmaxWithLoss) when a
    ``label`` is given; ``return_logits`` returns the last layer's output as it is."""
    if return_logits:
        return logits
    if label is not None:
        softmax, loss = model.net.SoftmaxWithLoss([logits, label], ["softmax", "loss"])
        return softmax, loss
    return brew.softmax(model, logits, "softmax")


def conv_out(
    size: int, kernel: int, stride: int = 1, pad: int = 0, ceil: bool = False, what: str = ""
) -> int:
    """Output size of a window op along one axis; raises ValueError when the input is too small."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if span < 0 or out < 1:
        raise ValueError(f"{what}: a {size}-wide input is too small for kernel {kernel}, pad {pad}")
    return out


def count_params(model: ModelHelper, include_computed: bool = False) -> int:
    """Number of trained parameter elements (computed ones, e.g. SpatialBN's running statistics,
    only with ``include_computed``), from the shapes recorded at creation: nothing is run."""
    params = model.get_all_params("") if include_computed else model.get_params("")
    total = 0
    for p in params:
        info = model.get_param_info(p)
        if info is None or info.shape is None:
            raise ValueError(f"parameter '{p}' has no recorded shape")
        total += math.prod(info.shape)
    return total
