"""Regenerate ``kaffa_pb2.py`` from ``kaffa.proto`` with the pinned protoc (grpcio-tools).

python -m kaffa.proto.regen          # rewrite kaffa_pb2.py in place
python -m kaffa.proto.regen --check  # exit 1 if the checked-in module is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate() -> str:
    """Return the text protoc generates for kaffa.proto today."""
    try:
        from grpc_tools import protoc
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "grpcio-tools is needed to regenerate kaffa_pb2.py: pip install 'kaffa[test]'"
        ) from e
    with tempfile.TemporaryDirectory() as out:
        rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", str(HERE / "kaffa.proto")])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        return (Path(out) / "kaffa_pb2.py").read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that kaffa_pb2.py is current")
    args = parser.parse_args(argv)
    fresh = generate()
    target = HERE / "kaffa_pb2.py"
    if args.check:
        if target.read_text() != fresh:
            print(f"{target} is stale: run python -m kaffa.proto.regen", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.write_text(fresh)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
