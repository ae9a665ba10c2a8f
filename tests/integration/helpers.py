"""Shared helpers for integration tests against the real local cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from client import Client


async def new_user(meta_address: str, admin_token: str, *, prefix: str = "u") -> tuple[str, str]:
    """Create a fresh user and log in; returns (name, token)."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    password = "pw-" + uuid.uuid4().hex
    async with await Client.connect(meta_address, token=admin_token) as admin:
        await admin.create_user(name, password)
    resp = await Client.login(meta_address, name, password)
    return name, resp.token


def random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes, written in 1 MiB pieces."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 1024 * 1024)
            f.write(os.urandom(n))
            left -= n
    return path


def same_bytes(a: Path, b: Path) -> bool:
    """Compare two files piece by piece (no whole-file reads)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def run_cli(
    endpoint: str, *args: str, token: str | None, home: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``tessera ARGS`` as a user would (its own process, config under ``home``)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "TESSERA_ENDPOINT": endpoint}
    env.pop("TESSERA_TOKEN", None)
    if token is not None:
        env["TESSERA_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def cluster_cli(
    cluster, home: Path, *args: str, token: str = ""
) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``tessera ARGS`` against the test cluster, config in ``home`` (and ``token`` if given)."""
    return run_cli(cluster.meta_address, *args, token=token or None, home=home)


def cli_ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must succeed."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli_fails(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a command that must fail (exit 1, no traceback)."""
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tessera: "), result.stderr
    return lines[0]
