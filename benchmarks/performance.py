"""Runs benchmarks/test_performance.py (kaffa beside onnxruntime / PyTorch, one pytest-benchmark run)
and writes the table, with the machine it ran on, to docs/performance.md and docs/performance.json.

    python benchmarks/performance.py [--quick] [--standin] [--note TEXT] [--out-dir DIR]

--quick takes 5 rounds per measurement (under a minute) instead of 9-50; the page then says
it is a quick run. --standin uses the generated stand-in models even where ../shared/models has
the real ones. The exit status is pytest's: non-zero when a check (kaffa's outputs against
onnxruntime's) or a benchmark failed; the table is still written with what was measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEST_FILE = HERE / "test_performance.py"
OVERHEAD_OPS = 1000  # test_performance.OVERHEAD_OPS; repeated so this script imports nothing heavy

# row id -> (label, kind, target); kind: "infer" (ms), "overhead" (us per op), "train" (ms per step).
# A target is (what it bounds, limit): "ratio" bounds kaffa / other, "kaffa" bounds kaffa's figure.
ROWS: dict[str, tuple[str, str, tuple[str, float] | None]] = {
    "resnet18_b1": ("ResNet-18, batch 1", "infer", ("ratio", 1.3)),
    "resnet18_b8": ("ResNet-18, batch 8", "infer", None),
    "mobilenet_v2_b1": ("MobileNetV2, batch 1", "infer", ("ratio", 1.5)),
    "mobilenet_v2_b8": ("MobileNetV2, batch 8", "infer", None),
    "overhead": (
        f"Framework overhead ({OVERHEAD_OPS:,} Adds on 4 floats), per op",
        "overhead",
        ("kaffa", 3.0),
    ),
    "lenet_b32": ("LeNet training step, 8x8 digits, batch 32", "train", None),
    "lenet_b256": ("LeNet training step, 8x8 digits, batch 256", "train", None),
}
UNITS = {"infer": ("ms", 1e3), "overhead": ("µs/op", 1e6 / OVERHEAD_OPS), "train": ("ms", 1e3)}


# -- the machine ------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, load, numpy and its BLAS, onnxruntime, torch."""
    import numpy as np

    blas: dict[str, Any] = {}
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            blas = {
                k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")
            }
    except ImportError:
        pass
    if not blas:
        try:
            dep = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = {"internal_api": dep.get("name"), "version": dep.get("version")}
        except Exception:
            blas = {"internal_api": "unknown"}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "torch": _version("torch"),
        "kaffa": _version("kaffa"),
        "numba": _version("numba"),
        "jit": _jit_available(),
        "onednn": _onednn(),
    }


def _onednn() -> dict[str, Any]:
    """Whether the cpu backend's ONEDNN engine runs (the onednn extra), and which oneDNN."""
    try:
        from kaffa_cpu import onednn

        return onednn.describe()
    except ImportError as e:
        return {"available": False, "reason": str(e)}


def _jit_available() -> bool:
    """Whether kaffa's cpu kernels run their numba-compiled loops (the jit extra)."""
    try:
        from kaffa_cpu.kernels import jit

        return bool(jit.AVAILABLE)
    except ImportError:
        return False


# -- the run ----------------------------------------------------------------------------------------


def run_pytest(json_path: Path, quick: bool, standin: bool, extra: list[str]) -> int:
    env = dict(os.environ)
    env["KAFFA_PERF_QUICK"] = "1" if quick else "0"
    if standin:
        env["KAFFA_PERF_STANDIN"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(TEST_FILE),
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=median,iqr,min,max,rounds",
        "-q",
        *extra,
    ]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def collect(bench: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """row -> engine -> {median, iqr, min, max, rounds, extra_info}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for b in bench.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "row" not in info:
            continue
        s = b["stats"]
        out.setdefault(info["row"], {})[info["engine"]] = {
            **{k: s[k] for k in ("median", "iqr", "min", "max", "mean", "stddev", "rounds")},
            "extra_info": info,
            "test": b.get("name"),
        }
    return out


def build_rows(measured: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for row_id, (label, kind, target) in ROWS.items():
        engines = measured.get(row_id, {})
        k = engines.get("kaffa")
        other_name = "pytorch" if kind == "train" else "onnxruntime"
        o = engines.get(other_name)
        unit, scale = UNITS[kind]
        kv = k["median"] * scale if k else None
        ov = o["median"] * scale if o else None
        ratio = kv / ov if kv is not None and ov is not None else None
        met = None
        if target is not None:
            what, limit = target
            value = ratio if what == "ratio" else kv
            met = None if value is None else value <= limit
        info = (k or o or {}).get("extra_info", {})
        rows.append(
            {
                "id": row_id,
                "benchmark": label,
                "unit": unit,
                "kaffa": kv,
                "other_engine": other_name,
                "other": ov,
                "ratio": ratio,
                "target": None if target is None else {"on": target[0], "max": target[1]},
                "met": met,
                "source": info.get("source"),
                "max_rel_err": info.get("max_rel_err"),
                "ops_run": (k or {}).get("extra_info", {}).get("ops_run"),
                "kaffa_stats": k,
                "other_stats": o,
            }
        )
    return rows


# -- the page ---------------------------------------------------------------------------------------


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    text = f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return f"{text} {unit}".strip()


def _target_text(row: dict[str, Any]) -> tuple[str, str]:
    t = row["target"]
    if t is None:
        return "—", "—"
    text = f"≤ {t['max']:g}x" if t["on"] == "ratio" else f"≤ {t['max']:g} {row['unit']}"
    status = "n/a" if row["met"] is None else "met" if row["met"] else "**missed**"
    return text, status


def markdown(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    blas = m["blas"]
    lines = ["# Performance: kaffa beside onnxruntime", ""]
    if doc["header"]:
        lines += [f"**{doc['header']}**", ""]
    lines += [
        f"Generated {doc['generated']} by `{doc['command']}` "
        f"({'quick run: ' if s['quick'] else ''}medians of the rounds shown, kaffa's / the other's).",
        "",
        "| benchmark | kaffa | onnxruntime / PyTorch | ratio (kaffa / other) | target | status | rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        other = _fmt(r["other"], r["unit"])
        if r["other"] is None and r["other_engine"] == "pytorch":
            other = "n/a (PyTorch not installed)" if m["torch"] is None else "n/a (not measured)"
        elif r["other"] is not None:
            other += " (PyTorch)" if r["other_engine"] == "pytorch" else ""
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        target, status = _target_text(r)
        label = r["benchmark"] + (" (stand-in)" if (r["source"] or "").startswith("stand-in") else "")
        rounds = "/".join(str(x["rounds"]) if x else "-" for x in (r["kaffa_stats"], r["other_stats"]))
        cells = [label, _fmt(r["kaffa"], r["unit"]), other, ratio, target, status, rounds]
        lines.append("| " + " | ".join(cells) + " |")
    models = {r["benchmark"].split(",")[0]: r["source"] for r in doc["rows"] if r["source"]}
    errs = [f"{r['benchmark']}: {r['max_rel_err']:.1e}" for r in doc["rows"] if r["max_rel_err"] is not None]
    ops = next((r["ops_run"] for r in doc["rows"] if r["id"] == "overhead"), None)
    lines += [
        "",
        "- Models: " + "; ".join(f"{k} from `{v}`" for k, v in models.items()) + "."
        if models
        else "- Models: none measured.",
        "- Outputs checked against onnxruntime before timing (max |kaffa - ort| / max |ort| ≤ 1e-4): "
        + ("; ".join(errs) if errs else "none recorded")
        + ".",
        f"- Threads: kaffa's oneDNN (OpenMP) or, without it, numpy's BLAS runs {s['threads']} "
        "(with the ONEDNN engine numpy's BLAS runs 1); onnxruntime runs intra_op_num_threads="
        f"{s['threads']}, one inter-op thread, sequential, all graph optimizations"
        + (f"; PyTorch torch.set_num_threads({s['threads']})" if m["torch"] else "")
        + ".",
        f"- Framework overhead: one call of a {OVERHEAD_OPS:,}-op graph (feed, run, fetch) divided by "
        f"{OVERHEAD_OPS:,}; kaffa ran {ops if ops is not None else 'n/a'} ops.",
        "- Every time is one call through the public API (`Predictor.run`, `InferenceSession.run`, a "
        "training net's `run_net` + fetching the loss), after warm-up rounds. Spread (IQR, min, max) is "
        "in performance.json.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable)",
        "- Load average at start / end: "
        + " / ".join(", ".join(f"{x:.1f}" for x in la) for la in doc["load"] if la)
        + f" (on {m['usable_cpus']} CPUs)",
        f"- {m['platform']}, Python {m['python']}",
        f"- numpy {m['numpy']}, BLAS: {blas.get('internal_api')} {blas.get('version') or ''}"
        + (f" ({blas['architecture']}, {blas['num_threads']} threads)" if blas.get("num_threads") else ""),
        f"- onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, PyTorch {m['torch'] or 'not installed'}, "
        f"kaffa {m['kaffa']}",
        "- kaffa's compiled cpu loops (the `jit` extra): "
        + (
            f"on, numba {m.get('numba')}"
            if m.get("jit")
            else "off (numba not installed or KAFFA_DISABLE_JIT set: numpy paths)"
        ),
        "- the ONEDNN engine (the `onednn` extra): "
        + (
            f"on, oneDNN {m['onednn']['version']}"
            if m.get("onednn", {}).get("available")
            else f"off ({m.get('onednn', {}).get('reason', 'not recorded')})"
        ),
        "",
        "Regenerate with `python benchmarks/performance.py` (a minute or two; `--quick` for a smoke run). "
        "How the cpu backend runs these models, and where the time goes: "
        "[cpu-performance.md](cpu-performance.md).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 rounds per measurement (a smoke run)")
    p.add_argument(
        "--standin", action="store_true", help="generated stand-in models even if the real ones exist"
    )
    p.add_argument("--note", default="", help="a line for the top of the page (e.g. why it is not final)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="where performance.md/.json go")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (after --), e.g. -k resnet")
    args = p.parse_args(argv)

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "benchmark.json"
        rc = run_pytest(json_path, args.quick, args.standin, args.pytest_args)
        if not json_path.is_file():
            print(f"performance: pytest wrote no benchmark JSON (exit status {rc})", file=sys.stderr)
            return rc or 1
        bench = json.loads(json_path.read_text())

    machine = machine_info()
    rows = build_rows(collect(bench))
    threads = next((r["kaffa_stats"]["extra_info"].get("threads") for r in rows if r["kaffa_stats"]), None)
    header = []
    if args.quick:
        header.append("Quick run (--quick: 5 rounds each), indicative only")
    if args.note:
        header.append(args.note)
    usable = machine["usable_cpus"] or 1
    # Only the load before the run counts: the run itself keeps the CPUs busy.
    if load_start and load_start[0] > 0.5 * usable:
        header.append(
            f"the machine was busy before the run (load average {load_start[0]:.1f} on {usable} CPUs): "
            "timings are noisy"
        )
    if rc != 0:
        header.append(f"pytest exited with status {rc}: some checks or benchmarks failed (rows n/a)")
    if header:
        header.append("regenerate with `python benchmarks/performance.py` on a quiet machine")
    command = (
        "python benchmarks/performance.py"
        + (" --quick" if args.quick else "")
        + (" --standin" if args.standin else "")
    )
    doc = {
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "header": "; ".join(header),
        "pytest_exit_status": rc,
        "settings": {
            "quick": args.quick,
            "threads": threads,
            "rtol": 1e-4,
        },
        "machine": machine,
        "load": [load_start, machine["load_average"]],
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(doc)
    (args.out_dir / "performance.md").write_text(md)
    (args.out_dir / "performance.json").write_text(json.dumps(doc, indent=1) + "\n")
    print()
    print(md)
    print(f"wrote {args.out_dir / 'performance.md'} and {args.out_dir / 'performance.json'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
