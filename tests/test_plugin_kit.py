"""The plugin developer kit: `kaffa plugin new` writes a package that pip installs and that passes
conformance for the ops it claims; the out-of-tree numba example does the same; incompatible API
versions are quarantined with a clear message; KAFFA_TRACE_PLUGINS and `kaffa info --json`.

Plugins are pip-installed with ``--target`` into a temporary directory and used from subprocesses
with that directory on PYTHONPATH (entry points are found there), so the test environment itself
is never modified.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaffa.scaffold import PRIVATE_DEVICE_TYPES, device_type_for, new_plugin

ROOT = Path(__file__).resolve().parents[1]


def _pip_install(src: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(5, "--no-build-isolation")  # no download of build requirements when we have them
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)


def _kaffa(site: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kaffa", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def _summary(report_dir: Path) -> tuple[dict, list[dict]]:
    data = json.loads((report_dir / "conformance.json").read_text())
    return data["summary"], data["cells"]


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("scaffold")
    pkg = new_plugin("vendorchip", tmp / "kaffa-vendorchip")
    files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file())
    site = tmp / "site"
    _pip_install(pkg, site)
    return pkg, site, files


def test_scaffold_writes_a_complete_package(scaffolded):
    pkg, _, files = scaffolded
    assert files == [
        "README.md",
        "kaffa_vendorchip/__init__.py",
        "kaffa_vendorchip/backend.py",
        "kaffa_vendorchip/kernels.py",
        "pyproject.toml",
        "tests/test_conformance.py",
    ]
    pyproject = (pkg / "pyproject.toml").read_text()
    assert '[project.entry-points."kaffa.backends"]' in pyproject
    assert 'vendorchip = "kaffa_vendorchip"' in pyproject
    assert (
        f"device_type = {device_type_for('vendorchip')}" in (pkg / "kaffa_vendorchip/backend.py").read_text()
    )
    assert device_type_for("vendorchip") in PRIVATE_DEVICE_TYPES


def test_scaffolded_plugin_is_listed_and_passes_its_two_ops(scaffolded, tmp_path):
    _, site, _ = scaffolded
    info = _kaffa(site, "info")
    assert info.returncode == 0, info.stderr
    assert "vendorchip 0.1.0 (device type" in info.stdout and "available, 2 op kernels" in info.stdout

    res = _kaffa(site, "conformance", "--backend", "vendorchip", "--report", str(tmp_path))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    summary, cells = _summary(tmp_path)
    assert summary["vendorchip"]["fail"] == 0 and summary["vendorchip"]["error"] == 0
    passing = {(c["op"], c["dtype"]) for c in cells if c["outcome"] == "pass"}
    assert passing == {("Relu", "float32"), ("Relu", "float64"), ("Add", "float32"), ("Add", "float64")}
    others = [c for c in cells if c["op"] not in ("Relu", "Add")]
    assert len(others) > 100 and all(c["outcome"] == "unsupported" for c in others)


def test_scaffolded_plugin_runs_its_own_pytest_conformance(scaffolded):
    pkg, site, _ = scaffolded
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--kaffa-op",
            "Relu",
            "--kaffa-op",
            "Add",
        ],
        cwd=pkg,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


def test_incompatible_api_version_is_quarantined_with_a_clear_message(tmp_path):
    pkg = new_plugin("oldchip", tmp_path / "pkg")
    init = pkg / "kaffa_oldchip" / "__init__.py"
    init.write_text(init.read_text().replace('PLUGIN_API = "1.0"', 'PLUGIN_API = "2.0"'))
    site = tmp_path / "site"
    _pip_install(pkg, site)

    info = _kaffa(site, "info")
    assert info.returncode == 0  # a broken plugin never takes kaffa down
    line = next(ln for ln in info.stdout.splitlines() if ln.strip().startswith("oldchip:"))
    assert (
        "QUARANTINED" in line and "built for kaffa plugin API 2.0" in line and "supports 1.0 to 1.0" in line
    )
    assert "cpu 0.1.0" not in line and "  cpu " in info.stdout  # the others still load

    table = json.loads(_kaffa(site, "info", "--json").stdout)
    assert table["plugins"]["oldchip"]["quarantined"] is True
    assert "oldchip" not in table["backends"]

    conf = _kaffa(site, "conformance", "--backend", "oldchip")
    assert conf.returncode == 2
    assert "its plugin was quarantined" in conf.stderr + conf.stdout

    strict = _kaffa(site, "info", env={"KAFFA_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0 and "built for kaffa plugin API 2.0" in strict.stderr


def test_scaffold_refuses_bad_names_and_overwriting(tmp_path):
    for bad in ("MyChip", "my-chip", "cpu", "class", "9x"):
        with pytest.raises(ValueError):
            new_plugin(bad, tmp_path / bad)
    new_plugin("twice", tmp_path / "p")
    with pytest.raises(FileExistsError):
        new_plugin("twice", tmp_path / "p")
    new_plugin("twice", tmp_path / "p", force=True)
    res = subprocess.run(
        [sys.executable, "-m", "kaffa", "plugin", "new", "twice", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "refusing to overwrite" in res.stderr


def test_trace_plugins_logs_every_hook_call(tmp_path):
    res = _kaffa(tmp_path, "info", env={"KAFFA_TRACE_PLUGINS": "1"})
    assert res.returncode == 0
    err = res.stderr
    assert "kaffa.plugins: loading plugin 'cpu'" in err
    assert "kaffa.plugins: cpu: kaffa_plugin_api returned '1.0'" in err
    assert "kaffa.plugins: cpu: kaffa_backends returned [cpu]" in err
    assert "kaffa.plugins: cpu: kaffa_kernels(registry=" in err
    quiet = _kaffa(tmp_path, "info")
    assert "kaffa.plugins:" not in quiet.stderr


def test_info_json_has_the_whole_table(tmp_path):
    res = _kaffa(tmp_path, "info", "--json")
    assert res.returncode == 0
    table = json.loads(res.stdout)
    assert table["plugin_api"] == "1.0"
    cpu = table["backends"]["cpu"]
    assert cpu["available"] and cpu["device_type"] == 0 and cpu["plugin"] == "cpu"
    assert cpu["devices"][0]["index"] == 0
    conv = cpu["kernels"]["Conv"]["DEFAULT"]
    assert conv["plugin"] == "cpu" and "float32" in conv["dtypes"]
    assert table["plugins"]["cpu"]["quarantined"] is False


@pytest.mark.slow
def test_numba_example_plugin_passes_its_claimed_ops(tmp_path):
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed (it comes with kaffa's test extra)")
    site = tmp_path / "site"
    _pip_install(ROOT / "examples" / "plugins" / "kaffa-numba", site)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    res = _kaffa(site, "conformance", "--backend", "numba", "--report", str(tmp_path), env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    summary, cells = _summary(tmp_path)
    assert summary["numba"]["fail"] == 0 and summary["numba"]["error"] == 0
    passing = {c["op"] for c in cells if c["outcome"] == "pass"}
    claimed = {"Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Sqr", "Abs", "Negative", "Softplus"}
    claimed |= {"Elu", "LeakyRelu", "Add", "Sub", "Mul", "Div"}
    claimed |= {"Relu:grad", "Sigmoid:grad", "Tanh:grad", "LeakyRelu:grad"}
    assert claimed <= passing, claimed - passing
    assert summary["numba"]["unsupported"] > 100  # the rest is declared unsupported, not failed

    # Unclaimed ops fall back to cpu, visibly, in a real net on the numba device.
    script = (
        "import warnings, numpy as np, kaffa\n"
        "from kaffa.core import Net\n"
        "dev = kaffa.DeviceOption('numba')\n"
        "net = Net('mixed')\n"
        "net.Sigmoid('x', 'y', device_option=dev)\n"
        "net.Softmax('y', 'z', device_option=dev)\n"
        "ws = kaffa.Workspace()\n"
        "ws.feed_blob('x', np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4))\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore', kaffa.FallbackWarning)\n"
        "    n = ws.create_net(net)\n"
        "n.run()\n"
        "print([(p.op_type, p.ran_on, p.fell_back) for p in n.placement_report.placements])\n"
        "x = np.linspace(-3, 3, 12).reshape(3, 4); s = 1 / (1 + np.exp(-x))\n"
        "e = np.exp(s - s.max(1, keepdims=True))\n"
        "print(np.abs(ws.fetch_blob('z') - e / e.sum(1, keepdims=True)).max())\n"
    )
    full_env = {**os.environ, "PYTHONPATH": str(site), **env}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=full_env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    placements, err = run.stdout.strip().splitlines()
    assert "('Sigmoid', 'numba:0', False)" in placements and "('Softmax', 'cpu', True)" in placements, (
        placements
    )
    assert float(err) < 1e-6
