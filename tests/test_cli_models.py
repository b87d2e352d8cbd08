"""`kaffa run`, `kaffa convert` and `kaffa draw`, as a user runs them (subprocesses), on small
models made here."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import kaffa
from kaffa import checkpoint, models, zoo
from kaffa.cli import net_to_dot
from kaffa.proto import NetDef

X = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)


def _cli(*args: object, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFFA_")}
    base["KAFFA_BACKENDS"] = "cpu"  # fast start-up: no device discovery
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "kaffa", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=base,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """mlp/ (one output, value_info.json), two/ (outputs fc2 and softmax, no value_info.json),
    x.npy, and the expected outputs in ref.npz."""
    root = tmp_path_factory.mktemp("cli")
    kaffa.set_random_seed(0)
    model = kaffa.ModelHelper("mlp")
    models.mlp(model, "data", [4, 8, 3], is_test=True)
    ws = kaffa.Workspace("cli-test")
    ws.run_net_once(model.param_init_net)
    checkpoint.export_model(model, ws, root / "mlp", ["data"], ["softmax"])
    zoo.write_value_info(root / "mlp", {"data": (np.float32, (2, 4))})
    checkpoint.export_model(model, ws, root / "two", ["data"], ["fc2", "softmax"])
    np.save(root / "x.npy", X)
    fc2, softmax = checkpoint.load_model(root / "two").run([X])
    np.savez(root / "ref.npz", fc2=fc2, softmax=softmax)
    return {"root": root, "mlp": root / "mlp", "two": root / "two", "x": root / "x.npy"}


@pytest.fixture(scope="module")
def ref(made: dict[str, Path]) -> dict[str, np.ndarray]:
    with np.load(made["root"] / "ref.npz") as f:
        return dict(f)


# -- kaffa run ---------------------------------------------------------------------------------------
def test_run_folder_prints_and_writes_npy(made: dict[str, Path], ref: dict, tmp_path: Path) -> None:
    r = _cli("run", made["mlp"], "--input", made["x"], "--output", tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^softmax: float32\[2, 3\]  \[0\.\d+", r.stdout, re.M), r.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ref["softmax"])


def test_run_named_input_and_several_outputs_to_npz(made: dict[str, Path], ref: dict, tmp_path: Path) -> None:
    r = _cli("run", made["two"], "-i", f"data={made['x']}", "-o", tmp_path / "out.npy", "--backend", "cpu")
    assert r.returncode == 0, r.stderr
    assert "fc2: float32[2, 3]" in r.stdout and "softmax: float32[2, 3]" in r.stdout
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == ["fc2", "softmax"]
        np.testing.assert_array_equal(out["fc2"], ref["fc2"])
        np.testing.assert_array_equal(out["softmax"], ref["softmax"])


def test_run_without_an_input_says_which_and_its_shape(made: dict[str, Path]) -> None:
    r = _cli("run", made["mlp"])
    assert r.returncode == 2
    assert "no --input for data (float32[2,4])" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("run", made["root"] / "nothing-here")
    assert r.returncode == 2 and "kaffa run:" in r.stderr and "Traceback" not in r.stderr


def test_run_a_zoo_name_over_http_then_offline(made: dict[str, Path], ref: dict, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "models" / "mlp").symlink_to(made["mlp"], target_is_directory=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    home = tmp_path / "home"
    base = f"http://127.0.0.1:{httpd.server_address[1]}/models"
    try:
        r = _cli("run", "mlp", "--base-url", base, "-i", made["x"], "-o", tmp_path / "a.npy", KAFFA_HOME=home)
        assert r.returncode == 0, r.stderr
        assert "no manifest.json" in r.stderr  # the folder has none: the download is unverified
    finally:
        httpd.shutdown()
        httpd.server_close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), ref["softmax"])
    assert (home / "models" / "mlp" / "manifest.json").is_file()
    # The server is gone: the cached copy is used, offline.
    r = _cli("run", "mlp", "-i", made["x"], KAFFA_HOME=home, KAFFA_OFFLINE="1")
    assert r.returncode == 0, r.stderr
    r = _cli("run", "other", "-i", made["x"], "--offline", KAFFA_HOME=home)
    assert r.returncode == 2 and "not cached" in r.stderr


# -- kaffa convert -----------------------------------------------------------------------------------
def test_convert_round_trip(made: dict[str, Path], ref: dict, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    r = _cli("convert", made["mlp"], "--to", "onnx", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(tmp_path / "m.onnx"))
    (graph_input,) = model.graph.input
    assert graph_input.name == "data"
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [2, 4]  # from value_info.json

    r = _cli("run", tmp_path / "m.onnx", "-i", made["x"], "-o", tmp_path / "o1.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o1.npy"), ref["softmax"], rtol=1e-5, atol=1e-6)

    r = _cli("convert", tmp_path / "m.onnx", "--to", "netdef", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == [
        "init_net.pb",
        "predict_net.pb",
        "value_info.json",
    ]
    assert json.loads((tmp_path / "back" / "value_info.json").read_text()) == {"data": [1, [2, 4]]}
    out = checkpoint.load_model(tmp_path / "back").run([X])[0]
    np.testing.assert_allclose(out, ref["softmax"], rtol=1e-5, atol=1e-6)


def test_convert_to_onnx_needs_input_shapes(made: dict[str, Path], tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    r = _cli("convert", made["two"], "--to", "onnx", tmp_path / "m.onnx")
    assert r.returncode == 2
    assert "--input-shape data=" in r.stderr and "Traceback" not in r.stderr
    r = _cli("convert", made["two"], "--to", "onnx", tmp_path / "m.onnx", "--input-shape", "data=N,4")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(tmp_path / "m.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == 4  # N stays symbolic
    assert [o.name for o in model.graph.output] == ["fc2", "softmax"]


# -- kaffa draw --------------------------------------------------------------------------------------
def test_draw_dot_needs_no_dependency(made: dict[str, Path], tmp_path: Path) -> None:
    r = _cli("draw", made["mlp"], "-o", tmp_path / "net.dot")
    assert r.returncode == 0, r.stderr
    dot = (tmp_path / "net.dot").read_text()
    predict = kaffa.serialize.load_netdef(made["mlp"] / "predict_net.pb")
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == len(predict.op)
    assert re.search(r'shape=ellipse, label="data"', dot) and 'label="fc1_w"' in dot
    r = _cli("draw", made["mlp"], "-o", tmp_path / "slim.gv", "--hide-params", "--rankdir", "LR")
    assert r.returncode == 0, r.stderr
    slim = (tmp_path / "slim.gv").read_text()
    assert "fc1_w" not in slim and "rankdir=LR" in slim


FAKE_GRAPHVIZ = {
    "missing": "raise ImportError('No module named graphviz')\n",
    "no_dot": """
        class ExecutableNotFound(RuntimeError):
            pass
        class CalledProcessError(Exception):
            pass
        class Source:
            def __init__(self, text):
                self.text = text
            def pipe(self, format):
                raise ExecutableNotFound("failed to execute PosixPath('dot')")
    """,
    "works": """
        class ExecutableNotFound(RuntimeError):
            pass
        class CalledProcessError(Exception):
            pass
        class Source:
            def __init__(self, text):
                self.text = text
            def pipe(self, format):
                return ("<svg><!-- %s -->%d</svg>" % (format, self.text.count("shape=box"))).encode()
    """,
}


@pytest.mark.parametrize("kind", sorted(FAKE_GRAPHVIZ))
def test_draw_svg_through_graphviz(made: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """The real graphviz package and `dot` need not be here: stand-ins cover the three cases."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "graphviz.py").write_text(textwrap.dedent(FAKE_GRAPHVIZ[kind]))
    r = _cli("draw", made["mlp"], "-o", tmp_path / "net.svg", PYTHONPATH=str(fake))
    if kind == "works":
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "net.svg").read_text() == "<svg><!-- svg -->4</svg>"
        return
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pip install 'kaffa[draw]'" in r.stderr and "apt-get install graphviz" in r.stderr
    assert ("Python package" if kind == "missing" else "`dot` program on PATH") in r.stderr
    assert not (tmp_path / "net.svg").exists()


def test_net_to_dot_versions_blobs_written_in_place() -> None:
    net = NetDef(name="inplace")
    net.external_input.append("x")
    net.external_output.append("x")
    op = net.op.add(type="Relu")
    op.input.append("x")
    op.output.append("x")
    dot = net_to_dot(net)
    # x read by the op and x written by it are two ellipses: the drawing stays acyclic.
    assert dot.count('label="x"') == 2
    assert "b1 -> op0;" in dot and "op0 -> b2;" in dot


def test_existing_subcommands_still_work() -> None:
    r = _cli("ops", "Relu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Relu")
