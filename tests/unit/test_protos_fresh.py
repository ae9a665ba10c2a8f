"""The committed generated code must match proto/ (regenerate with `make proto`)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protos_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_only_pb_package_holds_generated_code() -> None:
    generated = {p.name for p in (ROOT / "tessera" / "pb").glob("*_pb2*.py")}
    assert {
        "common_pb2.py",
        "block_pb2_grpc.py",
        "meta_pb2_grpc.py",
        "sync_pb2_grpc.py",
    } <= generated
