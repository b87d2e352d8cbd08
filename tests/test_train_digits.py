"""examples/train_digits.py: trains, is deterministic for a seed, and writes loadable files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kaffa import Workspace, checkpoint

pytestmark = pytest.mark.slow

pytest.importorskip("sklearn", reason="the example needs scikit-learn (pip install -e .[examples])")
pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_digits.py"
EPOCHS = "3"  # the default is 12; three already lands far above chance (10%)


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", "0", "--epochs", EPOCHS, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _accuracy(stdout: str) -> float:
    m = re.search(r"test accuracy: ([\d.]+)% \((\d+)/(\d+)\)", stdout)
    assert m, stdout
    return float(m.group(1)) / 100


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, subprocess.CompletedProcess[str]]]:
    first, second = tmp_path_factory.mktemp("digits1"), tmp_path_factory.mktemp("digits2")
    return [(first, _run(first)), (second, _run(second, "--no-progress"))]


def test_accuracy_is_far_above_chance(runs):
    for _, proc in runs:
        assert _accuracy(proc.stdout) >= 0.85
        assert "reloaded checkpoint predicts identically: True; exported model: True" in proc.stdout


def test_same_seed_same_accuracy_and_same_weights(runs):
    (d1, p1), (d2, p2) = runs
    assert _accuracy(p1.stdout) == _accuracy(p2.stdout)
    assert (d1 / "checkpoint.pb").read_bytes() == (d2 / "checkpoint.pb").read_bytes()
    assert (d1 / "init_net.pb").read_bytes() == (d2 / "init_net.pb").read_bytes()


def test_progress_bar_shows_epochs_and_loss(runs):
    (_, with_bar), (_, without) = runs
    assert "epoch=3/3" in with_bar.stderr and "loss=" in with_bar.stderr
    assert "epoch=" not in without.stderr
    assert "epoch 3/3: mean loss" in without.stdout


def test_checkpoint_and_exported_model_load(runs):
    out = runs[0][0]
    blobs = checkpoint.load(out / "checkpoint.pb")
    for name in ("conv1_w", "conv2_b", "fc3_w", "pred_b", "conv1_w_momentum", "optimizer_iteration"):
        assert name in blobs, sorted(blobs)
    steps = int(blobs["optimizer_iteration"][0])
    assert steps == int(EPOCHS) * (1438 // 32)  # 80% of the 1797 digits, batches of 32

    ws = Workspace("digits-test")
    checkpoint.load_into(ws, out / "checkpoint.pb")
    assert ws.fetch_blob("conv1_w").shape == (16, 1, 3, 3)

    from sklearn.datasets import load_digits

    x = (load_digits().images[:50] / 16.0).astype(np.float32)[:, None]
    (prob,) = checkpoint.load_model(out).run([x])
    assert prob.shape == (50, 10)
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-5)


def test_unknown_backend_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "nosuch", "--epochs", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "backend nosuch is unavailable: no backend named 'nosuch'" in proc.stderr


@pytest.fixture(scope="module")
def cpu_accuracy(tmp_path_factory: pytest.TempPathFactory) -> float:
    out = tmp_path_factory.mktemp("digits-cpu-full")
    return _accuracy(_run(out, "--epochs", "12", "--no-progress").stdout)


@pytest.mark.parametrize("backend", ["opencl", "metal"])
def test_device_backend_trains_to_the_cpu_accuracy(backend, cpu_accuracy, tmp_path):
    """The full default run (12 epochs) on a device backend: >= 97% and within half a point of cpu."""
    from kaffa.plugins import registry

    reason = registry().backend(backend).unavailable_reason()
    if reason is not None:
        pytest.skip(f"{backend} is unavailable here: {reason}")
    proc = _run(tmp_path, "--epochs", "12", "--no-progress", "--backend", backend)
    acc = _accuracy(proc.stdout)
    assert acc >= 0.97 and abs(acc - cpu_accuracy) <= 0.005, (acc, cpu_accuracy, proc.stdout)
    assert "reloaded checkpoint predicts identically: True; exported model: True" in proc.stdout
