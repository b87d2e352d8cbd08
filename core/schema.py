"""Operator schemas: one device-independent registry of what every operator is.

A schema fixes an op's arity, its typed arguments with defaults, which inputs may be written
in place, how output shapes and dtypes follow from the inputs, the dtypes the op is defined
for, and its documentation. Net creation checks every op against its schema, so unknown ops
and bad arguments fail before anything runs.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kaffa import dtypes as _dt
from kaffa.errors import ArgumentError, KaffaError, SchemaError, ShapeError, UnknownOperatorError
from kaffa.proto import Argument, NetDef, OperatorDef, TensorProto

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class TensorInfo:
    """What shape inference knows about a blob: a shape (None if even the rank is unknown,
    None entries for unknown dims) and a dtype (None if unknown)."""

    shape: Shape | None = None
    dtype: np.dtype | None = None

    @classmethod
    def of(cls, value: Any) -> TensorInfo:
        shape = getattr(value, "shape", None)
        dtype = getattr(value, "dtype", None)
        return cls(
            tuple(int(d) for d in shape) if shape is not None else None,
            np.dtype(dtype) if dtype is not None else None,
        )

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def known(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)

    def with_dtype(self, dtype: np.dtype | None) -> TensorInfo:
        return TensorInfo(self.shape, None if dtype is None else np.dtype(dtype))

    def __str__(self) -> str:
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{_dt.name(self.dtype)}[{dims}]"


UNKNOWN = TensorInfo()


class ArgType(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    DTYPE = "dtype"  # a TensorProto.DataType number (or name); parsed to a numpy dtype
    INTS = "ints"
    FLOATS = "floats"
    STRINGS = "strings"
    TENSOR = "tensor"
    TENSORS = "tensors"
    NET = "net"
    NETS = "nets"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Arg:
    """One argument of an op. ``default=None`` means optional with no value; ``REQUIRED`` means it
    must be given."""

    name: str
    type: ArgType
    default: Any = None
    doc: str = ""
    # Bulk data (GivenTensorFill's values: millions of elements): FLOATS / INTS parse to a
    # float64 / int64 numpy array, copied straight out of protobuf's buffer, not a Python list.
    bulk: bool = False


# Arguments Caffe2 models carry on many ops that change nothing about the result here. They are
# accepted (and ignored) everywhere so Caffe2-written files load.
TOLERATED_ARGS = frozenset(
    {
        "use_cudnn",
        "cudnn_exhaustive_search",
        "exhaustive_search",
        "ws_nbytes_limit",
        "shared_buffer",
        "float16_compute",
        "init_params",
        "deterministic",
        "use_gpu_engine",
    }
)


def check(condition: bool, message: str) -> None:
    """Raise a ShapeError with ``message`` unless ``condition`` holds (used by inference functions)."""
    if not condition:
        raise ShapeError(message)


InferFn = Callable[[Mapping[str, Any], list[TensorInfo], int], list[TensorInfo]]


@dataclass
class OpSchema:
    """Everything device-independent about one operator type."""

    name: str
    doc: str = ""
    family: str = "misc"
    inputs: tuple[int, float] = (1, 1)  # (min, max); max may be math.inf
    outputs: tuple[int, float] = (1, 1)
    input_docs: Sequence[tuple[str, str]] = ()
    output_docs: Sequence[tuple[str, str]] = ()
    args: Mapping[str, Arg] = field(default_factory=dict)
    # In-place: None (never), "one_to_one" (input i may be output i), "any", or a set of (in, out) pairs.
    inplace: Any = None
    enforce_inplace: frozenset[tuple[int, int]] = frozenset()
    infer: InferFn | None = None
    canonicalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # The dtypes the op is defined for (what a backend may claim), and which input carries that
    # type T (None: output 0, for ops without a typed input such as fillers).
    dtypes: tuple[np.dtype, ...] = _dt.FLOAT_TYPES
    type_input: int | None = 0
    # Gradients (filled in by the operator-library issue): a maker returning gradient OperatorDefs.
    gradient: Callable[..., Any] | None = None  # see kaffa.gradients
    differentiable: bool = True
    # A gradient op (ReluGradient...): conformance checks it through its forward op's gradient rows.
    gradient_op: bool = False
    # Outputs whose gradients flow back (None: all). SpatialBN's running stats do not.
    grad_outputs: tuple[int, ...] | None = None
    # A random op: outputs are checked by statistics, not element by element.
    stochastic: bool = False

    # -- checks --------------------------------------------------------------------------------
    def check_arity(self, op: OperatorDef) -> None:
        n_in, n_out = len(op.input), len(op.output)
        for what, n, (lo, hi) in (("inputs", n_in, self.inputs), ("outputs", n_out, self.outputs)):
            if not lo <= n <= hi:
                want = f"{lo}" if lo == hi else (f"at least {lo}" if hi == math.inf else f"{lo} to {int(hi)}")
                raise SchemaError(f"{self.name} takes {want} {what}, got {n}")

    def check_inplace(self, op: OperatorDef) -> None:
        for o, out in enumerate(op.output):
            for i, inp in enumerate(op.input):
                if inp == out and not self._inplace_allowed(i, o):
                    raise SchemaError(f"{self.name} may not write input {i} ('{inp}') in place as output {o}")
        for i, o in self.enforce_inplace:
            if i < len(op.input) and o < len(op.output) and op.input[i] != op.output[o]:
                raise SchemaError(
                    f"{self.name} must write input {i} in place: output {o} must be '{op.input[i]}', "
                    f"got '{op.output[o]}'"
                )

    def _inplace_allowed(self, i: int, o: int) -> bool:
        if (i, o) in self.enforce_inplace:
            return True
        if self.inplace == "any":
            return True
        if self.inplace == "one_to_one":
            return i == o
        return bool(self.inplace) and (i, o) in self.inplace

    def parse_args(self, arguments: Iterable[Argument]) -> dict[str, Any]:
        """Typed argument values with defaults filled in, then canonicalized."""
        values: dict[str, Any] = {}
        for arg in arguments:
            spec = self.args.get(arg.name)
            if spec is None:
                if arg.name in TOLERATED_ARGS:
                    continue
                close = difflib.get_close_matches(arg.name, list(self.args), n=2, cutoff=0.6)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                known = ", ".join(sorted(self.args)) or "none"
                raise ArgumentError(
                    f"{self.name} has no argument '{arg.name}'{hint} (its arguments: {known})"
                )
            if arg.name in values:
                raise ArgumentError(f"{self.name}: argument '{arg.name}' is given twice")
            values[arg.name] = _parse_value(self.name, spec, arg)
        for spec in self.args.values():
            if spec.name not in values:
                if spec.default is REQUIRED:
                    raise ArgumentError(f"{self.name} requires argument '{spec.name}' ({spec.type.value})")
                values[spec.name] = spec.default
        return self.canonicalize(values) if self.canonicalize else values

    def infer_outputs(
        self, args: Mapping[str, Any], inputs: list[TensorInfo], num_outputs: int
    ) -> list[TensorInfo]:
        if self.infer is None:
            return [UNKNOWN] * num_outputs
        out = list(self.infer(args, inputs, num_outputs))
        if len(out) < num_outputs:
            out += [UNKNOWN] * (num_outputs - len(out))
        return out[:num_outputs]


def _field_kind(arg: Argument) -> str | None:
    for name in ("f", "i", "s", "t", "n"):
        if arg.HasField(name):
            return name
    for name in ("floats", "ints", "strings", "tensors", "nets"):
        if len(getattr(arg, name)):
            return name
    return None


def _parse_value(op: str, spec: Arg, arg: Argument) -> Any:
    kind = _field_kind(arg)
    t = spec.type

    def wrong() -> ArgumentError:
        got = {
            "f": "a float",
            "i": "an int",
            "s": "a string",
            "t": "a tensor",
            "n": "a net",
            "floats": "a list of floats",
            "ints": "a list of ints",
            "strings": "a list of strings",
            "tensors": "a list of tensors",
            "nets": "a list of nets",
            None: "no value",
        }[kind]
        return ArgumentError(f"{op}: argument '{spec.name}' must be {t.value}, got {got}")

    if t is ArgType.INT:
        if kind == "i":
            return int(arg.i)
        raise wrong()
    if t is ArgType.FLOAT:
        if kind == "f":
            return float(arg.f)
        if kind == "i":
            return float(arg.i)
        raise wrong()
    if t is ArgType.BOOL:
        if kind == "i" and arg.i in (0, 1):
            return bool(arg.i)
        raise wrong()
    if t is ArgType.STRING:
        if kind == "s":
            return arg.s.decode("utf-8")
        raise wrong()
    if t is ArgType.DTYPE:
        try:
            if kind == "i":
                return _dt.to_numpy(arg.i)
            if kind == "s":
                return _dt.parse(arg.s.decode("utf-8"))
        except (ValueError, TypeError) as e:
            raise ArgumentError(f"{op}: argument '{spec.name}': {e}") from None
        raise wrong()
    if t is ArgType.INTS:
        if kind in ("ints", None):
            if spec.bulk:
                return np.array(arg.ints, dtype=np.int64)
            return list(arg.ints)  # protobuf hands out Python ints already; list() is the fast copy
        raise wrong()
    if t is ArgType.FLOATS:
        if kind in ("floats", None):
            if spec.bulk:  # 11.7 M floats (ResNet-18): 0.02 s instead of 1.4 s through a list
                return np.array(arg.floats, dtype=np.float64)
            return list(arg.floats)
        if kind == "ints":
            if spec.bulk:
                return np.array(arg.ints, dtype=np.float64)
            return [float(v) for v in arg.ints]
        raise wrong()
    if t is ArgType.STRINGS:
        if kind in ("strings", None):
            return [s.decode("utf-8") for s in arg.strings]
        raise wrong()
    if t is ArgType.TENSOR:
        if kind == "t":
            return arg.t
        raise wrong()
    if t is ArgType.TENSORS:
        if kind in ("tensors", None):
            return list(arg.tensors)
        raise wrong()
    if t is ArgType.NET:
        if kind == "n":
            return arg.n
        raise wrong()
    if t is ArgType.NETS:
        if kind in ("nets", None):
            return list(arg.nets)
        raise wrong()
    raise AssertionError(t)  # pragma: no cover


def make_argument(name: str, value: Any) -> Argument:
    """Caffe2's MakeArgument: float -> f, int/bool -> i, str/bytes -> s, NetDef -> n, lists alike."""
    arg = Argument(name=name)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (bool, int)):
        arg.i = int(value)
    elif isinstance(value, float):
        arg.f = value
    elif isinstance(value, str):
        arg.s = value.encode("utf-8")
    elif isinstance(value, bytes):
        arg.s = value
    elif isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        arg.i = _dt.from_numpy(value)
    elif isinstance(value, NetDef):
        arg.n.CopyFrom(value)
    elif isinstance(value, TensorProto):
        arg.t.CopyFrom(value)
    elif isinstance(value, (list, tuple)):
        items = [v.item() if isinstance(v, np.generic) else v for v in value]
        if all(isinstance(v, (bool, int)) for v in items):
            arg.ints.extend(int(v) for v in items)
        elif all(isinstance(v, (bool, int, float)) for v in items):
            arg.floats.extend(float(v) for v in items)
        elif all(isinstance(v, (str, bytes)) for v in items):
            arg.strings.extend(v.encode("utf-8") if isinstance(v, str) else v for v in items)
        elif all(isinstance(v, NetDef) for v in items):
            arg.nets.extend(items)
        elif all(isinstance(v, TensorProto) for v in items):
            arg.tensors.extend(items)
        else:
            raise ArgumentError(
                f"argument '{name}': cannot store a list mixing {sorted({type(v).__name__ for v in items})}"
            )
    elif hasattr(value, "SerializeToString"):
        arg.s = value.SerializeToString()
    else:
        raise ArgumentError(f"argument '{name}': cannot store a value of type {type(value).__name__}")
    return arg


class SchemaRegistry:
    """Name -> OpSchema. One per process (``SCHEMAS``); plugins add theirs through a hook."""

    def __init__(self) -> None:
        self._schemas: dict[str, OpSchema] = {}

    def register(self, schema: OpSchema, replace: bool = False) -> OpSchema:
        if schema.name in self._schemas and not replace and self._schemas[schema.name] is not schema:
            raise SchemaError(f"operator '{schema.name}' is already registered")
        self._schemas[schema.name] = schema
        return schema

    def get(self, name: str) -> OpSchema:
        try:
            return self._schemas[name]
        except KeyError:
            raise UnknownOperatorError(name, self._schemas) from None

    def __contains__(self, name: object) -> bool:
        return name in self._schemas

    def __iter__(self):
        return iter(sorted(self._schemas))

    def __len__(self) -> int:
        return len(self._schemas)

    def all(self) -> list[OpSchema]:
        return [self._schemas[n] for n in sorted(self._schemas)]


SCHEMAS = SchemaRegistry()


def infer_net(ops: Iterable[OperatorDef], infos: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    """Best-effort shapes and dtypes through ``ops`` in order, starting from ``infos`` (updated in
    place and returned): an op whose schema rejects what is known leaves its outputs unknown."""
    for op in ops:
        try:
            schema = SCHEMAS.get(op.type)
            ins = [infos.get(n, UNKNOWN) for n in op.input]
            outs = schema.infer_outputs(schema.parse_args(op.arg), ins, len(op.output))
        except KaffaError:
            outs = [UNKNOWN] * len(op.output)
        infos.update(zip(op.output, outs))
    return infos


def define(name: str, **kwargs: Any) -> OpSchema:
    """Create and register a schema. ``inputs``/``outputs`` take an int or a (min, max) pair; ``args``
    takes a list of Arg."""
    for key in ("inputs", "outputs"):
        value = kwargs.get(key)
        if isinstance(value, int):
            kwargs[key] = (value, value)
    if "args" in kwargs and not isinstance(kwargs["args"], Mapping):
        kwargs["args"] = {a.name: a for a in kwargs["args"]}
    return SCHEMAS.register(OpSchema(name=name, **kwargs))


# -- small inference helpers shared by the op families -----------------------------------------


def same_as_input(index: int = 0) -> InferFn:
    def infer(args: Mapping[str, Any], inputs: list[TensorInfo], n: int) -> list[TensorInfo]:
        return [inputs[index]] * n

    return infer


def prod(dims: Sequence[int | None]) -> int | None:
    """Product of dims, None if any is unknown."""
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= d
    return out


def norm_axis(axis: int, rank: int, op: str, what: str = "axis") -> int:
    check(-rank <= axis < rank, f"{op}: {what} {axis} is out of range for a rank-{rank} input")
    return axis % rank


def same_dtype(op: str, infos: Sequence[TensorInfo]) -> np.dtype | None:
    known = [i.dtype for i in infos if i.dtype is not None]
    for d in known[1:]:
        check(
            d == known[0], f"{op}: inputs must share one dtype, got {', '.join(_dt.name(k) for k in known)}"
        )
    return known[0] if known else None
