"""The checked-in kaffa_pb2.py is what the pinned protoc generates from kaffa.proto today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpcio-tools is not installed, so kaffa_pb2.py cannot be regenerated (pip install 'kaffa[test]')",
)


def _regen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaffa.proto.regen", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_checked_in_kaffa_pb2_is_current():
    result = _regen("--check")
    assert result.returncode == 0, (
        "core/proto/kaffa_pb2.py is stale (run `python -m kaffa.proto.regen`):\n"
        + result.stdout
        + result.stderr
    )
    assert "is current" in result.stdout


def test_check_fails_on_a_stale_module(monkeypatch, tmp_path):
    """--check really compares: pointed at a copy whose kaffa_pb2.py is edited, it exits 1."""
    from kaffa.proto import regen

    checked_in = (regen.HERE / "kaffa_pb2.py").read_text()
    (tmp_path / "kaffa.proto").write_bytes((regen.HERE / "kaffa.proto").read_bytes())
    (tmp_path / "kaffa_pb2.py").write_text(checked_in + "# edited\n")
    monkeypatch.setattr(regen, "HERE", tmp_path)
    assert regen.main(["--check"]) == 1
    assert regen.main([]) == 0  # regenerating fixes it
    assert regen.main(["--check"]) == 0
    assert (tmp_path / "kaffa_pb2.py").read_text() == checked_in


def test_checked_in_caffe_pb2_is_current():
    """caffe_pb2.py (kaffa.caffe's reading of Caffe's schema) is regenerated and compared too."""
    result = _regen("--check")
    assert "caffe_pb2.py is current" in result.stdout, result.stdout + result.stderr


def test_check_fails_on_a_stale_caffe_module(monkeypatch, tmp_path):
    from kaffa.proto import regen

    checked_in = (regen.HERE / "caffe_pb2.py").read_text()
    (tmp_path / "caffe.proto").write_bytes((regen.HERE / "caffe.proto").read_bytes())
    (tmp_path / "caffe_pb2.py").write_text(checked_in.replace("caffe.proto", "caffe.proto ", 1))
    monkeypatch.setattr(regen, "HERE", tmp_path)
    assert regen.main(["--check"]) == 1
    assert regen.main([]) == 0
    assert (tmp_path / "caffe_pb2.py").read_text() == checked_in
