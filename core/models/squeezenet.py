"""SqueezeNet 1.1 (Iandola et al. 2016; torchvision's layout, Caffe2 zoo names ``fire<k>_...``)."""

from __future__ import annotations

from typing import Any

from kaffa import brew
from kaffa.model_helper import ModelHelper
from kaffa.models.common import Blob, head

# (squeeze, expand1x1, expand3x3) of fire2..fire9; a ceil-mode 3x3/2 max pool follows fire3 and fire5.
_FIRES = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
          (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]  # fmt: skip
_POOL_AFTER = {3, 5}


def _pool(model: ModelHelper, x: Blob, name: str) -> Blob:
    # legacy_pad=3: Caffe's ceil-mode output size, as the zoo's SqueezeNet.
    return brew.max_pool(model, x, name, kernel=3, stride=2, legacy_pad=3)


def squeezenet1_1(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 1000,
    label: Blob | None = None,
    is_test: bool = False,
    num_input_channels: int = 3,
    dropout: float = 0.5,
    return_logits: bool = False,
) -> Any:
    """SqueezeNet 1.1 (1,235,496 parameters at 1000 classes): conv1 3x3/2, fire modules, conv10
    (1x1 to the classes) + Relu, global average pool, flattened to [N, num_classes]."""
    h = brew.conv(model, data, "conv1", dim_in=num_input_channels, dim_out=64, kernel=3, stride=2)
    h = brew.relu(model, h, "conv1_relu")
    h = _pool(model, h, "pool1")
    dim = 64
    for k, (s, e1, e3) in enumerate(_FIRES, start=2):
        f = f"fire{k}"
        sq = brew.relu(
            model, brew.conv(model, h, f + "_squeeze1x1", dim, s, kernel=1), f + "_squeeze1x1_relu"
        )
        a = brew.relu(model, brew.conv(model, sq, f + "_expand1x1", s, e1, kernel=1), f + "_expand1x1_relu")
        b = brew.relu(
            model, brew.conv(model, sq, f + "_expand3x3", s, e3, kernel=3, pad=1), f + "_expand3x3_relu"
        )
        h = brew.concat(model, [a, b], f + "_concat")
        dim = e1 + e3
        if k in _POOL_AFTER:
            h = _pool(model, h, f"pool{k}")
    if dropout > 0 and not is_test:
        h = brew.dropout(model, h, "fire9_dropout", ratio=dropout)
    h = brew.conv(model, h, "conv10", dim, num_classes, kernel=1, weight_init=("GaussianFill", {"std": 0.01}))
    h = brew.relu(model, h, "conv10_relu")
    h = brew.average_pool(model, h, "pool10", global_pooling=True)
    logits = model.net.Flatten(h, "pool10_flat")
    return head(model, logits, label, return_logits)
