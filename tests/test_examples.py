"""The examples run as the README says, and write what they claim to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kaffa import serialize

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_saves_and_predicts(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[cpu] held-out accuracy" in out.stdout
    predict = serialize.load_netdef(tmp_path / "predict_net.pb")
    assert [op.type for op in predict.op] == ["FC", "Softmax"]
    init = serialize.load_netdef(tmp_path / "init_net.pb")
    assert {op.output[0] for op in init.op} == {"logits_w", "logits_b"}


def test_readme_python_blocks_run(tmp_path):
    """Every ```python block of the README runs as written (in a scratch folder)."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    for code in blocks:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, code + out.stderr
