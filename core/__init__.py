"""kaffa: a Caffe2-style deep-learning framework.

Models are protobuf graphs of operators (wire-compatible with Caffe2's NetDef); a
device-agnostic core runs them and dispatches every operator to a hardware backend plugin.
"""

from __future__ import annotations

__version__ = "0.1.0"

from kaffa import brew, checkpoint, model_helper, optimizer
from kaffa import ops as _ops  # noqa: F401  (registers the built-in schemas)
from kaffa.checkpoint import Predictor, load_model
from kaffa.core import BlobReference, CreateOperator, DeviceOption, Net, create_operator
from kaffa.device import CPU, CUDA, METAL, OPENCL, Device
from kaffa.engines import set_global_engine_pref, set_per_op_engine_pref
from kaffa.errors import (
    ArgumentError,
    DeviceError,
    DeviceMemoryError,
    ExecutionError,
    KaffaError,
    KernelBuildError,
    MissingBlobError,
    ModelFormatError,
    OperatorError,
    PluginError,
    SchemaError,
    ShapeError,
    UnknownOperatorError,
    UnsupportedOperatorError,
)
from kaffa.model_helper import ModelHelper
from kaffa.net import FallbackWarning, PlacementReport
from kaffa.plugins import hookimpl
from kaffa.rng import set_random_seed
from kaffa.scope import DeviceScope, NameScope
from kaffa.workspace import Workspace, set_default_policy

__all__ = [
    "CPU",
    "CUDA",
    "METAL",
    "OPENCL",
    "ArgumentError",
    "BlobReference",
    "CreateOperator",
    "Device",
    "DeviceError",
    "DeviceMemoryError",
    "DeviceOption",
    "DeviceScope",
    "ExecutionError",
    "FallbackWarning",
    "KaffaError",
    "KernelBuildError",
    "MissingBlobError",
    "ModelFormatError",
    "ModelHelper",
    "NameScope",
    "Net",
    "OperatorError",
    "PlacementReport",
    "PluginError",
    "Predictor",
    "SchemaError",
    "ShapeError",
    "UnknownOperatorError",
    "UnsupportedOperatorError",
    "Workspace",
    "__version__",
    "brew",
    "checkpoint",
    "create_operator",
    "hookimpl",
    "load_model",
    "model_helper",
    "optimizer",
    "set_default_policy",
    "set_global_engine_pref",
    "set_per_op_engine_pref",
    "set_random_seed",
    "zoo",
]


def __getattr__(name: str):
    # kaffa.zoo (urllib, http.client) is imported on first use, not with kaffa.
    if name == "zoo":
        import importlib

        return importlib.import_module("kaffa.zoo")
    raise AttributeError(f"module 'kaffa' has no attribute {name!r}")
