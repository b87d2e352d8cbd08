"""Reading and writing model files (binary .pb or text .pbtxt) with clear errors for bad bytes."""

from __future__ import annotations

import os
import secrets
import stat
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


def _first_problem(msg: Message, path: str) -> str | None:
    """The first sign, anywhere in ``msg``, that the bytes were not this message: fields unknown to the
    schema (a different message parses with its fields moved to the unknown set, often only inside a
    sub-message) or a string field that is not UTF-8 (protobuf then hands back ``bytes``)."""
    n = _unknown_fields(msg)
    if n:
        return f"{n} unknown field(s) in {path}"
    for fd, value in msg.ListFields():
        if fd.type not in (fd.TYPE_MESSAGE, fd.TYPE_STRING):  # never walk float_data and the like
            continue
        values = value if fd.is_repeated else [value]
        for j, item in enumerate(values):
            where = f"{path}.{fd.name}" + (f"[{j}]" if fd.is_repeated else "")
            if fd.type == fd.TYPE_MESSAGE:
                problem = _first_problem(item, where)
                if problem:
                    return problem
            elif fd.type == fd.TYPE_STRING and isinstance(item, bytes):
                return f"{where} is not UTF-8 text"
    return None


def parse(cls: type[M], data: bytes, what: str = "") -> M:
    """Parse binary protobuf ``data`` as ``cls``; raise ModelFormatError for corrupt or truncated bytes,
    or for bytes that are a different message (fields unknown to ``cls`` at any depth, text fields that
    are not text, required fields missing, which Caffe2's C++ parser also rejects).

    A protobuf has no end marker: bytes cut exactly between two top-level fields, or another message
    whose fields happen to fit ``cls``, still parse; callers validate what the message means."""
    prefix = f"{what}: " if what else ""
    name = cls.__name__
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFormatError(
            f"{prefix}expected bytes for a {name}, got {type(data).__name__} (open files with 'rb')"
        )
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelFormatError(
            f"{prefix}not a valid {name} ({len(data)} bytes; corrupt or truncated?): {e}"
        ) from None
    problem = _first_problem(msg, name)
    if problem:
        raise ModelFormatError(
            f"{prefix}not a valid {name}: {problem}; the data is corrupt or is a different message type"
        )
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise ModelFormatError(
            f"{prefix}not a valid {name}: required field(s) {missing} missing; the data is truncated, "
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
            raise ModelFormatError(f"{p}: not a valid text-format {cls.__name__}: {e}") from None
        return msg
    return parse(cls, data, str(p))


def load_netdef(path: str | os.PathLike[str]) -> NetDef:
    return load(NetDef, path)


def load_plan(path: str | os.PathLike[str]) -> PlanDef:
    return load(PlanDef, path)


def load_tensors(path: str | os.PathLike[str]) -> list[TensorProto]:
    return list(load(TensorProtos, path).protos)


def save(msg: Message, path: str | os.PathLike[str], text: bool | None = None) -> None:
    """Write atomically (temp file + fsync + rename): a crash never leaves a half-written model, and an
    existing file keeps its permissions (a new one gets the usual umask-based mode)."""
    p = Path(path)
    if text is None:
        text = p.suffix in (".pbtxt", ".prototxt", ".txt")
    data = text_format.MessageToString(msg).encode("utf-8") if text else msg.SerializeToString()
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except FileNotFoundError:
        mode = None
    tmp = p.parent / f".{p.name}.{secrets.token_hex(8)}.tmp"
    # os.open applies the umask to 0o666, as open() does (tempfile.mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
