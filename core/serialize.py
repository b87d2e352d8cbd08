"""Reading and writing model files (binary .pb or text .pbtxt) with clear errors for bad bytes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message

from kaffa.errors import ModelFormatError
from kaffa.proto import NetDef, PlanDef, TensorProto, TensorProtos

M = TypeVar("M", bound=Message)


def _unknown_fields(msg: Message) -> int:
    try:
        from google.protobuf import unknown_fields

        return len(unknown_fields.UnknownFieldSet(msg))
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - older protobuf
        return 0


def parse(cls: type[M], data: bytes, what: str = "") -> M:
    """Parse binary protobuf ``data`` as ``cls``; raise ModelFormatError for corrupt or truncated bytes,
    or for bytes that are a different message (fields unknown to ``cls``)."""
    label = what or f"{cls.__name__} bytes"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFormatError(f"{label}: expected bytes, got {type(data).__name__} (open files with 'rb')")
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelFormatError(
            f"{label} are not a valid {cls.__name__} ({len(data)} bytes; corrupt or truncated?): {e}"
        ) from None
    n = _unknown_fields(msg)
    if n:
        raise ModelFormatError(
            f"{label} parse as {cls.__name__} only with {n} unknown field(s): the data is "
            f"corrupt or is a different message type"
        )
    return msg


def parse_netdef(data: bytes, what: str = "") -> NetDef:
    return parse(NetDef, data, what)


def load(cls: type[M], path: str | os.PathLike[str]) -> M:
    """Load a message from a binary file, or from a text-format file (.pbtxt / .prototxt / .txt)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelFormatError(f"cannot read {p}: {e.strerror}") from None
    if p.suffix in (".pbtxt", ".prototxt", ".txt"):
        msg = cls()
        try:
            text_format.Parse(data.decode("utf-8"), msg)
        except (text_format.ParseError, UnicodeDecodeError) as e:
            raise ModelFormatError(f"{p} is not a valid text-format {cls.__name__}: {e}") from None
        return msg
    return parse(cls, data, str(p))


def load_netdef(path: str | os.PathLike[str]) -> NetDef:
    return load(NetDef, path)


def load_plan(path: str | os.PathLike[str]) -> PlanDef:
    return load(PlanDef, path)


def load_tensors(path: str | os.PathLike[str]) -> list[TensorProto]:
    return list(load(TensorProtos, path).protos)


def save(msg: Message, path: str | os.PathLike[str], text: bool | None = None) -> None:
    """Write atomically (temp file + rename): a crash never leaves a half-written model."""
    p = Path(path)
    if text is None:
        text = p.suffix in (".pbtxt", ".prototxt", ".txt")
    data = text_format.MessageToString(msg).encode("utf-8") if text else msg.SerializeToString()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
