"""Building nets in Python: ``Net`` with fluent op calls, ``BlobReference``, ``create_operator``.

    net = Net("mlp")
    h = net.FC(["x", "w1", "b1"], "h")
    h = net.Relu(h, h)
    y = net.Softmax(net.FC([h, "w2", "b2"]), "y")

Op calls are checked against the schema as they are made (unknown op types, wrong numbers of
inputs or outputs, unknown or mistyped arguments), so mistakes surface at the line that made them.
Inputs that no earlier op of the net produces become external inputs. String names are prefixed
with the current NameScope; ops get the current DeviceScope unless given ``device_option``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from kaffa.device import device_option as _device_option
from kaffa.errors import OperatorError, OpLocation
from kaffa.proto import DeviceOption as _DeviceOptionProto
from kaffa.proto import NetDef, OperatorDef
from kaffa.schema import SCHEMAS, make_argument
from kaffa.scope import current_device_scope, scoped_name

_SPECIAL = ("engine", "device_option", "control_input", "name", "debug_info", "is_gradient_op")


def DeviceOption(
    device_type: int | str, device_id: int = 0, random_seed: int | None = None
) -> _DeviceOptionProto:
    """Caffe2's ``core.DeviceOption``; ``device_type`` may also be a backend name ("opencl")."""
    return _device_option(device_type, device_id, random_seed)


class BlobReference:
    """A blob name, optionally tied to the net that produces it. ``str(ref)`` is the name.
    ``ref.Relu([], "y")`` is ``net.Relu([ref], "y")``."""

    __slots__ = ("_from_net", "_name")

    def __init__(self, name: str, net: Net | None = None):
        self._name = str(name)
        self._from_net = net

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"BlobReference({self._name!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlobReference):
            return self._name == other._name
        return isinstance(other, str) and self._name == other

    def __hash__(self) -> int:
        return hash(self._name)

    def __add__(self, suffix: str) -> BlobReference:
        return BlobReference(self._name + suffix, self._from_net)

    def Net(self) -> Net | None:
        return self._from_net

    def __getattr__(self, op_type: str) -> Any:
        if op_type.startswith("_") or op_type not in SCHEMAS or self._from_net is None:
            raise AttributeError(
                f"BlobReference '{self._name}' has no attribute '{op_type}'"
                + ("" if self._from_net else " (it is not tied to a net)")
            )
        net = self._from_net

        def call(inputs: Any = (), outputs: Any = None, **kwargs: Any) -> Any:
            return net.add_op(op_type, [self, *_as_list(inputs)], outputs, **kwargs)

        return call


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (str, BlobReference)):
        return [x]
    return list(x)


def _name_of(x: Any) -> str:
    if isinstance(x, BlobReference):
        return str(x)
    if isinstance(x, str):
        return scoped_name(x)
    raise TypeError(f"a blob must be a name or a BlobReference, got {type(x).__name__}")


def create_operator(
    op_type: str,
    inputs: Any,
    outputs: Any,
    name: str = "",
    control_input: Iterable[Any] | None = None,
    device_option: _DeviceOptionProto | None = None,
    engine: str | None = None,
    **kwargs: Any,
) -> OperatorDef:
    """Caffe2's ``core.CreateOperator``: an OperatorDef checked against its schema."""
    op = OperatorDef(type=op_type)
    op.input.extend(_name_of(i) for i in _as_list(inputs))
    op.output.extend(_name_of(o) for o in _as_list(outputs))
    if name:
        op.name = name
    if control_input:
        op.control_input.extend(_name_of(c) for c in control_input)
    dev = device_option if device_option is not None else current_device_scope()
    if dev is not None:
        op.device_option.CopyFrom(dev if isinstance(dev, _DeviceOptionProto) else _device_option(dev))
    if engine:
        op.engine = engine
    for key in ("debug_info", "is_gradient_op"):
        if key in kwargs:
            setattr(op, key, kwargs.pop(key))
    for key, value in kwargs.items():
        if value is not None:
            op.arg.append(make_argument(key, value))
    schema = SCHEMAS.get(op_type)
    try:
        schema.check_arity(op)
        schema.parse_args(op.arg)
        schema.check_inplace(op)
    except OperatorError as e:
        raise e.at(OpLocation(op_type=op_type, op_name=name)) from None
    return op


class Net:
    """A NetDef under construction. ``net.<OpType>(inputs, outputs=None, **args)`` adds an op and
    returns its output BlobReference (or a tuple of them)."""

    _ids = itertools.count()

    def __init__(self, name_or_proto: str | NetDef = ""):
        if isinstance(name_or_proto, NetDef):
            self._net = NetDef()
            self._net.CopyFrom(name_or_proto)
        else:
            self._net = NetDef(name=name_or_proto or f"net_{next(Net._ids)}")
        self._auto = itertools.count()
        self._produced: set[str] = {o for op in self._net.op for o in op.output}

    @property
    def name(self) -> str:
        return self._net.name

    def Proto(self) -> NetDef:
        """The NetDef (live: changes to the Net show in it)."""
        return self._net

    proto = Proto

    def next_name(self, prefix: str = "") -> str:
        stem = prefix or "blob"
        while True:
            candidate = scoped_name(f"{self.name}_{stem}_auto_{next(self._auto)}")
            if candidate not in self._produced and candidate not in self._net.external_input:
                return candidate

    NextName = next_name

    def add_external_input(self, *names: Any) -> Any:
        refs = []
        for n in names:
            name = _name_of(n)
            if name not in self._net.external_input:
                self._net.external_input.append(name)
            refs.append(BlobReference(name, self))
        return refs[0] if len(refs) == 1 else tuple(refs)

    def add_external_output(self, *blobs: Any) -> None:
        for b in blobs:
            name = _name_of(b)
            if name not in self._net.external_output:
                self._net.external_output.append(name)

    AddExternalInput, AddExternalOutput = add_external_input, add_external_output

    @property
    def external_inputs(self) -> list[str]:
        return list(self._net.external_input)

    @property
    def external_outputs(self) -> list[str]:
        return list(self._net.external_output)

    def add_op(self, op_type: str, inputs: Any = (), outputs: Any = None, **kwargs: Any) -> Any:
        schema = SCHEMAS.get(op_type)
        if outputs is None:
            outputs = max(int(schema.outputs[0]), 1)
        if isinstance(outputs, int):
            outputs = [BlobReference(self.next_name(op_type.lower()), self) for _ in range(outputs)]
        op = create_operator(op_type, inputs, outputs, **kwargs)
        for name in op.input:
            if name not in self._produced and name not in self._net.external_input:
                self._net.external_input.append(name)
        self._net.op.append(op)
        self._produced.update(op.output)
        refs = tuple(BlobReference(o, self) for o in op.output)
        return refs[0] if len(refs) == 1 else refs

    def __getattr__(self, op_type: str) -> Any:
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        SCHEMAS.get(op_type)  # UnknownOperatorError with "did you mean"

        def call(inputs: Any = (), outputs: Any = None, **kwargs: Any) -> Any:
            return self.add_op(op_type, inputs, outputs, **kwargs)

        call.__name__ = op_type
        call.__doc__ = SCHEMAS.get(op_type).doc
        return call

    def clone(self, name: str) -> Net:
        copy = NetDef()
        copy.CopyFrom(self._net)
        copy.name = name
        return Net(copy)

    Clone = clone

    def add_gradient_ops(self, losses: Any) -> dict[str, BlobReference]:
        """Append the gradient ops of this net w.r.t. ``losses`` (a blob, a list of blobs, or a
        mapping {loss: its gradient blob}); returns {blob: gradient blob}, Caffe2's
        ``AddGradientOperators``. Blobs that feed several ops get their partial gradients summed."""
        from kaffa.gradients import add_gradient_ops

        if isinstance(losses, dict):
            spec: Any = {_name_of(k): (_name_of(v) if v is not None else None) for k, v in losses.items()}
        else:
            spec = [_name_of(x) for x in _as_list(losses)]
        new_ops, grads = add_gradient_ops(list(self._net.op), spec, self.name)
        self._net.op.extend(new_ops)
        for op in new_ops:
            self._produced.update(op.output)
        return {blob: BlobReference(g, self) for blob, g in grads.items()}

    AddGradientOperators = add_gradient_ops

    def run_all_on(self, device: Any, engine: str | None = None) -> None:
        """Stamp ``device`` (name or DeviceOption) on the net and every op, like Caffe2's RunAllOnGPU."""
        opt = device if isinstance(device, _DeviceOptionProto) else _device_option(device)
        self._net.device_option.CopyFrom(opt)
        for op in self._net.op:
            op.device_option.CopyFrom(opt)
            if engine:
                op.engine = engine

    def __str__(self) -> str:
        from google.protobuf import text_format

        return text_format.MessageToString(self._net)

    def __len__(self) -> int:
        return len(self._net.op)

    @property
    def ops(self) -> Sequence[OperatorDef]:
        return self._net.op


CreateOperator = create_operator
ScopedBlobReference = BlobReference
