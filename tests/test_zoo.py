"""kaffa.zoo against a real HTTP server on 127.0.0.1 (Range requests, injected faults)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import kaffa
from kaffa import checkpoint, models, zoo

X = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)


# -- a tiny server with Range support and one-shot faults -------------------------------------------
class ModelServer:
    """Serves ``root`` at ``url``; records (path, Range header, status) of every GET. ``faults`` maps
    a URL path to a one-shot fault: "corrupt" (one byte flipped), "truncate" (the full
    Content-Length is promised, half the body is sent, then the connection closes), "extra" (one
    byte too many, honestly announced), "404"."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None, int]] = []
        self.faults: dict[str, str] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                rng = self.headers.get("Range")
                fault = server.faults.pop(path, None)
                target = server.root / path.lstrip("/")
                if fault == "404" or ".." in path or not target.is_file():
                    server.requests.append((path, rng, 404))
                    self.send_error(404)
                    return
                data = target.read_bytes()
                if fault == "corrupt":
                    data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
                elif fault == "extra":
                    data += b"\0"
                start, status = 0, 200
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m:
                    start = int(m.group(1))
                    if start >= len(data):
                        server.requests.append((path, rng, 416))
                        self.send_error(416)
                        return
                    status = 206
                server.requests.append((path, rng, status))
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/mlp (Caffe2 layout + value_info.json + manifest.json), models/mlp_bare (no
    manifest), models/mlp_onnx (model.onnx + manifest.json, if onnx is installed)."""
    root = tmp_path_factory.mktemp("site")
    kaffa.set_random_seed(0)
    model = kaffa.ModelHelper("mlp")
    models.mlp(model, "data", [4, 8, 3], is_test=True)
    ws = kaffa.Workspace("zoo-test")
    ws.run_net_once(model.param_init_net)
    folder = root / "models" / "mlp"
    checkpoint.export_model(model, ws, folder, ["data"], ["softmax"])
    zoo.write_value_info(folder, {"data": (np.float32, (2, 4))})
    zoo.write_manifest(folder)
    shutil.copytree(folder, root / "mirror" / "mlp")
    bare = root / "models" / "mlp_bare"
    bare.mkdir()
    for f in ("init_net.pb", "predict_net.pb", "value_info.json"):
        shutil.copy(folder / f, bare / f)
    try:
        import onnx

        from kaffa import onnx as konnx
    except ImportError:
        return root
    proto = konnx.export_model(
        folder / "init_net.pb", folder / "predict_net.pb", inputs={"data": (np.float32, ("N", 4))}
    )
    (root / "models" / "mlp_onnx").mkdir()
    onnx.save(proto, root / "models" / "mlp_onnx" / "model.onnx")
    zoo.write_manifest(root / "models" / "mlp_onnx")
    return root


@pytest.fixture(scope="module")
def expected(site: Path) -> np.ndarray:
    return checkpoint.load_model(site / "models" / "mlp").run({"data": X})[0]


@pytest.fixture
def server(site: Path):
    s = ModelServer(site)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAFFA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAFFA_OFFLINE", raising=False)
    monkeypatch.delenv("KAFFA_ZOO_URL", raising=False)
    return tmp_path / "home" / "models"


def _needs_onnx() -> None:
    pytest.importorskip("onnx")


# -- tests -------------------------------------------------------------------------------------------
def test_three_lines_load_and_predict(server: ModelServer, expected: np.ndarray, home: Path) -> None:
    p = kaffa.zoo.load("mlp", base_url=server.url + "/models")
    out = p.run({"data": X})
    np.testing.assert_array_equal(out[0], expected)
    assert isinstance(p, kaffa.Predictor)
    assert p.value_info == {"data": (np.dtype(np.float32), (2, 4))}
    cached = sorted(f.name for f in (home / "mlp").iterdir())
    assert cached == ["init_net.pb", "manifest.json", "predict_net.pb", "value_info.json"]
    assert server.paths()[0] == "/models/mlp/manifest.json"  # the manifest comes first


def test_second_load_comes_from_the_cache(
    server: ModelServer, expected: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFFA_ZOO_URL", server.url + "/models")  # the base URL from the environment
    zoo.load("mlp")
    assert server.requests
    server.requests.clear()
    out = zoo.load("mlp").run([X])
    np.testing.assert_array_equal(out[0], expected)
    assert server.requests == []


def test_another_source_is_checked_but_same_files_are_not_downloaded_again(
    server: ModelServer, expected: np.ndarray
) -> None:
    zoo.load("mlp", base_url=server.url + "/models")
    server.requests.clear()
    out = zoo.load("mlp", base_url=server.url + "/mirror").run([X])
    np.testing.assert_array_equal(out[0], expected)
    assert server.paths() == ["/mirror/mlp/manifest.json"]  # every file's sha256 already matched
    server.requests.clear()
    zoo.load("mlp", base_url=server.url + "/mirror")
    assert server.requests == []


def test_offline_uses_only_the_cache(
    server: ModelServer, expected: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = server.url + "/models"
    with pytest.raises(zoo.NotCachedError, match="not cached"):
        zoo.load("mlp", base_url=base, offline=True)
    assert server.requests == []
    zoo.load("mlp", base_url=base)
    server.requests.clear()
    monkeypatch.setenv("KAFFA_OFFLINE", "1")
    np.testing.assert_array_equal(zoo.load("mlp", base_url=base).run([X])[0], expected)
    with pytest.raises(zoo.NotCachedError, match="KAFFA_OFFLINE"):
        zoo.load("mlp_bare", base_url=base)
    assert server.requests == []
    assert issubclass(zoo.NotCachedError, kaffa.KaffaError)


def test_corrupted_file_is_rejected_and_not_cached(
    server: ModelServer, expected: np.ndarray, home: Path
) -> None:
    server.faults["/models/mlp/init_net.pb"] = "corrupt"
    with pytest.raises(zoo.ChecksumError, match="sha256 mismatch") as err:
        zoo.load("mlp", base_url=server.url + "/models")
    assert isinstance(err.value, kaffa.KaffaError)
    folder = home / "mlp"
    assert not (folder / "init_net.pb").exists()
    assert not (folder / "init_net.pb.part").exists()  # a corrupt .part is deleted
    assert not (folder / "manifest.json").exists()
    # Nothing bad was cached: the next load downloads the right bytes.
    np.testing.assert_array_equal(zoo.load("mlp", base_url=server.url + "/models").run([X])[0], expected)


def test_wrong_size_is_rejected(server: ModelServer, home: Path) -> None:
    server.faults["/models/mlp/predict_net.pb"] = "extra"
    with pytest.raises(zoo.ChecksumError, match="manifest says"):
        zoo.load("mlp", base_url=server.url + "/models")
    assert not any((home / "mlp").glob("predict_net.pb*"))


def test_truncated_download_is_detected_then_resumed_with_range(
    server: ModelServer, expected: np.ndarray, site: Path, home: Path
) -> None:
    path = "/models/mlp/init_net.pb"
    size = (site / path.lstrip("/")).stat().st_size
    server.faults[path] = "truncate"
    with pytest.raises(zoo.DownloadError, match="truncated") as err:
        zoo.load("mlp", base_url=server.url + "/models")
    part = home / "mlp" / "init_net.pb.part"
    assert err.value.partial == part
    assert part.stat().st_size == size // 2  # kept for resume
    assert not (home / "mlp" / "init_net.pb").exists()
    assert not (home / "mlp" / "manifest.json").exists()

    server.requests.clear()
    out = zoo.load("mlp", base_url=server.url + "/models").run([X])
    np.testing.assert_array_equal(out[0], expected)
    assert (path, f"bytes={size // 2}-", 206) in server.requests
    assert not part.exists()


def test_truncation_without_manifest_is_detected_by_content_length(server: ModelServer, home: Path) -> None:
    server.faults["/models/mlp_bare/init_net.pb"] = "truncate"
    with pytest.raises(zoo.DownloadError, match="truncated"):
        zoo.load("mlp_bare", base_url=server.url + "/models", progress=False)
    assert not (home / "mlp_bare" / "manifest.json").exists()


def test_folder_without_manifest_warns_and_loads(server: ModelServer, expected: np.ndarray) -> None:
    with pytest.warns(zoo.UnverifiedDownloadWarning, match="no manifest"):
        p = zoo.load("mlp_bare", base_url=server.url + "/models")
    np.testing.assert_array_equal(p.run([X])[0], expected)
    with pytest.raises(zoo.ZooError, match="neither"):  # sha256= has nothing to pin here
        zoo.load("mlp_bare", base_url=server.url + "/models", sha256="0" * 64, force=True)


def test_sha256_pins_the_manifest(server: ModelServer, site: Path) -> None:
    base = server.url + "/models"
    with pytest.raises(zoo.ChecksumError, match="pinned"):
        zoo.load("mlp", base_url=base, sha256="0" * 64)
    good = hashlib.sha256((site / "models" / "mlp" / "manifest.json").read_bytes()).hexdigest()
    zoo.load("mlp", base_url=base, sha256=good)
    server.requests.clear()
    zoo.load("mlp", base_url=base, sha256=good)  # cached with that hash: no request
    assert server.requests == []


def test_onnx_file_url_with_sha256(server: ModelServer, expected: np.ndarray, site: Path, home: Path) -> None:
    _needs_onnx()
    url = server.url + "/models/mlp_onnx/model.onnx"
    with pytest.raises(zoo.ChecksumError, match="sha256 mismatch"):
        zoo.load(url, sha256="ab" * 32)
    assert not list(home.glob("*/model.onnx*"))  # neither the file nor its .part
    good = hashlib.sha256((site / "models" / "mlp_onnx" / "model.onnx").read_bytes()).hexdigest()
    out = zoo.load(url, sha256=good).run({"data": X})
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="64 hex"):
        zoo.load(url, sha256="abc")


def test_onnx_folder_by_name(server: ModelServer, expected: np.ndarray) -> None:
    _needs_onnx()
    out = zoo.load("mlp_onnx", base_url=server.url + "/models").run({"data": X})
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)


def test_unknown_model(server: ModelServer) -> None:
    with pytest.raises(zoo.ModelNotFoundError, match="no model"):
        zoo.load("nope", base_url=server.url + "/models")
    with pytest.raises(zoo.ModelNotFoundError, match="neither a local folder"):
        zoo.load("no/such/folder")


def test_local_folder_and_file_url(site: Path, expected: np.ndarray, home: Path) -> None:
    folder = site / "models" / "mlp"
    np.testing.assert_array_equal(zoo.load(folder).run([X])[0], expected)
    assert not home.exists()  # a local folder is used in place
    out = zoo.load(folder.as_uri()).run([X])  # file:// goes through the verified download
    np.testing.assert_array_equal(out[0], expected)
    (cached,) = home.iterdir()
    assert cached.name.startswith("mlp-")
    assert json.loads((cached / "manifest.json").read_text())["source"] == folder.as_uri()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("mode", ["tty", "off", "no-tqdm", "not-a-tty"])
def test_progress_bar(server: ModelServer, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    pytest.importorskip("tqdm")
    err = io.StringIO() if mode == "not-a-tty" else _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    if mode == "no-tqdm":
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    zoo.load("mlp", base_url=server.url + "/models", progress=False if mode == "off" else None)
    assert ("init_net.pb" in err.getvalue()) == (mode == "tty")
