"""Shared helpers for integration tests against the real local cluster."""

from __future__ import annotations

import os
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
