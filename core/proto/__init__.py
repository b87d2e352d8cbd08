"""kaffa's protobuf model format, wire-compatible with Caffe2's caffe2.proto.

``kaffa_pb2`` is generated from ``kaffa.proto`` by protoc; run ``python -m kaffa.proto.regen``
after editing the ``.proto``. A test checks that the checked-in module is current.
"""

from kaffa.proto import kaffa_pb2
from kaffa.proto.kaffa_pb2 import (
    Argument,
    BlobProto,
    DBReaderProto,
    DeviceOption,
    ExecutionStep,
    NetDef,
    OperatorDef,
    PlanDef,
    QTensorProto,
    TensorProto,
    TensorProtos,
    TensorShape,
    TensorShapes,
)

__all__ = [
    "Argument",
    "BlobProto",
    "DBReaderProto",
    "DeviceOption",
    "ExecutionStep",
    "NetDef",
    "OperatorDef",
    "PlanDef",
    "QTensorProto",
    "TensorProto",
    "TensorProtos",
    "TensorShape",
    "TensorShapes",
    "kaffa_pb2",
]
