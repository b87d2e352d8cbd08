"""Typed errors. Every error about an operator names the net, the op index and type, and the
shapes of its inputs, so a user can find the op without dumping the whole NetDef."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class KaffaError(Exception):
    """Base class of every error kaffa raises on purpose."""


@dataclass(frozen=True)
class OpLocation:
    """Where in a model an error happened. Shapes are pre-formatted strings ("float32[2,3]")."""

    net: str = ""
    index: int | None = None
    op_type: str = ""
    op_name: str = ""
    inputs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def describe(self) -> str:
        parts = []
        if self.net:
            parts.append(f"net '{self.net}'")
        if self.index is not None or self.op_type:
            op = f"op #{self.index}" if self.index is not None else "op"
            op += f" {self.op_type}" if self.op_type else ""
            op += f" '{self.op_name}'" if self.op_name else ""
            parts.append(op)
        text = ", ".join(parts)
        if self.inputs:
            text += " with inputs " + ", ".join(f"{n}: {s}" for n, s in self.inputs)
        return text


class OperatorError(KaffaError):
    """An error tied to one operator of a net. ``location`` says which one."""

    def __init__(self, message: str, location: OpLocation | None = None):
        self.message = message
        self.location = location or OpLocation()
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.location.describe()
        return f"{self.message} (in {where})" if where else self.message

    def at(self, location: OpLocation) -> OperatorError:
        """Return the same error with its location filled in (used when it propagates out of a net)."""
        merged = OpLocation(
            net=self.location.net or location.net,
            index=self.location.index if self.location.index is not None else location.index,
            op_type=self.location.op_type or location.op_type,
            op_name=self.location.op_name or location.op_name,
            inputs=self.location.inputs or location.inputs,
        )
        err = self.__class__.__new__(self.__class__)
        err.__dict__.update(self.__dict__)
        err.location = merged
        Exception.__init__(err, err._format())
        return err


class UnknownOperatorError(OperatorError):
    """No schema is registered for an operator type."""

    def __init__(self, op_type: str, known: Iterable[str], location: OpLocation | None = None):
        self.op_type = op_type
        self.suggestions = difflib.get_close_matches(op_type, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown operator type '{op_type}'{hint}", location)


class SchemaError(OperatorError):
    """An op breaks its schema: wrong number of inputs or outputs, a forbidden in-place use."""


class ArgumentError(SchemaError):
    """An op argument is unknown, missing, or of the wrong type."""


class ShapeError(OperatorError):
    """Input shapes or dtypes an op cannot accept (found by shape inference or by a kernel)."""


class MissingBlobError(OperatorError):
    """An op reads a blob that does not exist and that no earlier op produces."""


@dataclass(frozen=True)
class Unsupported:
    """One op a backend cannot run, and why."""

    index: int
    op_type: str
    backend: str
    reason: str

    def __str__(self) -> str:
        return f"op #{self.index} {self.op_type} on {self.backend}: {self.reason}"


class UnsupportedOperatorError(OperatorError):
    """Strict placement: some ops have no kernel on their backend. Lists all of them at once."""

    def __init__(self, net: str, unsupported: Sequence[Unsupported], strict: bool = True):
        self.unsupported = list(unsupported)
        self.strict = strict
        lines = "\n".join(f"  - {u}" for u in self.unsupported)
        why = "the placement policy is strict (no cpu fallback)" if strict else "cpu cannot run them either"
        super().__init__(
            f"{len(self.unsupported)} op(s) of net '{net}' are unsupported on their backend and {why}:\n"
            + lines,
            OpLocation(net=net),
        )

    def _format(self) -> str:  # the list already names the net and every op
        return self.message


class ExecutionError(OperatorError):
    """A kernel raised while a net ran. The original exception is the ``__cause__``."""


class IterationLimitError(ExecutionError):
    """A loop (While, an imported ONNX Loop) ran past its ``max_iterations`` instead of hanging.
    ``limit`` is the bound it hit."""

    def __init__(self, message: str, location: OpLocation | None = None, limit: int = 0):
        self.limit = limit
        super().__init__(message, location)


class DeviceError(KaffaError):
    """A device that does not exist or whose backend is unavailable."""


class KernelBuildError(DeviceError):
    """A device kernel's source failed to compile. The message names the source file, the kernel
    types and the device, and carries the compiler's build log."""


class DeviceMemoryError(OperatorError, DeviceError):
    """A device ran out of memory while allocating an array. Raised out of a net it names the op;
    the run that hit it changed nothing in the workspace. Free blobs and retry."""


class ModelFormatError(KaffaError):
    """Bytes or a file that are not a valid serialized model message."""


class PluginError(KaffaError):
    """A backend plugin failed to load or broke its contract."""
