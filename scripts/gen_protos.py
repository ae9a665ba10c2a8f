"""Regenerate tessera/pb/ from proto/tessera/v1/*.proto.

Usage: python scripts/gen_protos.py [--check]

With --check, generate into a temporary folder and exit 1 if the committed code differs.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PKG = ROOT / "tessera" / "pb"
_IMPORT = re.compile(r"^from tessera\.v1 import (\w+) as (\w+)$", re.MULTILINE)

INIT = '''"""Generated protobuf and gRPC code for tessera.v1 (do not edit; run `make proto`)."""

from tessera.pb import block_pb2, block_pb2_grpc, common_pb2, errors_pb2, meta_pb2, meta_pb2_grpc, sync_pb2, sync_pb2_grpc

__all__ = [
    "block_pb2",
    "block_pb2_grpc",
    "common_pb2",
    "errors_pb2",
    "meta_pb2",
    "meta_pb2_grpc",
    "sync_pb2",
    "sync_pb2_grpc",
]
'''


def generate(out: Path) -> None:
    """Run protoc on every .proto and rewrite imports to the flat tessera.pb package."""
    with tempfile.TemporaryDirectory() as raw:
        protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--pyi_out={raw}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(raw) / "tessera" / "v1").iterdir()):
            text = _IMPORT.sub(r"from tessera.pb import \1 as \2", f.read_text())
            (out / f.name).write_text(text)
        (out / "__init__.py").write_text(INIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if tessera/pb is stale")
    args = parser.parse_args()
    if not args.check:
        if OUT_PKG.exists():
            shutil.rmtree(OUT_PKG)
        generate(OUT_PKG)
        print(f"generated {OUT_PKG.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "pb"
        generate(fresh)
        committed = {p.name for p in OUT_PKG.glob("*") if p.is_file()}
        generated = {p.name for p in fresh.glob("*")}
        stale = sorted(committed ^ generated)
        stale += [
            n
            for n in sorted(committed & generated)
            if not filecmp.cmp(OUT_PKG / n, fresh / n, shallow=False)
        ]
        if stale:
            print("tessera/pb is stale; run `make proto`: " + ", ".join(stale), file=sys.stderr)
            return 1
    print("tessera/pb is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
