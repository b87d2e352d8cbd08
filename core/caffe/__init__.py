"""Caffe in: translate a deploy prototxt and its caffemodel into kaffa nets.

    init_net, predict_net = kaffa.caffe.translate("deploy.prototxt", "weights.caffemodel")
    probs, = kaffa.Predictor(init_net, predict_net).run({"data": images})

or, from the shell, ``kaffa convert deploy.prototxt --weights weights.caffemodel --to netdef DIR``.

The files are read through ``kaffa.proto.caffe_pb2``, generated from a copy of BVLC Caffe's
schema (``caffe.proto``: Caffe's message names and field numbers). Each layer type is translated
by a small function registered in ``LAYERS`` (see ``translator.layer``); docs/migrating-from-caffe.md
lists what maps to what.
"""

from __future__ import annotations

from kaffa.caffe import layers as _layers  # noqa: F401  (fill LAYERS)
from kaffa.caffe.reader import CaffeFormatWarning, read_caffemodel, read_prototxt, upgrade_v1
from kaffa.caffe.translator import (
    LAYERS,
    CaffeImportError,
    Context,
    Translation,
    UnsupportedCaffeLayerError,
    layer,
    translate,
    translate_model,
)

__all__ = [
    "LAYERS",
    "CaffeFormatWarning",
    "CaffeImportError",
    "Context",
    "Translation",
    "UnsupportedCaffeLayerError",
    "layer",
    "read_caffemodel",
    "read_prototxt",
    "translate",
    "translate_model",
    "upgrade_v1",
]
