"""The first admin of a deployed cluster, created in the database by ``metanode.bootstrap``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from client import Client

pytestmark = pytest.mark.cluster


def _bootstrap(db: str, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESSERA_DB": db}
    return subprocess.run(
        [sys.executable, "-m", "metanode.bootstrap", *args],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


async def test_bootstrap_creates_an_admin_who_can_add_users(cluster_env) -> None:  # type: ignore[no-untyped-def]
    name, password = f"ops{uuid.uuid4().hex[:8]}", "a long admin password"
    done = _bootstrap(cluster_env.db, name, "--admin", password=password)
    assert done.returncode == 0, done.stderr
    assert name in done.stdout
    token = (await Client.login(cluster_env.meta, name, password)).token
    async with await Client.connect(cluster_env.meta, token=token) as admin:
        await admin.create_user(f"u{uuid.uuid4().hex[:8]}", "another password")
        assert (await admin.status()).database_ok

    again = _bootstrap(cluster_env.db, name, "--admin", password=password)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [f"bootstrap: user {name!r} already exists"]
    short = _bootstrap(cluster_env.db, f"x{uuid.uuid4().hex[:6]}", password="short")
    assert short.returncode == 1 and "at least" in short.stderr
