"""Model builders on brew, randomly initialized: each takes the model, the input blob and the
number of classes, adds parameters to ``model.param_init_net`` and ops to ``model.net``, and
returns the ``softmax`` blob (``(softmax, loss)`` with a ``label``; the last layer's output with
``return_logits=True``). ``is_test=True`` builds the inference variant (SpatialBN on running
statistics, no Dropout).

    model = ModelHelper("resnet")
    softmax = models.resnet18(model, "data", num_classes=10, is_test=True)
    models.count_params(model)          # from the parameter shapes, nothing is run
"""

from __future__ import annotations

from kaffa.models.common import count_params
from kaffa.models.lenet import lenet
from kaffa.models.mlp import mlp
from kaffa.models.mobilenet import mobilenet_v2
from kaffa.models.resnet import resnet, resnet18, resnet34, resnet50
from kaffa.models.squeezenet import squeezenet1_1

__all__ = [
    "count_params",
    "lenet",
    "mlp",
    "mobilenet_v2",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "squeezenet1_1",
]
