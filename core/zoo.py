"""Pretrained models by name or URL, downloaded once, verified, and cached.

    import kaffa
    p = kaffa.zoo.load("squeezenet", base_url="http://127.0.0.1:8000/models")
    (probs,) = p.run({"data": x})

A model is a folder in one of two layouts:

- Caffe2's: ``init_net.pb`` + ``predict_net.pb`` (+ ``value_info.json``, which maps each input
  name to ``[TensorProto.DataType number, shape]``, as in Caffe2's model zoo);
- ONNX: ``model.onnx`` (imported with ``kaffa.onnx.import_model``; needs the ``onnx`` extra).

``load`` takes a name (``<base_url>/<name>/``, with ``base_url=`` or ``$KAFFA_ZOO_URL``, default
Caffe2's zoo), an ``http(s)://`` or ``file://`` URL of such a folder or of a ``.onnx`` file, or a
local folder or ``.onnx`` file (used in place, never copied). Downloads land in
``$KAFFA_HOME/models/<name>/`` (default ``~/.cache/kaffa``).

Integrity: the folder may hold a ``manifest.json`` (``write_manifest`` makes one), fetched first::

    {"format": "kaffa-zoo-manifest", "version": 1,
     "files": {"init_net.pb": {"sha256": "…", "size": 123}, …}}

Each file is downloaded to ``<file>.part`` (an interrupted download resumes with an HTTP Range
request), its size and sha256 are checked, and only then is it renamed into the cache. A file that
fails the check raises ChecksumError and its ``.part`` is deleted; a truncated or interrupted one
raises DownloadError and its ``.part`` is kept for the next try. ``sha256=`` pins the hash of the
manifest (or, for a single-file model, of the file), so a tampered manifest is caught too. A folder
without a manifest (Caffe2's zoo had none) downloads with only its sizes checked and a
UnverifiedDownloadWarning. The cache's own ``manifest.json``, written last, marks a complete model:
a cached model is loaded with no network access at all, and offline mode (``offline=True`` or
``KAFFA_OFFLINE=1``) uses only the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kaffa.errors import KaffaError

__all__ = [
    "DEFAULT_BASE_URL",
    "MANIFEST",
    "ChecksumError",
    "DownloadError",
    "ModelNotFoundError",
    "NotCachedError",
    "UnverifiedDownloadWarning",
    "ZooError",
    "cache_root",
    "fetch",
    "load",
    "read_value_info",
    "write_manifest",
    "write_value_info",
]

# Caffe2's model zoo: <base>/<name>/{init_net.pb, predict_net.pb, value_info.json}.
DEFAULT_BASE_URL = "https://s3.amazonaws.com/download.caffe2.ai/models"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "kaffa-zoo-manifest"
INIT_NET, PREDICT_NET, VALUE_INFO = "init_net.pb", "predict_net.pb", "value_info.json"
ONNX_FILE = "model.onnx"
CAFFE2_FILES = (PREDICT_NET, INIT_NET, VALUE_INFO)
_CHUNK = 1 << 20
_MAX_MANIFEST = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^(https?|file)://", re.IGNORECASE)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ZooError(KaffaError):
    """A model could not be found, downloaded, verified or loaded."""


class ModelNotFoundError(ZooError):
    """Nothing is published under that name or URL."""


class NotCachedError(ZooError):
    """Offline mode, and the model is not in the cache."""


class DownloadError(ZooError):
    """The transfer failed or stopped early. ``partial`` is the kept ``.part`` file (or None); the
    next ``load`` resumes it."""

    def __init__(self, message: str, partial: Path | None = None) -> None:
        self.partial = partial
        super().__init__(message)


class ChecksumError(ZooError):
    """A downloaded file's size or sha256 is not the expected one; it was deleted, not cached."""


class UnverifiedDownloadWarning(UserWarning):
    """A model was downloaded with no sha256 to check it against (no manifest, no ``sha256=``)."""


# -- places ----------------------------------------------------------------------------------------
def cache_root() -> Path:
    """``$KAFFA_HOME/models`` (default ``~/.cache/kaffa/models``)."""
    home = os.environ.get("KAFFA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "kaffa")
    return Path(home) / "models"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _is_url(s: str) -> bool:
    return bool(_URL.match(s))


def _cache_name(url: str) -> str:
    """The cache folder of a model given by URL: its last path segment, plus a short hash of the
    URL so that two servers' models of the same name never share a folder."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    base = path.rsplit("/", 1)[-1]
    if base.lower().endswith(".onnx"):
        base = base[:-5]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "model"
    return f"{base}-{hashlib.sha256(url.encode('utf-8')).hexdigest()[:10]}"


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


# -- manifests and value_info ----------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: str | os.PathLike[str], files: list[str] | None = None) -> Path:
    """Write ``folder/manifest.json`` listing the sha256 and size of ``files`` (default: the model
    files present: Caffe2's three and/or ``model.onnx``). Run it on a folder before publishing it."""
    d = Path(folder)
    if files is None:
        files = [f for f in (*CAFFE2_FILES, ONNX_FILE) if (d / f).is_file()]
        if not files:
            raise ZooError(f"{d} holds no init_net.pb/predict_net.pb or model.onnx")
    entries = {f: {"sha256": _sha256_file(d / f), "size": (d / f).stat().st_size} for f in files}
    return _write_json(d / MANIFEST, {"format": MANIFEST_FORMAT, "version": 1, "files": entries})


def _write_json(path: Path, obj: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _parse_manifest(data: bytes, where: str) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(data.decode("utf-8"))
        files = doc["files"] if isinstance(doc, dict) and "files" in doc else doc
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
        out: dict[str, dict[str, Any]] = {}
        for fname, entry in files.items():
            if isinstance(entry, str):  # the short form: {"file": "sha256"}
                entry = {"sha256": entry}
            sha = str(entry["sha256"]).lower()
            if not _HEX64.match(sha):
                raise ValueError(f"'{fname}': {sha!r} is not a sha256 hex digest")
            if not _NAME.match(fname):
                raise ValueError(f"'{fname}' is not a plain file name")
            size = entry.get("size")
            out[fname] = {"sha256": sha, "size": None if size is None else int(size)}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ZooError(f"{where}: not a valid model manifest ({type(e).__name__}: {e})") from None
    if PREDICT_NET not in out and ONNX_FILE not in out:
        raise ZooError(f"{where}: the manifest lists neither {PREDICT_NET} nor {ONNX_FILE}")
    return out


def read_value_info(folder: str | os.PathLike[str]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """``folder/value_info.json`` as {input name: (numpy dtype, shape)}; {} if there is none."""
    p = Path(folder) / VALUE_INFO
    if not p.is_file():
        return {}
    from kaffa import dtypes

    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        return {str(k): (dtypes.parse(int(v[0])), tuple(int(d) for d in v[1])) for k, v in doc.items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise ZooError(f"{p}: not a valid value_info.json ({type(e).__name__}: {e})") from None


def write_value_info(folder: str | os.PathLike[str], infos: Mapping[str, tuple[Any, Any]]) -> Path:
    """Write Caffe2's ``value_info.json``: {name: [TensorProto.DataType number, shape]}; an unknown
    (symbolic) dim is written as -1."""
    from kaffa import dtypes

    doc = {}
    for name, (dtype, shape) in infos.items():
        dims = [int(d) if isinstance(d, (int, np.integer)) and int(d) >= 0 else -1 for d in shape]
        doc[str(name)] = [dtypes.from_numpy(dtypes.parse(dtype)), dims]
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    return _write_json(d / VALUE_INFO, doc)


# -- transfers -------------------------------------------------------------------------------------
class _NotFound(Exception):
    pass


def _open(url: str, timeout: float, start: int = 0) -> Any:
    from kaffa import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"kaffa/{__version__}"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (404, 410):
            raise _NotFound(url) from None
        if e.code == 416 and start:
            raise
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, FileNotFoundError):  # file:// URLs
            raise _NotFound(url) from None
        raise DownloadError(f"cannot fetch {url}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot fetch {url}: {e}") from None


def _get_small(url: str, timeout: float) -> bytes | None:
    """The body of a small file, or None if there is none (404)."""
    try:
        resp = _open(url, timeout)
    except _NotFound:
        return None
    with resp:
        try:
            data = resp.read(_MAX_MANIFEST + 1)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"{url}: transfer failed: {e}") from None
    if len(data) > _MAX_MANIFEST:
        raise ZooError(f"{url}: larger than {_MAX_MANIFEST} bytes; not a manifest")
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != len(data):
        raise DownloadError(f"{url}: got {len(data)} of {length} bytes (connection closed early)")
    return data


def _bar(name: str, total: int | None, initial: int, progress: bool | None) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    show = sys.stderr.isatty() if progress is None else bool(progress) and sys.stderr.isatty()
    if not show:
        return None
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    )


def _download(
    url: str,
    dest: Path,
    size: int | None,
    sha256: str | None,
    progress: bool | None,
    timeout: float,
) -> str:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed if present), check ``size`` and
    ``sha256`` when given, rename into place. Returns the sha256. Raises _NotFound on a 404."""
    # Already here from an earlier, unfinished load of a model of several files.
    if (
        sha256 is not None
        and dest.is_file()
        and (size is None or dest.stat().st_size == size)
        and _sha256_file(dest) == sha256
    ):
        return sha256
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        try:
            resp = _open(url, timeout, have)
        except urllib.error.HTTPError:  # 416: the range starts past the end; start over
            part.unlink(missing_ok=True)
            have = 0
            resp = _open(url, timeout)
        with resp:
            status = getattr(resp, "status", None)
            expected_len: int | None = None
            length = resp.headers.get("Content-Length")
            if length is not None and length.strip().isdigit():
                expected_len = int(length)
            if have and status == 206:
                m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    raise DownloadError(f"{url}: the server answered the range request with a wrong range")
                mode = "ab"
            else:  # the server ignored the Range header (or there was none): start from byte 0
                have, mode = 0, "wb"
            total = None if expected_len is None else have + expected_len
            if size is not None and total is not None and total != size:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"{url}: the server sends {total} bytes, the manifest says {size}: not the published file"
                )
            bar = _bar(dest.name, total if total is not None else size, have, progress)
            got = 0
            try:
                with open(part, mode) as f:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        got += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                        if size is not None and have + got > size:
                            break
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(
                    f"{url}: transfer interrupted after {have + got} bytes ({type(e).__name__}: {e}); "
                    f"the partial file {part} is kept and the next load resumes it",
                    part,
                ) from None
            finally:
                if bar is not None:
                    bar.close()
        if expected_len is not None and got < expected_len:
            raise DownloadError(
                f"{url}: truncated: got {have + got} of {total} bytes (connection closed early); the "
                f"partial file {part} is kept and the next load resumes it",
                part,
            )
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        if actual_size < size:
            raise DownloadError(
                f"{url}: truncated: got {actual_size} of {size} bytes; the partial file {part} is kept", part
            )
        part.unlink()
        raise ChecksumError(f"{url}: {actual_size} bytes, the manifest says {size}; deleted, not cached")
    digest = _sha256_file(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise ChecksumError(
            f"{url}: sha256 mismatch (expected {sha256[:16]}..., got {digest[:16]}...): the file is "
            "corrupt or not the published one; deleted, not cached"
        )
    os.replace(part, dest)
    return digest


# -- the cache -------------------------------------------------------------------------------------
def _cached(folder: Path, root_sha256: str | None, source: str | None) -> bool:
    """Whether ``folder`` holds a complete model (its manifest, written last, and every file listed
    with the listed size) whose root hash is ``root_sha256`` and which came from ``source``, when
    given. (A model from another source is checked against the new one's manifest; files whose
    sha256 matches are not downloaded again.)"""
    m = folder / MANIFEST
    if not m.is_file():
        return False
    try:
        doc = json.loads(m.read_text(encoding="utf-8"))
        files = _parse_manifest(m.read_bytes(), str(m))
    except (ValueError, ZooError):
        return False
    if root_sha256 is not None and doc.get("root_sha256") != root_sha256:
        return False
    if source is not None and doc.get("source") != source:
        return False
    return all(
        (folder / f).is_file() and (e["size"] is None or (folder / f).stat().st_size == e["size"])
        for f, e in files.items()
    )


def _fetch_url(
    url: str,
    folder: Path,
    sha256: str | None,
    progress: bool | None,
    timeout: float,
) -> None:
    """Download the model at ``url`` (a folder, or a .onnx file) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until the new one is written
    got: dict[str, dict[str, Any]] = {}
    root_sha: str | None = None
    path = urllib.parse.urlsplit(url).path
    if path.lower().endswith(".onnx"):  # a single file
        try:
            digest = _download(url, folder / ONNX_FILE, None, sha256, progress, timeout)
        except _NotFound:
            raise ModelNotFoundError(f"no model at {url} (404)") from None
        if sha256 is None:
            _warn_unverified(url)
        got[ONNX_FILE] = {"sha256": digest, "size": (folder / ONNX_FILE).stat().st_size}
        root_sha = digest
    else:
        base = url.rstrip("/")
        raw = _get_small(_join(base, MANIFEST), timeout)
        if raw is not None:
            root_sha = hashlib.sha256(raw).hexdigest()
            if sha256 is not None and root_sha != sha256:
                raise ChecksumError(
                    f"{_join(base, MANIFEST)}: sha256 mismatch (expected {sha256[:16]}..., got "
                    f"{root_sha[:16]}...): the manifest is not the pinned one"
                )
            for fname, entry in _parse_manifest(raw, _join(base, MANIFEST)).items():
                try:
                    digest = _download(
                        _join(base, fname), folder / fname, entry["size"], entry["sha256"], progress, timeout
                    )
                except _NotFound:
                    raise ModelNotFoundError(
                        f"{_join(base, fname)}: listed in the manifest but not on the server (404)"
                    ) from None
                got[fname] = {"sha256": digest, "size": (folder / fname).stat().st_size}
        else:  # no manifest (Caffe2's zoo): probe the layouts; only sizes are checked
            try:
                _download(_join(base, PREDICT_NET), folder / PREDICT_NET, None, None, progress, timeout)
                names = [PREDICT_NET, INIT_NET, VALUE_INFO]
            except _NotFound:
                names = [ONNX_FILE]
            if sha256 is not None and names != [ONNX_FILE]:
                raise ZooError(
                    f"{base}: sha256= pins a manifest.json or a single model.onnx, and this folder has "
                    "neither (Caffe2 layout without a manifest)"
                )
            for fname in names:
                if (folder / fname).is_file() and fname == PREDICT_NET:
                    digest = _sha256_file(folder / fname)
                else:
                    pin = sha256 if fname == ONNX_FILE else None
                    try:
                        digest = _download(_join(base, fname), folder / fname, None, pin, progress, timeout)
                    except _NotFound:
                        if fname == VALUE_INFO:
                            continue
                        if fname == ONNX_FILE:
                            raise ModelNotFoundError(
                                f"no model at {base}/: none of {MANIFEST}, {PREDICT_NET}, {ONNX_FILE} (404)"
                            ) from None
                        raise ModelNotFoundError(f"{_join(base, fname)}: not on the server (404)") from None
                    if fname == ONNX_FILE:
                        root_sha = digest
                got[fname] = {"sha256": digest, "size": (folder / fname).stat().st_size}
            if root_sha is None or sha256 is None:
                _warn_unverified(base + "/")
    for stale in (*CAFFE2_FILES, ONNX_FILE):  # from an earlier version of the model in another layout
        if stale not in got:
            (folder / stale).unlink(missing_ok=True)
    doc = {"format": MANIFEST_FORMAT, "version": 1, "source": url, "root_sha256": root_sha, "files": got}
    _write_json(folder / MANIFEST, doc)  # last: marks the cached model complete


def _warn_unverified(url: str) -> None:
    warnings.warn(
        f"{url}: no manifest.json and no sha256= to verify the download against; only its size was checked",
        UnverifiedDownloadWarning,
        stacklevel=4,
    )


def fetch(
    name_or_url: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    sha256: str | None = None,
    progress: bool | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Path:
    """The local folder (or ``.onnx`` file) of a model, downloading it into the cache if needed.
    Arguments as for ``load``."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _HEX64.match(sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    spec = os.fspath(name_or_url)
    if not _is_url(spec):
        local = Path(spec).expanduser()
        if local.exists():
            if sha256 is not None and local.is_file() and _sha256_file(local) != sha256:
                raise ChecksumError(f"{local}: sha256 mismatch (expected {sha256[:16]}...)")
            return local
        if not _NAME.match(spec):
            raise ModelNotFoundError(
                f"{spec!r} is neither a local folder or file, nor an http(s):// or file:// URL, nor a "
                "model name (letters, digits, '.', '_', '-')"
            )
    if offline is None:
        offline = _env_flag("KAFFA_OFFLINE")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    if _is_url(spec):
        url, folder = spec, root / _cache_name(spec)
    else:
        base = base_url or os.environ.get("KAFFA_ZOO_URL") or DEFAULT_BASE_URL
        url, folder = _join(base, spec) + "/", root / spec
    if not force and _cached(folder, sha256, None if offline else url):
        return folder
    if offline:
        why = " (with that sha256)" if sha256 is not None and (folder / MANIFEST).is_file() else ""
        raise NotCachedError(
            f"model {spec!r} is not cached{why} in {folder}, and offline mode is on "
            "(KAFFA_OFFLINE=1 or offline=True); load it once online or unset KAFFA_OFFLINE"
        )
    _fetch_url(url, folder, sha256, progress, timeout)
    return folder


def _predictor(path: Path, device: Any) -> Any:
    from kaffa import serialize
    from kaffa.checkpoint import Predictor

    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise ZooError(f"{path}: a model file must be a .onnx file (or give a folder)")
        onnx_path, folder = path, path.parent
    elif (path / PREDICT_NET).is_file() and (path / INIT_NET).is_file():
        p = Predictor(
            serialize.load_netdef(path / INIT_NET), serialize.load_netdef(path / PREDICT_NET), device=device
        )
        p.value_info = read_value_info(path)
        p.path = path
        return p
    elif (path / ONNX_FILE).is_file():
        onnx_path, folder = path / ONNX_FILE, path
    else:
        raise ZooError(f"{path} holds neither {INIT_NET} + {PREDICT_NET} nor {ONNX_FILE}")
    from kaffa.onnx import import_model

    init, predict = import_model(str(onnx_path))
    p = Predictor(init, predict, device=device)
    p.value_info = read_value_info(folder) if path.is_dir() else {}
    p.path = path
    return p


def load(
    name_or_url: str | os.PathLike[str],
    device: Any = None,
    *,
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    sha256: str | None = None,
    progress: bool | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> Any:
    """A ``kaffa.Predictor`` for a model by name, URL or local path (see the module doc).

    ``device`` places the nets (e.g. "opencl"). ``base_url`` (default ``$KAFFA_ZOO_URL``, else
    Caffe2's zoo) is where names resolve: ``<base_url>/<name>/``. ``cache_dir`` overrides
    ``$KAFFA_HOME/models``. ``offline`` (default ``$KAFFA_OFFLINE``) uses only the cache.
    ``sha256`` pins the manifest.json (or the single .onnx file). ``progress`` shows a tqdm bar
    (default: when stderr is a terminal and tqdm is installed). ``force`` downloads again.

    The predictor has ``value_info`` ({input: (dtype, shape)} from value_info.json, or {}) and
    ``path`` (the local folder or file). Raises ZooError subclasses: ModelNotFoundError,
    NotCachedError, DownloadError, ChecksumError."""
    path = fetch(
        name_or_url,
        base_url=base_url,
        cache_dir=cache_dir,
        offline=offline,
        sha256=sha256,
        progress=progress,
        force=force,
        timeout=timeout,
    )
    return _predictor(path, device)
