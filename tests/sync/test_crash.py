"""``kill -9`` a daemon in the middle of a 200 MiB upload, restart it: the upload completes
without resending the chunks the cluster already holds, and nothing half-written is committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import Client, NotFoundError
from tessera.chunking import chunk_file
from tests.integration.helpers import new_user, random_file, same_bytes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MiB = 1024 * 1024


def _counters(state: Path) -> tuple[dict[str, int], int]:
    if not (state / "state.sqlite3").exists():
        return {}, 0
    db = sqlite3.connect(state / "state.sqlite3", timeout=5)
    try:
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        receipts = db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
        return counters, receipts
    except sqlite3.OperationalError:
        return {}, 0
    finally:
        db.close()


def _sync_once(folder: Path, state: Path, endpoint: str, token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TESSERA_TOKEN": token, "TESSERA_ENDPOINT": endpoint}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "sync",
            str(folder),
            "--once",
            "--state-dir",
            str(state),
            "--device",
            "crashy",
            "--settle",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def test_kill_9_mid_upload_resumes_without_resending(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    folder, state = tmp_path / "folder", tmp_path / "state"
    folder.mkdir()
    big = random_file(folder / "big.bin", 200 * MiB)
    n_chunks = sum(1 for _ in chunk_file(big))

    proc = _sync_once(folder, state, cluster.meta_address, token)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _counters(state)[1] >= n_chunks // 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"the upload finished before it could be killed: {proc.stdout.read()!r}"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, held = _counters(state)
    assert 0 < held < n_chunks

    async with await Client.connect(cluster.meta_address, token=token) as c:
        with pytest.raises(NotFoundError):
            await c.stat("big.bin")  # nothing half-committed

        proc = _sync_once(folder, state, cluster.meta_address, token)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out.decode(errors="replace")
        after, _ = _counters(state)
        resent = after.get("chunks_sent", 0) - before.get("chunks_sent", 0)
        print(
            f"\n{n_chunks} chunks; {held} held by the cluster at the kill; {resent} sent after the restart"
        )
        assert resent == n_chunks - held

        await c.get_file("big.bin", tmp_path / "check.bin")
        assert same_bytes(big, tmp_path / "check.bin")
