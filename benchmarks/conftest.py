"""Prints the side-by-side ratios after a benchmark run (pytest-benchmark's own table has the raw
timings): backends beside numpy / cpu (test_backends.py), kaffa beside onnxruntime / PyTorch
(test_performance.py)."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter, config):
    _backends_summary(terminalreporter)
    _performance_summary(terminalreporter)


def _performance_summary(tr) -> None:
    module = sys.modules.get("test_performance")  # only when it was collected: importing it is slow
    lines = module.summary_lines() if module is not None else []
    if lines:
        tr.section("kaffa beside onnxruntime / PyTorch (medians)")
        for line in lines:
            tr.write_line(line)


def _backends_summary(tr) -> None:
    try:
        from test_backends import RESULTS  # benchmarks/ is on sys.path (rootdir-relative import)
    except ImportError:
        return
    if not RESULTS:
        return
    tr.section("kaffa: backends side by side")
    for what in sorted({w for w, _ in RESULTS}):
        base_name = "numpy" if what.startswith("gemm") else "cpu"
        base = RESULTS.get((what, base_name))
        for (w, backend), t in sorted(RESULTS.items()):
            if w != what:
                continue
            if what.startswith("gemm"):
                n = int(what[4:])
                line = f"{what:>10} {backend:>7}: {2.0 * n**3 / t / 1e9:8.1f} GFLOP/s"
                if base and backend != base_name:
                    line += f"   {base / t:7.1%} of numpy's rate"
            else:
                line = f"{what:>10} {backend:>7}: {t * 1e3:8.1f} ms"
                if base and backend != base_name:
                    line += f"   {t / base:6.2f}x cpu's time"
            tr.write_line(line)
