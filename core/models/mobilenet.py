"""MobileNetV2 (Sandler et al. 2018), torchvision's layout: inverted residuals, ReLU6 as Clip(0, 6)."""

from __future__ import annotations

from typing import Any

from kaffa import brew
from kaffa.model_helper import ModelHelper
from kaffa.models.common import Blob, head

# expansion t, output channels c, repeats n, first stride s
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
_MSRA = ("MSRAFill", {})


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: round to a multiple of ``divisor``, losing at most 10%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_v2(
    model: ModelHelper,
    data: Blob,
    num_classes: int = 1000,
    label: Blob | None = None,
    is_test: bool = False,
    num_input_channels: int = 3,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    bn_epsilon: float = 1e-5,
    bn_momentum: float = 0.9,
    return_logits: bool = False,
) -> Any:
    """MobileNetV2 (3,504,872 parameters at 1000 classes, width 1.0). Depthwise convs are Convs with
    ``group`` = channels. Blocks are ``block<i>_expand``, ``_dw``, ``_project`` (each with ``_bn``)."""

    def conv_bn(x: Blob, name: str, d_in: int, d_out: int, kernel: int, stride: int = 1, group: int = 1,
                relu6: bool = True) -> Blob:  # fmt: skip
        h = brew.conv(
            model, x, name, dim_in=d_in, dim_out=d_out, kernel=kernel, stride=stride, pad=kernel // 2,
            group=group, weight_init=_MSRA, no_bias=True,
        )  # fmt: skip
        h = brew.spatial_bn(
            model, h, name + "_bn", d_out, epsilon=bn_epsilon, momentum=bn_momentum, is_test=is_test
        )
        return model.net.Clip(h, name + "_relu6", min=0.0, max=6.0) if relu6 else h

    dim = _divisible(32 * width_mult)
    last = _divisible(1280 * max(1.0, width_mult))
    h = conv_bn(data, "conv1", num_input_channels, dim, 3, stride=2)
    k = 0
    for t, c, n, s in _SETTINGS:
        out = _divisible(c * width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            name, hidden = f"block{k}", dim * t
            x = h
            if t != 1:
                h = conv_bn(h, name + "_expand", dim, hidden, 1)
            h = conv_bn(h, name + "_dw", hidden, hidden, 3, stride, group=hidden)
            h = conv_bn(h, name + "_project", hidden, out, 1, relu6=False)
            if stride == 1 and dim == out:
                h = brew.sum(model, [h, x], name + "_sum")
            dim = out
            k += 1
    h = conv_bn(h, "conv_last", dim, last, 1)
    h = brew.average_pool(model, h, "pool", global_pooling=True)
    if dropout > 0 and not is_test:
        h = brew.dropout(model, h, "pool_dropout", ratio=dropout)
    pred = brew.fc(
        model, h, "pred", dim_in=last, dim_out=num_classes, weight_init=("GaussianFill", {"std": 0.01})
    )
    return head(model, pred, label, return_logits)
