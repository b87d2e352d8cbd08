"""Reading Caffe's files: a text prototxt, a binary caffemodel, their blobs, and the deprecated
V1 layer format (upgraded to ``LayerParameter`` as Caffe's ``UpgradeV1Net`` does)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from kaffa.errors import ModelFormatError
from kaffa.proto import caffe_pb2

__all__ = [
    "V1_TYPES",
    "CaffeFormatWarning",
    "blob_array",
    "included_layers",
    "read_caffemodel",
    "read_prototxt",
    "upgrade_v1",
]

NetParameter = caffe_pb2.NetParameter
LayerParameter = caffe_pb2.LayerParameter

# V1LayerParameter.LayerType -> the V2 type string (Caffe's UpgradeV1LayerType).
_V1 = caffe_pb2.V1LayerParameter
V1_TYPES: dict[int, str] = {
    _V1.ABSVAL: "AbsVal",
    _V1.ACCURACY: "Accuracy",
    _V1.ARGMAX: "ArgMax",
    _V1.BNLL: "BNLL",
    _V1.CONCAT: "Concat",
    _V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    _V1.CONVOLUTION: "Convolution",
    _V1.DATA: "Data",
    _V1.DECONVOLUTION: "Deconvolution",
    _V1.DROPOUT: "Dropout",
    _V1.DUMMY_DATA: "DummyData",
    _V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    _V1.ELTWISE: "Eltwise",
    _V1.EXP: "Exp",
    _V1.FLATTEN: "Flatten",
    _V1.HDF5_DATA: "HDF5Data",
    _V1.HDF5_OUTPUT: "HDF5Output",
    _V1.HINGE_LOSS: "HingeLoss",
    _V1.IM2COL: "Im2col",
    _V1.IMAGE_DATA: "ImageData",
    _V1.INFOGAIN_LOSS: "InfogainLoss",
    _V1.INNER_PRODUCT: "InnerProduct",
    _V1.LRN: "LRN",
    _V1.MEMORY_DATA: "MemoryData",
    _V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    _V1.MVN: "MVN",
    _V1.POOLING: "Pooling",
    _V1.POWER: "Power",
    _V1.RELU: "ReLU",
    _V1.SIGMOID: "Sigmoid",
    _V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    _V1.SILENCE: "Silence",
    _V1.SOFTMAX: "Softmax",
    _V1.SOFTMAX_LOSS: "SoftmaxWithLoss",
    _V1.SPLIT: "Split",
    _V1.SLICE: "Slice",
    _V1.TANH: "TanH",
    _V1.WINDOW_DATA: "WindowData",
    _V1.THRESHOLD: "Threshold",
}


class CaffeFormatWarning(UserWarning):
    """A Caffe file was read, but with something skipped (fields this schema does not know)."""


def _source_bytes(source: Any, what: str) -> tuple[bytes | None, str]:
    """(bytes of a file, its name) for a path; (None, "") for anything else."""
    if isinstance(source, str):
        try:
            is_file = "\n" not in source and Path(source).is_file()
        except (OSError, ValueError):  # too long for a file name, or a NUL: it is text
            is_file = False
        if not is_file and any(c in source for c in "\n{:"):
            return None, ""  # prototxt text
        p = Path(source)
    elif isinstance(source, os.PathLike):
        p = Path(source)
    else:
        return None, ""
    if not p.is_file():
        raise ModelFormatError(f"Caffe {what} {p} does not exist")
    return p.read_bytes(), str(p)


def _upgraded(net: NetParameter, where: str) -> NetParameter:
    if net.layers and net.layer:
        raise ModelFormatError(
            f"{where}: the net mixes V1 'layers' and V2 'layer' fields (Caffe refuses this too)"
        )
    return upgrade_v1(net, where) if net.layers else net


def read_prototxt(source: Any) -> NetParameter:
    """A Caffe net definition as a ``caffe.NetParameter`` (V1 layers upgraded): ``source`` is a
    path, prototxt text, its bytes, or a NetParameter. Fields unknown to kaffa's copy of Caffe's
    schema (from a Caffe fork) are skipped with a CaffeFormatWarning."""
    if isinstance(source, NetParameter):
        return _upgraded(source, "prototxt")
    data, where = _source_bytes(source, "prototxt")
    if data is None:
        data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    where = where or "prototxt"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(
            f"{where} is not UTF-8 text (a binary .caffemodel given as prototxt?)"
        ) from None
    net = NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as strict:
        # A fork's extra fields: parse without them, but say which one was the first.
        net = NetParameter()
        try:
            text_format.Parse(text, net, allow_unknown_field=True)
        except text_format.ParseError as e:
            raise ModelFormatError(f"{where} is not a Caffe NetParameter: {e}") from None
        warnings.warn(
            f"{where} has fields that BVLC Caffe's schema does not define; they were skipped "
            f"(first: {strict})",
            CaffeFormatWarning,
            stacklevel=2,
        )
    return _upgraded(net, where)


def read_caffemodel(source: Any) -> NetParameter:
    """Trained weights as a ``caffe.NetParameter`` (V1 layers upgraded): ``source`` is a path,
    the serialized bytes, or a NetParameter."""
    if isinstance(source, NetParameter):
        return _upgraded(source, "caffemodel")
    if isinstance(source, (str, os.PathLike)):  # always a file name (the weights are binary)
        p = Path(source)
        if not p.is_file():
            raise ModelFormatError(f"Caffe caffemodel {p} does not exist")
        data, where = p.read_bytes(), str(p)
    else:
        data, where = None, ""
    if data is None:
        if not isinstance(source, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"a caffemodel is a path, bytes or a caffe NetParameter, got {type(source).__name__}"
            )
        data = bytes(source)
    where = where or "caffemodel"
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError) as e:
        raise ModelFormatError(f"{where} is not a binary Caffe NetParameter: {e}") from None
    if not net.layer and not net.layers:
        raise ModelFormatError(f"{where} holds no layers: not a .caffemodel (a prototxt given as weights?)")
    return _upgraded(net, where)


def upgrade_v1(net: NetParameter, where: str = "net") -> NetParameter:
    """A copy of ``net`` whose V1 ``layers`` are V2 ``layer`` entries (name, type, bottoms, tops,
    include/exclude rules, blobs and the *_param messages; the training-only blobs_lr,
    weight_decay and param names are dropped). V0 layers are refused."""
    out = NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    for i, v1 in enumerate(net.layers):
        if v1.HasField("layer"):
            raise ModelFormatError(
                f"{where}: layer #{i} '{v1.layer.name or v1.name}' is in Caffe's V0 format (2014); "
                "upgrade the file with Caffe's upgrade_net_proto_text / upgrade_net_proto_binary first"
            )
        layer = out.layer.add()
        layer.name = v1.name
        if v1.type not in V1_TYPES:
            raise ModelFormatError(f"{where}: V1 layer '{v1.name}' has no type (NONE)")
        layer.type = V1_TYPES[v1.type]
        layer.bottom.extend(v1.bottom)
        layer.top.extend(v1.top)
        layer.include.extend(v1.include)
        layer.exclude.extend(v1.exclude)
        layer.blobs.extend(v1.blobs)
        layer.loss_weight.extend(v1.loss_weight)
        for fd, value in v1.ListFields():
            if fd.name.endswith("_param") and fd.name in LayerParameter.DESCRIPTOR.fields_by_name:
                getattr(layer, fd.name).CopyFrom(value)
    return out


def _meets(rule: Any, phase: int, level: int, stages: set[str]) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def included_layers(net: NetParameter, phase: int = caffe_pb2.TEST) -> list[LayerParameter]:
    """The layers Caffe instantiates for ``phase`` (Caffe's Net::FilterNet): with include rules, a
    layer is kept if the state meets any of them; with exclude rules, dropped if it meets any.
    The state's level and stages are those of ``net.state`` (default 0 and none)."""
    level = net.state.level if net.HasField("state") else 0
    stages = set(net.state.stage) if net.HasField("state") else set()
    kept = []
    for layer in net.layer:
        if layer.include:
            keep = any(_meets(r, phase, level, stages) for r in layer.include)
        else:
            keep = not any(_meets(r, phase, level, stages) for r in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


def blob_array(blob: Any, what: str) -> np.ndarray:
    """A Caffe BlobProto as a float32 array: its ``shape``, or the legacy 4-D
    (num, channels, height, width); values from ``data`` or ``double_data``."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = (len(blob.data) or len(blob.double_data),)
    values = blob.data if len(blob.data) else blob.double_data
    arr = np.asarray(values, dtype=np.float64 if not len(blob.data) else np.float32)
    count = int(np.prod(shape, dtype=np.int64))
    if arr.size != count:
        raise ModelFormatError(f"{what}: the blob declares shape {list(shape)} but holds {arr.size} values")
    return arr.astype(np.float32, copy=False).reshape(shape)
