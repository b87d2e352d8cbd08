"""ONNX in and out.

    init_net, predict_net = kaffa.onnx.import_model("resnet18.onnx")
    probs, = kaffa.Predictor(init_net, predict_net).run({"input": images})

    model = kaffa.onnx.export_model(init_net, predict_net, inputs={"data": (np.float32, (1, 3, 224, 224))})
    onnx.save(model, "model.onnx")

``import_model`` translates every node through a registry of small per-op functions
(``kaffa.onnx.TRANSLATORS``; see ``importer.translator``); ``export_model`` goes the other way,
one function per kaffa op type (``kaffa.onnx.EXPORTERS``).
"""

from __future__ import annotations

from kaffa.onnx import (  # noqa: F401  (fill TRANSLATORS)
    ops_control,
    ops_index,
    ops_loss,
    ops_nn,
    ops_pointwise,
    ops_sampling,
    ops_spatial,
    ops_tensor,
)
from kaffa.onnx.exporter import EXPORTERS, OnnxExportError, export_model
from kaffa.onnx.importer import (
    TRANSLATORS,
    OnnxImportError,
    UnsupportedOnnxOpError,
    import_model,
    translator,
)

__all__ = [
    "EXPORTERS",
    "TRANSLATORS",
    "OnnxExportError",
    "OnnxImportError",
    "UnsupportedOnnxOpError",
    "export_model",
    "import_model",
    "translator",
]
