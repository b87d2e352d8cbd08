"""Checkpoints (named tensors in one verified file) and Caffe2-style model export.

    checkpoint.save("ckpt.pb", ws, model.get_all_params())     # or a {name: array} dict
    checkpoint.load_into(ws, "ckpt.pb")                        # or checkpoint.load(path) -> dict
    checkpoint.export_model(model, ws, "out/", ["data"], ["softmax"])   # init_net.pb + predict_net.pb
    probs, = checkpoint.load_model("out/").run([images])

File format: a plain ``TensorProtos`` message (one ``TensorProto`` per blob, name in
``TensorProto.name``), so ``kaffa.serialize.load_tensors`` and Caffe2 read it as it is. Its last
entry is a footer tensor named ``__kaffa_checkpoint__`` (STRING, dims [1]) holding JSON:
``{"format": "kaffa-checkpoint", "version": 1, "tensors": K, "payload_bytes": N, "sha256": H}``,
where the payload is every byte of the file before the footer's entry (the K tensor entries as
written). A footer at the end makes truncation at any point detectable (a protobuf has no end
marker, so a file cut between two entries would otherwise parse); the digest catches any other
damage. Files are written atomically: temp file in the same folder, fsync, ``os.replace``, fsync of
the folder; a failed save leaves the previous file as it was and no temp file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from kaffa import serialize
from kaffa import tensor as _tensor
from kaffa.core import BlobReference, Net
from kaffa.errors import KaffaError, ModelFormatError
from kaffa.model_helper import ModelHelper, extract_predictor_net
from kaffa.net import NetBenchmark
from kaffa.proto import NetDef, OperatorDef, TensorProto, TensorProtos
from kaffa.schema import make_argument
from kaffa.workspace import Workspace

__all__ = [
    "FOOTER_NAME",
    "CheckpointError",
    "CorruptCheckpointError",
    "Predictor",
    "export_model",
    "fill_op",
    "load",
    "load_into",
    "load_model",
    "save",
]

FOOTER_NAME = "__kaffa_checkpoint__"
FORMAT = "kaffa-checkpoint"
VERSION = 1
INIT_NET = "init_net.pb"
PREDICT_NET = "predict_net.pb"

PathLike = Union[str, "os.PathLike[str]"]
BlobName = str | BlobReference


class CheckpointError(KaffaError):
    """A checkpoint could not be written or read. ``path`` names the file."""

    def __init__(self, message: str, path: PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(message)


class CorruptCheckpointError(CheckpointError, ModelFormatError):
    """A checkpoint file whose bytes are damaged, truncated, or not a kaffa checkpoint."""


# -- writing ---------------------------------------------------------------------------------------
def _field1(payload: bytes) -> bytes:
    """One ``TensorProtos.protos`` entry on the wire: tag (field 1, length-delimited), length, bytes."""
    n, head = len(payload), bytearray(b"\x0a")
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            head.append(byte | 0x80)
        else:
            head.append(byte)
            return bytes(head) + payload


def _footer(count: int, payload_bytes: int, digest: str) -> TensorProto:
    info = {"format": FORMAT, "version": VERSION, "tensors": count, "payload_bytes": payload_bytes}
    info["sha256"] = digest
    proto = TensorProto(name=FOOTER_NAME, data_type=TensorProto.STRING, dims=[1])
    proto.string_data.append(json.dumps(info, sort_keys=True).encode("utf-8"))
    return proto


def _write_chunks(fd: int, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; not every platform or filesystem lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, chunks: Iterable[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # os.open applies the umask to 0o666 as open() does (mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            _write_chunks(fd, chunks)
            os.fsync(fd)
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _collect(
    blobs: Mapping[str, Any] | Workspace, names: Iterable[BlobName] | None
) -> list[tuple[str, np.ndarray]]:
    if isinstance(blobs, Workspace):
        wanted = blobs.blobs() if names is None else [str(n) for n in names]
        items = [(n, blobs.fetch_blob(n)) for n in wanted]
    else:
        wanted = list(blobs) if names is None else [str(n) for n in names]
        lookup = {str(k): v for k, v in blobs.items()}
        missing = [n for n in wanted if n not in lookup]
        if missing:
            raise KeyError(f"checkpoint.save: no value given for {missing}")
        items = [(n, lookup[n]) for n in wanted]
    seen: set[str] = set()
    out = []
    for name, value in items:
        if not name or name == FOOTER_NAME:
            raise ValueError(f"checkpoint.save: {name!r} cannot be a blob name in a checkpoint")
        if name in seen:
            raise ValueError(f"checkpoint.save: blob '{name}' is listed twice")
        seen.add(name)
        if not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError(
                f"checkpoint.save: blob '{name}' holds a {type(value).__name__}, not a tensor; leave it out"
            )
        out.append((name, np.asarray(value)))
    return out


def save(
    path: PathLike,
    blobs: Mapping[str, Any] | Workspace,
    names: Iterable[BlobName] | None = None,
    raw: bool = True,
) -> Path:
    """Write ``blobs`` (a {name: array} mapping, or a Workspace) to ``path`` atomically, in the order
    given. ``names`` picks the blobs (default: all, for a Workspace in sorted order). ``raw=True``
    stores the bytes in ``raw_data`` (fast, exact); ``raw=False`` uses the typed fields pre-2018
    Caffe2 reads. Raises CheckpointError (the OSError as its cause) when the file cannot be written;
    the previous file at ``path`` is then untouched."""
    p = Path(path)
    items = _collect(blobs, names)
    entries = [
        _field1(_tensor.from_numpy(arr, name=name, raw=raw).SerializeToString()) for name, arr in items
    ]
    digest = hashlib.sha256()
    for e in entries:
        digest.update(e)
    size = sum(len(e) for e in entries)
    footer = _field1(_footer(len(entries), size, digest.hexdigest()).SerializeToString())
    try:
        _atomic_write(p, [*entries, footer])
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {p}: {e.strerror or e}", p) from e
    return p


# -- reading ---------------------------------------------------------------------------------------
def _corrupt(p: Path, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"checkpoint {p}: {what}", p)


def _verified(p: Path) -> list[TensorProto]:
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}", p) from None
    if not data:
        raise _corrupt(p, "the file is empty (truncated?)")
    try:
        msg = serialize.parse(TensorProtos, data)
    except ModelFormatError as e:
        raise _corrupt(p, str(e)) from None
    protos = list(msg.protos)
    if not protos or protos[-1].name != FOOTER_NAME:
        raise _corrupt(
            p,
            f"no '{FOOTER_NAME}' footer at the end: the file is truncated, or is a plain TensorProtos "
            "file that kaffa.serialize.load_tensors reads",
        )
    footer = protos.pop()
    try:
        (text,) = footer.string_data
        info = json.loads(text.decode("utf-8"))
        count, size, expected = int(info["tensors"]), int(info["payload_bytes"]), str(info["sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise _corrupt(p, f"unreadable footer ({type(e).__name__}: {e})") from None
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise _corrupt(p, f"unknown format {info.get('format')!r} version {info.get('version')!r}")
    tail = _field1(footer.SerializeToString())
    if not data.endswith(tail) or len(data) - len(tail) != size:
        raise _corrupt(
            p, f"the footer promises {size} payload bytes before it, the file has {len(data) - len(tail)}"
        )
    actual = hashlib.sha256(memoryview(data)[:size]).hexdigest()
    if actual != expected:
        raise _corrupt(p, f"sha256 mismatch (stored {expected[:16]}..., computed {actual[:16]}...): damaged")
    if len(protos) != count:
        raise _corrupt(p, f"the footer promises {count} tensors, the file has {len(protos)}")
    return protos


def _iter_arrays(p: Path) -> Iterator[tuple[str, np.ndarray]]:
    seen: set[str] = set()
    for proto in _verified(p):
        if not proto.name or proto.name in seen:
            raise _corrupt(p, f"tensor name {proto.name!r} is empty or repeated")
        seen.add(proto.name)
        try:
            yield proto.name, _tensor.to_numpy(proto)
        except ModelFormatError as e:
            raise _corrupt(p, str(e)) from None


def load(path: PathLike) -> dict[str, np.ndarray]:
    """Read and verify a checkpoint: {name: array} in the saved order. A damaged, truncated or
    foreign file raises CorruptCheckpointError naming the file and what is wrong."""
    return dict(_iter_arrays(Path(path)))


def load_into(
    workspace: Workspace,
    path: PathLike,
    names: Iterable[BlobName] | None = None,
    device: Any = None,
) -> list[str]:
    """Verify a checkpoint, then feed its blobs (or those of ``names``) into ``workspace`` on
    ``device`` (default: the current DeviceScope / cpu). Nothing is fed if the file is bad. Returns
    the names fed."""
    p = Path(path)
    arrays = load(p)
    if names is not None:
        wanted = [str(n) for n in names]
        missing = [n for n in wanted if n not in arrays]
        if missing:
            raise CheckpointError(f"checkpoint {p} has no blob(s) {missing}", p)
        arrays = {n: arrays[n] for n in wanted}
    for name, arr in arrays.items():
        workspace.feed_blob(name, arr, device)
    return list(arrays)


# -- export ----------------------------------------------------------------------------------------
# dtype -> the GivenTensor*Fill that holds it (Caffe2's init_net convention).
_FILLERS = {
    np.dtype(np.float32): "GivenTensorFill",
    np.dtype(np.float64): "GivenTensorDoubleFill",
    np.dtype(np.int32): "GivenTensorIntFill",
    np.dtype(np.int64): "GivenTensorInt64Fill",
    np.dtype(np.bool_): "GivenTensorBoolFill",
}


def fill_op(name: str, value: np.ndarray) -> OperatorDef:
    """The GivenTensor*Fill op that recreates ``value`` exactly as blob ``name``."""
    arr = np.asarray(value)
    op_type = _FILLERS.get(arr.dtype)
    extra: dict[str, Any] = {}
    if arr.dtype == np.float16:  # every float16 is a float32, so GivenTensorFill holds it exactly
        op_type, extra = "GivenTensorFill", {"dtype": np.float16}
    if op_type is None:
        raise ValueError(f"cannot export blob '{name}' of dtype {arr.dtype}: no GivenTensor*Fill holds it")
    if arr.dtype == np.float64 and not np.array_equal(arr.astype(np.float32).astype(np.float64), arr):
        # Argument.floats is a float32 field, as in Caffe2: GivenTensorDoubleFill would round.
        raise ValueError(
            f"cannot export float64 blob '{name}' exactly: NetDef arguments hold float32; cast it to "
            "float32 or use checkpoint.save"
        )
    op = OperatorDef(type=op_type, output=[name])
    op.arg.append(make_argument("shape", [int(d) for d in arr.shape]))
    values = op.arg.add(name="values")  # filled in place: appending a built Argument copies it
    # Python numbers: protobuf extends from a list ~10x faster than from an array.
    if arr.dtype.kind in "bi":
        values.ints.extend(arr.reshape(-1).astype(np.int64).tolist())
    else:
        values.floats.extend(arr.reshape(-1).tolist())
    op.arg.extend(make_argument(k, v) for k, v in extra.items())
    return op


def _as_proto(model: Any) -> NetDef:
    if isinstance(model, NetDef):
        return model
    if isinstance(model, Net):
        return model.Proto()
    if isinstance(model, ModelHelper):
        return model.net.Proto()
    raise TypeError(f"export_model takes a ModelHelper, a Net or a NetDef, got {type(model).__name__}")


def export_model(
    model: Any,
    workspace: Workspace,
    directory: PathLike,
    inputs: Sequence[BlobName],
    outputs: Sequence[BlobName],
    device: Any = None,
) -> tuple[Path, Path]:
    """Write ``directory/init_net.pb`` (one GivenTensor*Fill per parameter, holding its current value
    in ``workspace``) and ``directory/predict_net.pb`` (the inference net: the forward ops from
    ``inputs`` to ``outputs`` of ``model``'s net, with is_test=1, see
    ``model_helper.extract_predictor_net``). ``model`` is a ModelHelper, a Net or a NetDef. Returns
    the two paths.

    The ops of both files carry no device (they run on cpu, or where ``Predictor(device=...)`` puts
    them), whatever device the model trained on, unless ``device`` (a name like "cuda:0" or a
    DeviceOption) is given: then every op gets it."""
    predict, params = extract_predictor_net(_as_proto(model), inputs, outputs)
    predict_proto = predict.Proto()
    if isinstance(model, ModelHelper):
        # A blob that is neither an input nor a parameter (a label read by SoftmaxWithLoss, say)
        # would be frozen into init_net with whatever value the workspace happens to hold.
        known = {str(b) for b in model.get_all_params("")}
        known |= {o for op in model.param_init_net.ops for o in op.output}
        stray = [b for b in params if b not in known]
        if stray:
            raise ValueError(
                f"export_model: the inference net for {[str(o) for o in outputs]} reads {stray}, which are "
                "neither inputs nor parameters of the model; list them as inputs, or export a model built "
                "with is_test=True (Softmax rather than SoftmaxWithLoss)"
            )
    init = NetDef(name=predict_proto.name + "_init")
    for name in params:
        init.op.append(fill_op(name, workspace.fetch_blob(name)))
    init.external_output.extend(params)
    for net in (init, predict_proto):
        if device is None:
            net.ClearField("device_option")
            for op in net.op:
                op.ClearField("device_option")
        else:
            stamped = Net(net)
            stamped.run_all_on(device)
            net.CopyFrom(stamped.Proto())
    out = Path(directory)
    init_path, predict_path = out / INIT_NET, out / PREDICT_NET
    serialize.save(init, init_path)
    serialize.save(predict_proto, predict_path)
    return init_path, predict_path


def _as_netdef(net: Any, what: str) -> NetDef:
    """A NetDef from a NetDef, Net, ModelHelper, or the path of a Caffe2-format .pb file."""
    if isinstance(net, (str, os.PathLike)):
        return serialize.load_netdef(Path(net))
    try:
        return _as_proto(net)
    except TypeError:
        raise TypeError(
            f"Predictor: {what} must be a NetDef, a Net, a ModelHelper or the path of a .pb file, "
            f"got {type(net).__name__}"
        ) from None


class Predictor:
    """Caffe2's Predictor: runs ``init_net`` once into its own Workspace (or ``workspace``), then
    ``run(inputs)`` feeds the inputs (a list in ``input_names`` order, or a {name: array} dict),
    runs ``predict_net`` and returns its external outputs as a list of numpy arrays. Each net is
    a NetDef, a Net, a ModelHelper or the path of a Caffe2-format .pb file (``init_net.pb``,
    ``predict_net.pb``, as ``export_model`` or Caffe2 writes them). ``device`` (e.g. "opencl")
    puts both nets there; ops the backend lacks fall back to cpu. ``optimize`` (default on) rewrites
    the predict net with ``kaffa.passes`` (batch norm folded into the preceding Conv/FC, bias Adds
    folded into Conv/FC, Conv + residual Add + Relu/Clip fused into FusedConv where the device's
    backend has a FusedConv kernel, Conv and pools run channels-last where the backend asks for NHWC)
    once the parameters are known; the outputs stay the same."""

    def __init__(
        self,
        init_net: NetDef | Net | PathLike,
        predict_net: NetDef | Net | PathLike,
        workspace: Workspace | None = None,
        device: Any = None,
        optimize: bool = True,
    ) -> None:
        init = Net(_as_netdef(init_net, "init_net"))
        predict = Net(_as_netdef(predict_net, "predict_net"))
        if device is not None:
            init.run_all_on(device)
            predict.run_all_on(device)
        self._proto = predict.Proto()
        self._pass_params: set[str] = set()  # parameters the graph passes made (folded, transposed)
        if not self._proto.name:
            self._proto.name = "predict"
        self.workspace = workspace if workspace is not None else Workspace(f"predictor:{self._proto.name}")
        self.workspace.run_net_once(init.Proto())
        made = {o for op in init.ops for o in op.output}
        if optimize:
            self._proto = self._optimized(self._proto, made, device)
        if workspace is None:
            self._freeze_parameters()
        self.input_names = [b for b in dict.fromkeys(self._proto.external_input) if b not in made]
        self.output_names = list(self._proto.external_output)
        self._created = False

    def _optimized(self, proto: NetDef, made: set[str], device: Any) -> NetDef:
        from kaffa import passes
        from kaffa.plugins import registry

        params = {n: self.workspace.fetch_blob(n) for n in made if self.workspace.has_blob(n)}
        before = set(params)
        # The backend the net was stamped for: fusions it has no kernel for are skipped.
        backend = "cpu"
        if device is not None:
            backend = registry().backend_for_type(proto.device_option.device_type).name
        optimized = passes.optimize(proto, params, backend=backend)
        self._pass_params = set(params) - before
        for name in self._pass_params:
            self.workspace.feed_blob(name, params[name], device)
        return optimized

    def _freeze_parameters(self) -> None:
        """Mark the host parameter arrays of the Predictor's own workspace read-only: kernels may
        then keep data derived from them between runs (the cpu Conv's Winograd filter transforms,
        the ONEDNN engine's reordered filters).
        Only the Predictor reaches this workspace's arrays (feed_blob copies in, fetch_blob copies
        out); a Predictor given a workspace leaves it alone, since training may share it. The
        parameters the graph passes made are frozen too."""
        produced = {o for op in self._proto.op for o in op.output}
        for name in (set(self._proto.external_input) | self._pass_params) - produced:
            value = self.workspace._blobs.get(name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    def run(self, inputs: Sequence[Any] | Mapping[str, Any]) -> list[np.ndarray]:
        if isinstance(inputs, Mapping):
            feeds = {str(k): v for k, v in inputs.items()}
            unknown = sorted(set(feeds) - set(self.input_names))
            if unknown:
                raise KaffaError(
                    f"predictor: {unknown} are not inputs of the net; inputs: {self.input_names}"
                )
            missing = [n for n in self.input_names if n not in feeds and not self.workspace.has_blob(n)]
            if missing:
                raise KaffaError(f"predictor: no value given for input(s) {missing}")
        else:
            if len(inputs) != len(self.input_names):
                raise KaffaError(
                    f"predictor: got {len(inputs)} input(s), the net takes {len(self.input_names)}: "
                    f"{self.input_names}"
                )
            feeds = dict(zip(self.input_names, inputs))
        for name, value in feeds.items():
            self.workspace.feed_blob(name, value)
        if not self._created:  # after the feeds: planning sees the real input dtypes
            self.workspace.create_net(self._proto, overwrite=True)
            self._created = True
        self.workspace.run_net(self._proto.name)
        return [np.asarray(self.workspace.fetch_blob(o)) for o in self.output_names]

    __call__ = run

    def benchmark(
        self,
        inputs: Sequence[Any] | Mapping[str, Any],
        warmup: int = 1,
        iters: int = 10,
        per_op: bool = False,
    ) -> NetBenchmark:
        """Feed ``inputs`` and run once, then time the predict net alone (no feeds or fetches):
        a ``kaffa.net.NetBenchmark``; ``print()`` it for the time per op type and the slowest ops."""
        self.run(inputs)
        return self.workspace.benchmark_net(self._proto.name, warmup, iters, per_op)

    @property
    def placement_report(self) -> Any:
        """Where each op of the predict net ran (after the first run)."""
        return self.workspace.placement_report(self._proto.name)


def load_model(directory: PathLike, workspace: Workspace | None = None, device: Any = None) -> Predictor:
    """A Predictor for ``directory/init_net.pb`` and ``directory/predict_net.pb``."""
    d = Path(directory)
    return Predictor(
        serialize.load_netdef(d / INIT_NET), serialize.load_netdef(d / PREDICT_NET), workspace, device
    )
