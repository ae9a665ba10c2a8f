"""The web gateway as its own process in front of the session cluster, and users with
passwords to log in with."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client


@pytest.fixture(scope="module")
def web_url(cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``python -m web`` on a free loopback port; its URL."""
    tmp = tmp_path_factory.mktemp("web")
    ready = tmp / "ready.json"
    log = (tmp / "web.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "web", "--endpoint", cluster.meta_address,
            "--listen", "127.0.0.1:0", "--ready-file", str(ready), "--spool", str(tmp / "spool"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(300):  # bounded: 30 s
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), f"the web gateway did not start: {(tmp / 'web.log').read_text()}"
        yield json.loads(ready.read_text())["url"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def user_with_password(cluster, prefix: str = "w") -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """A fresh user: (name, password, token)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    password = "pw-" + uuid.uuid4().hex
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        await admin.create_user(name, password)
    token = (await Client.login(cluster.meta_address, name, password)).token
    return name, password, token


def docs_dir() -> Path:
    """Where the browser tests leave screenshots of the main pages."""
    return Path(__file__).resolve().parents[2] / "docs" / "screenshots"
