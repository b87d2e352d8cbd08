"""LeNet (Caffe2's MNIST tutorial model), sized for any small square input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaffa import brew
from kaffa.model_helper import ModelHelper
from kaffa.models.common import Blob, conv_out, head


def lenet(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 10,
    label: Blob | None = None,
    is_test: bool = False,
    image_size: int = 28,
    num_input_channels: int = 1,
    channels: Sequence[int] = (20, 50),
    kernel: int = 5,
    pad: int = 0,
    hidden: int = 500,
    dropout: float = 0.0,
    return_logits: bool = False,
) -> Any:
    """conv1 -> pool1 -> conv2 -> pool2 -> fc3 -> relu -> pred -> softmax, as in Caffe2's LeNet
    (image_size=28, kernel=5, pad=0: the tutorial's net). Convs have ``channels`` outputs and a
    ``kernel`` x ``kernel`` window with ``pad``; pools halve the size; for 8x8 digits use e.g.
    ``image_size=8, kernel=3, pad=1``. The Relus after the convs are an addition (the tutorial had
    none after conv1/conv2) that trains faster from random starts."""
    c1, c2 = (int(c) for c in channels)
    size = image_size
    h = brew.conv(model, data, "conv1", dim_in=num_input_channels, dim_out=c1, kernel=kernel, pad=pad)
    size = conv_out(size, kernel, 1, pad, what="lenet conv1")
    h = brew.relu(model, h, "conv1_relu")
    h = brew.max_pool(model, h, "pool1", kernel=2, stride=2)
    size = conv_out(size, 2, 2, what="lenet pool1")
    h = brew.conv(model, h, "conv2", dim_in=c1, dim_out=c2, kernel=kernel, pad=pad)
    size = conv_out(size, kernel, 1, pad, what="lenet conv2")
    h = brew.relu(model, h, "conv2_relu")
    h = brew.max_pool(model, h, "pool2", kernel=2, stride=2)
    size = conv_out(size, 2, 2, what="lenet pool2")
    h = brew.fc(model, h, "fc3", dim_in=c2 * size * size, dim_out=hidden)
    h = brew.relu(model, h, "fc3_relu")
    if dropout > 0 and not is_test:
        h = brew.dropout(model, h, "fc3_dropout", ratio=dropout)
    pred = brew.fc(model, h, "pred", dim_in=hidden, dim_out=num_classes)
    return head(model, pred, label, return_logits)
