"""The cuda plugin without a GPU: every .cu source compiles with ``nvcc -ptx`` for sm_80 and sm_90
(and holds the kernels the host launches), the kernels cover opencl's op list with honest dtype
claims, their host logic and CuPy array code pass the conformance suite on numpy (the ``cudasim``
backend, which must run every kernel that is not raw CUDA C),
out of memory is a typed error, and ``kaffa info`` says why cuda is unavailable.

Nothing here runs on a GPU: benchmarks/gpu_check.sh does that, on a machine with one.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest

import kaffa
from kaffa import engines
from kaffa.errors import DeviceMemoryError
from kaffa.kernels import KernelRegistry
from kaffa_cuda.kernels import common as cu_common

KERNELS = Path(cu_common.__file__).parent
CU_FILES = sorted(p.stem for p in (KERNELS / "cu").glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
TYPES = {"float32": np.float32, "float16": np.float16}


def _nvcc() -> str | None:
    """$NVCC, nvcc on PATH, or the one from the nvidia-cuda-nvcc wheel (the cuda-dev extra)."""
    if os.environ.get("NVCC"):
        return os.environ["NVCC"]
    found = shutil.which("nvcc")
    if found:
        return found
    for sub in ("cu13", "cuda_nvcc"):
        cand = Path(sysconfig.get_paths()["purelib"]) / "nvidia" / sub / "bin" / "nvcc"
        if cand.exists():
            return str(cand)
    return None


NVCC = _nvcc()
needs_nvcc = pytest.mark.skipif(
    NVCC is None, reason="no nvcc (pip install 'kaffa[cuda-dev]', or put CUDA's nvcc on PATH)"
)


def _entries(file: str) -> set[str]:
    return set(re.findall(r'extern "C" __global__ void (\w+)\(', (KERNELS / "cu" / f"{file}.cu").read_text()))


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", CU_FILES)
def test_every_cu_source_compiles_to_ptx(tmp_path, file, arch):
    want = _entries(file)
    assert want, f"cu/{file}.cu declares no kernels"
    for tname, dtype in TYPES.items():
        src = tmp_path / f"{file}_{tname}.cu"
        src.write_text(cu_common.source(file))
        ptx = tmp_path / f"{file}_{tname}_{arch}.ptx"
        cmd = [
            NVCC,
            "-ptx",
            f"-arch={arch}",
            "-std=c++14",
            *cu_common.defines(dtype),
            str(src),
            "-o",
            str(ptx),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
        text = ptx.read_text()
        assert f".target {arch}" in text
        got = set(re.findall(r"\.visible \.entry (\w+)\(", text))
        assert want <= got, f"cu/{file}.cu for {tname}/{arch}: missing {sorted(want - got)}"


def _names(node: ast.expr) -> list[str]:
    """The kernel names an argument can take: a string, or each branch of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _names(node.body) + _names(node.orelse)
    return []


def test_every_launched_kernel_exists_in_its_source():
    """Each ``Launcher(ctx, "file", "name")`` (or name chosen by a conditional) in the kernel
    modules names a kernel of cu/file.cu; nn's built-on-demand launchers (``self._k("name")``) name
    kernels of cu/nn.cu."""
    launched = []
    for py in sorted(KERNELS.glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            if getattr(fn, "id", "") == "Launcher" and len(node.args) >= 3:
                file = node.args[1]
                if isinstance(file, ast.Constant):
                    launched += [(py.name, file.value, n) for n in _names(node.args[2])]
            elif py.stem == "nn" and getattr(fn, "attr", "") == "_k" and node.args:
                launched += [(py.name, "nn", n) for n in _names(node.args[0])]
    assert {(f, n) for _, f, n in launched} >= {
        ("pool", "max_pool"),
        ("pool", "avg_pool_gradient"),
        ("nn", "im2col"),
        ("nn", "col2im"),
    }, launched
    for py, file, name in launched:
        assert file in CU_FILES, f"{py} launches cu/{file}.cu, which does not exist"
        assert name in _entries(file), f"{py} launches {name}, which cu/{file}.cu does not define"
    from kaffa_cuda.kernels import activation  # names computed from a table

    for name in activation._MAPS.values():
        assert {name, name.rstrip("_") + "_gradient"} <= _entries("activation")


def _registry() -> KernelRegistry:
    reg = KernelRegistry()
    import kaffa_cuda

    kaffa_cuda.kaffa_kernels(reg)
    return reg


CORE_OPS = {
    # what LeNet and ResNet training need, forward and gradient
    *("Conv", "ConvGradient", "FC", "FCGradient", "Relu", "ReluGradient", "MaxPool", "MaxPoolGradient"),
    *("AveragePool", "AveragePoolGradient", "Softmax", "SoftmaxGradient", "Add", "Sum", "Mul"),
    *("MomentumSGDUpdate", "Adam", "Adagrad", "Iter", "LearningRate", "MatMul", "BatchMatMul"),
}


def test_registration_and_honest_dtype_claims():
    reg = _registry()
    ops = reg.ops("cuda")
    assert ops >= CORE_OPS, f"missing: {sorted(CORE_OPS - ops)}"
    # CuPy's types among kaffa's (no bfloat16: CuPy has none)
    allowed = {np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)}
    for op in ops:
        for engine, kdef in reg.engines("cuda", op).items():
            if engine == "NCCL":
                continue
            assert kdef.dtypes is not None, f"{op}/{engine or 'default'} claims every dtype"
            assert kdef.dtypes <= allowed, f"{op}/{engine}: {sorted(d.name for d in kdef.dtypes - allowed)}"
    assert {"Conv", "ConvGradient"} <= {op for op in ops if "CUDNN" in reg.engines("cuda", op)}
    # the opencl backend's op list is the target; say what is still missing (it runs on cpu)
    from kaffa_opencl.kernels import TABLES as CL_TABLES

    opencl = {op for t in CL_TABLES for op, _, _ in t.entries}
    missing = sorted(opencl - ops)
    assert not missing, f"cuda has {len(ops & opencl)}/{len(opencl)} of opencl's ops; missing: {missing}"
    # where both claim a dtype set, cuda claims what opencl does (bool included), minus bfloat16
    for op in sorted(opencl):
        cl_def, cu_def = kaffa.plugins.registry().kernels.get("opencl", op, ""), reg.get("cuda", op, "")
        if cl_def.dtypes is not None:
            want = cl_def.dtypes & allowed
            assert cu_def.dtypes >= want, f"{op}: cuda lacks {sorted(d.name for d in want - cu_def.dtypes)}"


def test_cuda_prefers_cudnn_and_declines_it_without_the_frontend(monkeypatch):
    assert engines.engine_order("cuda", "Conv", "") == ["CUDNN", ""]
    from kaffa_cuda import cudnn

    monkeypatch.setitem(sys.modules, "cudnn", None)  # import cudnn -> ImportError
    ctx = types.SimpleNamespace(args={"order": "NCHW"})
    assert "cuDNN frontend is not importable" in cudnn.unavailable(ctx)


def test_cudnn_rejects_asymmetric_padding_before_touching_cudnn():
    from kaffa.launch.nn import ConvGeometry
    from kaffa.ops.geometry import Window
    from kaffa_cuda import cudnn

    # 5x5 input, 2x2 kernel, stride 2, ceil-mode output 3: the last window hangs one past the end
    win = Window((2, 2), (2, 2), (1, 1), (0, 0), (0, 0))
    g = ConvGeometry(4, (2, 2), win, (5, 5), (3, 3), (0, 0))
    with pytest.raises(cudnn.Rejected, match="asymmetric padding"):
        cudnn.ConvGraph("fprop", 0, np.dtype(np.float32), (1, 3, 5, 5), (4, 3, 2, 2), (1, 4, 3, 3), g)


def test_cuda_kernels_pass_conformance_on_numpy():
    """The host logic and CuPy array code of every kernel that does not launch raw CUDA C, run on
    numpy through the cudasim backend, against the float64 references; every such kernel,
    gradient ops included, must have run."""
    import kaffa_cuda.sim as sim
    from kaffa.plugins import registry
    from kaffa_conformance import runner

    ops = sorted(sim.simulated_ops())
    families = {"FC", "FCGradient", "Conv", "ConvTranspose", "ConvTransposeGradient", "MaxPool", "Add"}
    families |= {"Exp", "Cast", "EQ", "ReduceSum", "Concat", "Gather", "UniformFill", "SpatialBN"}
    families |= {"SoftmaxWithLoss", "LRN", "LayerNorm", "Dropout", "PadImage", "WeightedSum"}
    assert families <= set(ops), sorted(families - set(ops))
    sim.RAN.clear()
    registry().register(sim, name="cudasim")
    try:
        result = runner.run(["cudasim"], ops)
    finally:
        registry().unregister("cudasim")
    ran = [r for r in result.results if r.outcome != "unsupported"]
    bad = [(r.op, r.case, r.dtype, r.outcome, r.message[:200]) for r in ran if r.outcome != "pass"]
    assert not bad, bad
    assert len(ran) > 4000
    assert {r.op for r in ran} >= {
        "Conv",
        "Conv:grad",
        "ConvTranspose:grad",
        "MaxPool:grad",
        "SpatialBN:grad",
    }
    not_run = sorted(set(ops) - sim.RAN)
    assert not not_run, f"simulated kernels no conformance case ran: {not_run}"


def test_out_of_memory_is_a_device_memory_error(monkeypatch):
    class OutOfMemoryError(Exception):  # CuPy's name
        pass

    class Device:
        def __init__(self, i):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def empty(shape, dtype):
        raise OutOfMemoryError(f"Out of memory allocating {np.prod(shape) * 4:,} bytes")

    cp = types.ModuleType("cupy")
    cp.ndarray, cp.empty = np.ndarray, empty
    cp.cuda = types.SimpleNamespace(Device=Device)
    cp.get_default_memory_pool = lambda: None
    from kaffa_cuda.allocator import CUDAAllocator

    alloc = CUDAAllocator("cuda:0 (fake)", cp, 0)
    with pytest.raises(DeviceMemoryError, match=r"cuda:0 is out of memory allocating float32\[4096, 4096\]"):
        alloc.empty((4096, 4096), np.dtype(np.float32))
    with pytest.raises(DeviceMemoryError):
        alloc.copyin(np.zeros(3, np.float32))
    with cu_common.guard("x", 0), pytest.raises(ValueError):  # other errors pass through
        raise ValueError("not memory")


def test_kaffa_info_says_why_cuda_is_unavailable():
    backend = kaffa.plugins.registry().backend("cuda")
    reason = backend.unavailable_reason()
    if reason is None:
        pytest.skip("this machine has a usable GPU")
    out = subprocess.run(
        [sys.executable, "-m", "kaffa", "info"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("cuda "))
    assert "unavailable: " in line and reason.split(":")[0] in line
