"""Regenerate ``kaffa_pb2.py`` from ``kaffa.proto`` (and ``caffe_pb2.py`` from ``caffe.proto``)
with the pinned protoc (grpcio-tools).

python -m kaffa.proto.regen          # rewrite the *_pb2.py modules in place
python -m kaffa.proto.regen --check  # exit 1 if a checked-in module is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The .proto files (stems) this module keeps generated (one missing from HERE is skipped), and the
# virtual folder each is registered under in protobuf's descriptor pool: caffe.proto as
# "kaffa/proto/caffe.proto", so that it does not clash with pycaffe's own "caffe.proto".
PROTOS = {"kaffa": "", "caffe": "kaffa/proto"}


def generate(stem: str = "kaffa") -> str:
    """Return the text protoc generates for ``<stem>.proto`` today."""
    try:
        from grpc_tools import protoc
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "grpcio-tools is needed to regenerate kaffa_pb2.py: pip install 'kaffa[test]'"
        ) from e
    with tempfile.TemporaryDirectory() as out:
        folder = PROTOS.get(stem, "")
        if folder:
            cmd = [f"-I{folder}={HERE}", f"{folder}/{stem}.proto"]
        else:
            cmd = [f"-I{HERE}", str(HERE / f"{stem}.proto")]
        rc = protoc.main(["protoc", f"--python_out={out}", *cmd])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        return (Path(out) / folder / f"{stem}_pb2.py").read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that kaffa_pb2.py is current")
    args = parser.parse_args(argv)
    stale = 0
    for stem in (s for s in PROTOS if (HERE / f"{s}.proto").is_file()):
        fresh = generate(stem)
        target = HERE / f"{stem}_pb2.py"
        if not args.check:
            target.write_text(fresh)
            print(f"wrote {target}")
        elif not target.is_file() or target.read_text() != fresh:
            print(f"{target} is stale: run python -m kaffa.proto.regen", file=sys.stderr)
            stale = 1
        else:
            print(f"{target} is current")
    return stale


if __name__ == "__main__":
    sys.exit(main())
