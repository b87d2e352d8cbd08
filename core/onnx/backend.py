"""kaffa as an ONNX backend (``onnx.backend.base.Backend``), so onnx's own test harness and tools
that take a backend module can run models on kaffa::

    import kaffa.onnx.backend as kb

    rep = kb.prepare(model, device="OPENCL")       # or prepare(model, backend="opencl")
    (y,) = rep.run([x])                            # a list in graph input order, or a dict
    outputs = kb.run_node(node, [x, w])            # one node, for quick checks

``prepare`` imports the model with ``kaffa.onnx.import_model`` (so a model with nodes kaffa cannot
translate raises ``kaffa.onnx.UnsupportedOnnxOpError`` there, listing all of them) and runs the
init net once into a fresh Workspace; every op is placed on the kaffa backend the device names
(ops that backend lacks fall back to cpu, as with ``kaffa.Predictor``).

Device strings are ONNX style, ``"CPU"``, ``"CUDA:1"``, ``"OPENCL"``, ``"METAL:0"``, or kaffa
names (``"opencl:0"``); the ``backend=`` keyword (a kaffa backend name) overrides the device's
type and keeps its index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from kaffa.checkpoint import Predictor
from kaffa.device import Device
from kaffa.errors import DeviceError
from kaffa.workspace import Workspace

__all__ = [
    "DEVICES",
    "KaffaBackend",
    "KaffaRep",
    "kaffa_device",
    "prepare",
    "run_model",
    "run_node",
    "supports_device",
]

# ONNX device type -> kaffa backend name.
DEVICES = {"CPU": "cpu", "OPENCL": "opencl", "CUDA": "cuda", "METAL": "metal"}


def kaffa_device(device: str | Device = "CPU", backend: str | None = None) -> Device:
    """The kaffa Device for an ONNX device string ("CPU", "CUDA:1", "OPENCL") or a kaffa name;
    ``backend`` (a kaffa backend name) replaces the device's type."""
    if isinstance(device, Device):
        dev = device
    else:
        kind, _, index = str(device or "CPU").strip().partition(":")
        name = DEVICES.get(kind.upper(), kind.lower())
        dev = Device(name, int(index) if index else 0)
    if backend:
        dev = Device(Device.parse(backend).backend, dev.index)
    return dev


def _unavailable(dev: Device) -> str | None:
    from kaffa.plugins import registry

    try:
        backend = registry().backend(dev.backend)
    except DeviceError as e:
        return str(e)
    reason = backend.unavailable_reason()
    if reason is None and dev.index >= max(len(backend.devices()), 1):
        reason = f"{dev.backend} has no device {dev.index}"
    return reason


class KaffaRep(BackendRep):
    """A prepared model: its init net has run; ``run(inputs)`` feeds the graph inputs, runs the
    predict net and returns the graph outputs, in graph order (a namedtuple, also indexable by
    output name).

    kaffa nets are static: what ONNX passes as tensors but kaffa ops take as arguments (axes,
    pads, starts/ends, Clip bounds, repeats, ...) must be constants when the model is imported.
    Where such a tensor is a graph input, the model is specialized on its value at ``run``:
    imported with the fed value as an initializer, once per distinct value (``specialized_on``
    lists those inputs). Any other untranslatable node raises at ``prepare``."""

    def __init__(self, model: ModelProto, device: Device, **kwargs: Any) -> None:
        from kaffa.onnx.importer import UnsupportedOnnxOpError

        self.device = device
        self.model = model
        self.name = kwargs.get("name")
        initializers = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self.specialized_on: list[str] = []
        self._cache: dict[tuple[Any, ...], Predictor] = {}
        self.predictor: Predictor | None = None
        try:
            self.predictor = self._predictor(model)
        except UnsupportedOnnxOpError as e:
            names = self._specializable(e)
            if names is None:
                raise
            self.specialized_on = names
        self._outputs = namedtupledict("Outputs", self.output_names)

    def _specializable(self, err: Any) -> list[str] | None:
        """The graph inputs to specialize on, if every problem of ``err`` is one of them not
        being a constant; else None."""
        names = list(dict.fromkeys(err.needs_const))
        if not names or None in names or not set(names) <= set(self.input_names):
            return None
        return names

    def _predictor(self, model: ModelProto) -> Predictor:
        from kaffa.onnx.importer import import_model

        init_net, predict_net = import_model(model, name=self.name)
        self.init_net, self.predict_net = init_net, predict_net
        self.workspace = Workspace(f"onnx:{predict_net.name}")
        device = None if self.device.backend == "cpu" else self.device
        return Predictor(init_net, predict_net, workspace=self.workspace, device=device)

    def _specialized(self, feeds: Mapping[str, Any]) -> Predictor:
        from onnx import numpy_helper

        from kaffa.onnx.importer import UnsupportedOnnxOpError

        names = list(self.specialized_on)
        for _ in range(8):  # a specialization may uncover more (bounded)
            missing = [n for n in names if n not in feeds]
            if missing:
                raise ValueError(f"no value given for input(s) {missing}")
            values = {n: np.asarray(feeds[n]) for n in names}
            key = tuple((n, v.dtype.str, v.shape, v.tobytes()) for n, v in values.items())
            if key in self._cache:
                return self._cache[key]
            m = ModelProto()
            m.CopyFrom(self.model)
            keep = [i for i in m.graph.input if i.name not in values]
            del m.graph.input[:]
            m.graph.input.extend(keep)
            m.graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in values.items())
            try:
                predictor = self._predictor(m)
            except UnsupportedOnnxOpError as e:
                more = self._specializable(e)
                if more is None or set(more) <= set(names):
                    raise
                names += [n for n in more if n not in names]
                self.specialized_on = names
                continue
            self._cache[key] = predictor
            return predictor
        raise ValueError(f"cannot specialize the model on {names}")

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, Mapping):
            feeds = {str(k): v for k, v in inputs.items()}
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            values = list(inputs)
            if len(values) > len(self.input_names):
                raise ValueError(
                    f"got {len(values)} inputs, the model takes {len(self.input_names)}: {self.input_names}"
                )
            feeds = dict(zip(self.input_names, values))
        predictor = self.predictor if self.predictor is not None else self._specialized(feeds)
        # Graph inputs no op reads (or that were specialized on) are not inputs of the predict net.
        feeds = {k: v for k, v in feeds.items() if k in predictor.input_names}
        results = predictor.run(feeds)
        return self._outputs(*results)

    @property
    def placement_report(self) -> Any:
        if self.predictor is None:
            last = next(reversed(self._cache.values()), None)
            return None if last is None else last.placement_report
        return self.predictor.placement_report


class KaffaBackend(Backend):
    """``onnx.backend.base.Backend`` for kaffa. Keyword arguments: ``backend`` (a kaffa backend
    name, overriding the device string's type)."""

    @classmethod
    def prepare(cls, model: ModelProto, device: str = "CPU", **kwargs: Any) -> KaffaRep:
        dev = kaffa_device(device, kwargs.pop("backend", None))
        reason = _unavailable(dev)
        if reason is not None:
            raise DeviceError(f"kaffa backend '{dev}' is not available here: {reason}")
        return KaffaRep(model, dev, **kwargs)

    @classmethod
    def run_model(cls, model: ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        """Run one node on ``inputs`` (a list in node input order, or a dict by input name).
        ``outputs_info`` ([(dtype, shape)] per output) is used for the graph's output types where
        given; ``opset_version`` sets the model's opset (default: the newest onnx knows)."""
        import onnx

        if isinstance(inputs, Mapping):
            values = dict(inputs)
        else:
            values = dict(zip([i for i in node.input if i], list(inputs)))
        graph_inputs = []
        for name in node.input:
            if name and name in values:
                arr = np.asarray(values[name])
                elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
                graph_inputs.append(helper.make_tensor_value_info(name, elem, arr.shape))
        graph_outputs = []
        for k, name in enumerate(o for o in node.output if o):
            if outputs_info is not None and k < len(outputs_info):
                dtype, shape = outputs_info[k]
                elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
                graph_outputs.append(helper.make_tensor_value_info(name, elem, shape))
            else:
                graph_outputs.append(helper.make_empty_tensor_value_info(name))
        graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device, **kwargs).run({i.name: values[i.name] for i in graph_inputs})

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """True when the kaffa backend for ``device`` ("CPU", "OPENCL", "CUDA:1", "METAL") is
        installed and has that device here."""
        try:
            dev = kaffa_device(device)
        except ValueError:
            return False
        return _unavailable(dev) is None


prepare = KaffaBackend.prepare
run_model = KaffaBackend.run_model
run_node = KaffaBackend.run_node
supports_device = KaffaBackend.supports_device
