"""ResNet-18/34 (basic blocks) and ResNet-50/101/152 (bottlenecks), torchvision's layout.

Names follow the Caffe2/Detectron zoo: ``conv1``, ``res_conv1_bn``, ``res<stage>_<block>_branch2a``
(..._bn), ``..._branch1`` for the projection shortcut, ``..._sum``, ``pred``. The stride of a
bottleneck is on its 3x3 conv (as Caffe2's resnet.py and torchvision's v1.5). A global average
pool ends the trunk, so any input of at least 32x32 works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaffa import brew
from kaffa.model_helper import ModelHelper
from kaffa.models.common import Blob, head

_MSRA = ("MSRAFill", {})


class _Builder:
    def __init__(self, model: ModelHelper, is_test: bool, bn_epsilon: float, bn_momentum: float) -> None:
        self.model = model
        self.is_test = is_test
        self.eps = bn_epsilon
        self.momentum = bn_momentum

    def conv_bn(
        self, x: Blob, name: str, dim_in: int, dim_out: int, kernel: int, stride: int = 1, relu: bool = True
    ) -> Blob:
        m = self.model
        h = brew.conv(
            m, x, name, dim_in=dim_in, dim_out=dim_out, kernel=kernel, stride=stride, pad=kernel // 2,
            weight_init=_MSRA, no_bias=True,
        )  # fmt: skip
        h = brew.spatial_bn(
            m, h, name + "_bn", dim_out, epsilon=self.eps, momentum=self.momentum, is_test=self.is_test
        )
        return brew.relu(m, h, name + "_relu") if relu else h

    def block(
        self, x: Blob, prefix: str, dim_in: int, width: int, stride: int, bottleneck: bool
    ) -> tuple[Blob, int]:
        dim_out = width * 4 if bottleneck else width
        if bottleneck:
            h = self.conv_bn(x, prefix + "_branch2a", dim_in, width, 1)
            h = self.conv_bn(h, prefix + "_branch2b", width, width, 3, stride)
            h = self.conv_bn(h, prefix + "_branch2c", width, dim_out, 1, relu=False)
        else:
            h = self.conv_bn(x, prefix + "_branch2a", dim_in, width, 3, stride)
            h = self.conv_bn(h, prefix + "_branch2b", width, width, 3, relu=False)
        shortcut = x
        if stride != 1 or dim_in != dim_out:
            shortcut = self.conv_bn(x, prefix + "_branch1", dim_in, dim_out, 1, stride, relu=False)
        s = brew.sum(self.model, [h, shortcut], prefix + "_sum")
        return brew.relu(self.model, s, prefix + "_sum_relu"), dim_out


def resnet(
    model: ModelHelper,
    data: Blob,
    num_classes: int,
    layers: Sequence[int],
    bottleneck: bool,
    label: Blob | None = None,
    is_test: bool = False,
    num_input_channels: int = 3,
    bn_epsilon: float = 1e-5,
    bn_momentum: float = 0.9,
    return_logits: bool = False,
) -> Any:
    """A ResNet with ``layers[i]`` blocks in stage i (widths 64, 128, 256, 512), basic blocks or
    ``bottleneck`` ones (4x expansion). SpatialBN runs with ``is_test`` (running statistics)."""
    b = _Builder(model, is_test, bn_epsilon, bn_momentum)
    h = b.conv_bn(data, "conv1", num_input_channels, 64, 7, stride=2)
    h = brew.max_pool(model, h, "pool1", kernel=3, stride=2, pad=1)
    dim = 64
    for stage, (n, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=2):
        for k in range(n):
            stride = 2 if k == 0 and stage > 2 else 1
            h, dim = b.block(h, f"res{stage}_{k}", dim, width, stride, bottleneck)
    h = brew.average_pool(model, h, "pool5", global_pooling=True)
    pred = brew.fc(
        model, h, "pred", dim_in=dim, dim_out=num_classes, weight_init=("GaussianFill", {"std": 0.01})
    )
    return head(model, pred, label, return_logits)


def resnet18(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 1000,
    label: Blob | None = None,
    is_test: bool = False,
    **kwargs: Any,
) -> Any:
    """ResNet-18 (11,689,512 parameters at 1000 classes)."""
    return resnet(model, data, num_classes, [2, 2, 2, 2], False, label, is_test, **kwargs)


def resnet34(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 1000,
    label: Blob | None = None,
    is_test: bool = False,
    **kwargs: Any,
) -> Any:
    """ResNet-34 (21,797,672 parameters at 1000 classes)."""
    return resnet(model, data, num_classes, [3, 4, 6, 3], False, label, is_test, **kwargs)


def resnet50(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 1000,
    label: Blob | None = None,
    is_test: bool = False,
    **kwargs: Any,
) -> Any:
    """ResNet-50 (25,557,032 parameters at 1000 classes)."""
    return resnet(model, data, num_classes, [3, 4, 6, 3], True, label, is_test, **kwargs)
