"""Frozen expected outputs, so a change to a reference (or to a case generator) is caught.

For every deterministic case, ``goldens/<Op>.npz`` holds the master inputs and the reference's
outputs on them, and ``goldens/manifest.json`` the sha256 of each file. Verification checks the
hash, that today's case generator still draws the same inputs, and that today's reference still
gives the frozen outputs. Goldens are never regenerated during a run; after a deliberate change:

    python -m kaffa_conformance.goldens --update [--op Conv]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from kaffa.schema import SCHEMAS, make_argument
from kaffa_conformance import cases as _cases
from kaffa_conformance import reference as _reference
from kaffa_conformance.cases import RANDOM, Case

DIR = Path(__file__).resolve().parent / "goldens"
MANIFEST = DIR / "manifest.json"
# Reference outputs are float64 numpy; different BLAS builds may differ in the last bits.
RTOL, ATOL = 1e-10, 1e-12


def parsed_args(case: Case) -> dict:
    return SCHEMAS.get(case.op).parse_args([make_argument(k, v) for k, v in case.args.items()])


def master_inputs(case: Case) -> list[np.ndarray]:
    """Inputs as the reference sees them in float64 runs (fixed-dtype inputs in their own dtype)."""
    out = []
    for i, x in enumerate(case.inputs):
        dt = case.fixed_dtype_inputs.get(i)
        arr = np.asarray(x)
        if dt is not None:
            arr = arr.astype(dt)
        out.append(arr.astype(np.int64) if arr.dtype.kind in "iu" else arr)
    return out


def _file(op: str) -> Path:
    return DIR / f"{op}.npz"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> dict[str, str]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def frozen_cases(op: str) -> list[Case]:
    return [c for c in _cases.for_op(op) if c.op_class != RANDOM]


def update(ops: list[str]) -> None:
    DIR.mkdir(exist_ok=True)
    manifest = _manifest()
    for op in ops:
        arrays: dict[str, np.ndarray] = {}
        for case in frozen_cases(op):
            ins = master_inputs(case)
            outs = _reference.run(op, parsed_args(case), ins, case.num_outputs)
            for i, x in enumerate(ins):
                arrays[f"{case.name}/in{i}"] = x
            for j, y in enumerate(outs[: case.num_outputs]):
                arrays[f"{case.name}/out{j}"] = np.asarray(y)
        if not arrays:
            continue
        np.savez_compressed(_file(op), **arrays)
        manifest[_file(op).name] = _sha(_file(op))
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


def verify(op: str) -> list[str]:
    """Problems with ``op``'s goldens (empty when the reference and cases match them)."""
    path = _file(op)
    todo = frozen_cases(op)
    if not todo:
        return []
    if not path.exists():
        return [f"no goldens for {op} (run python -m kaffa_conformance.goldens --update --op {op})"]
    recorded = _manifest().get(path.name)
    if recorded != _sha(path):
        return [f"{path.name} does not match the sha256 in manifest.json (edited outside --update?)"]
    problems = []
    with np.load(path, allow_pickle=False) as z:
        for case in todo:
            ins = master_inputs(case)
            for i, x in enumerate(ins):
                key = f"{case.name}/in{i}"
                if key not in z or z[key].shape != x.shape or not np.array_equal(z[key], x):
                    problems.append(f"{case.id}: input {i} is not the frozen one (case generator changed?)")
                    break
            else:
                outs = _reference.run(op, parsed_args(case), ins, case.num_outputs)
                for j, y in enumerate(outs[: case.num_outputs]):
                    key = f"{case.name}/out{j}"
                    y = np.asarray(y)
                    if key not in z:
                        problems.append(f"{case.id}: no frozen output {j}")
                    elif z[key].shape != y.shape or not np.allclose(
                        y, z[key], rtol=RTOL, atol=ATOL, equal_nan=True
                    ):
                        problems.append(f"{case.id}: reference output {j} differs from the frozen golden")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check or update the frozen conformance goldens.")
    p.add_argument("--update", action="store_true", help="regenerate goldens from the current references")
    p.add_argument("--op", action="append", help="only these ops (repeatable)")
    args = p.parse_args(argv)
    ops = args.op or [op for op in _cases.ops_with_cases() if _reference.get(op)]
    if args.update:
        update(ops)
        print(f"updated goldens for {len(ops)} ops in {DIR}")
        return 0
    bad = {op: verify(op) for op in ops}
    for _op, problems in bad.items():
        for line in problems:
            print(line)
    n = sum(map(len, bad.values()))
    print(f"{len(ops)} ops checked, {n} problem(s)")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
