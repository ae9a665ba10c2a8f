"""Failure 10 of issue 9: while the cluster is away, reconnects back off (growing, jittered, up
to the cap) and nothing redials in between. The "cluster" is a loopback port that accepts every
connection and closes it at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

from syncd.daemon import Daemon, DaemonConfig

BASE, CAP = 0.25, 2.0


async def test_reconnects_back_off_to_the_cap_with_jitter(tmp_path: Path) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.setblocking(False)
    loop = asyncio.get_running_loop()
    accepts: list[float] = []

    async def accept_and_drop() -> None:
        while True:
            conn, _ = await loop.sock_accept(srv)
            accepts.append(time.monotonic())
            conn.close()

    acceptor = asyncio.create_task(accept_and_drop())
    (tmp_path / "folder").mkdir()
    cfg = DaemonConfig(
        folder=tmp_path / "folder",
        state_dir=tmp_path / "state",
        endpoint=f"127.0.0.1:{srv.getsockname()[1]}",
        token="t",
        backoff_base=BASE,
        backoff_cap=CAP,
        watch=False,
    )
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(300):  # bounded: 30 s at most
            if len(daemon.backoff.attempts) >= 9:
                break
            await asyncio.sleep(0.1)
        attempts = list(daemon.backoff.attempts)
        dialled = len(accepts)
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
        acceptor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acceptor
        srv.close()
    assert len(attempts) >= 9, attempts
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    for n, gap in enumerate(gaps[:8], start=1):  # after n failures in a row
        top = min(CAP, BASE * 2**n)
        assert top / 2 - 0.05 <= gap <= top + 0.75, (n, gaps)
    capped = gaps[3:8]
    assert max(capped) - min(capped) > 0.01, f"no jitter: {capped}"
    assert sum(gaps[3:8]) >= 5 * CAP / 2 - 0.25, gaps
    # every TCP connection the port saw is one of the daemon's attempts: no redial in between
    assert dialled <= len(attempts) + 1, (dialled, len(attempts))


async def test_a_link_that_drops_at_once_does_not_reset_the_backoff(tmp_path: Path) -> None:
    """Connecting "succeeds" but the link fails right after (pure logic of the link loop: the
    connection itself is stubbed): the delays keep growing instead of starting over."""
    (tmp_path / "folder").mkdir()
    cfg = DaemonConfig(
        folder=tmp_path / "folder",
        state_dir=tmp_path / "state",
        endpoint="127.0.0.1:1",
        token="t",
        backoff_base=BASE,
        backoff_cap=CAP,
        watch=False,
    )
    daemon = Daemon(cfg)
    loop = asyncio.get_running_loop()

    async def connect_then_drop() -> None:
        daemon.online = True
        loop.call_later(0.01, daemon._offline, "dropped right after connecting")

    async def follow() -> None:
        await asyncio.sleep(3600)

    daemon._connect = connect_then_drop  # type: ignore[method-assign]
    daemon._follow = follow  # type: ignore[method-assign]
    task = asyncio.create_task(daemon._keep_linked())
    try:
        for _ in range(200):  # bounded: 20 s at most
            if len(daemon.backoff.attempts) >= 6:
                break
            await asyncio.sleep(0.1)
    finally:
        daemon.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        daemon.db.close()
    gaps = [
        b - a for a, b in zip(daemon.backoff.attempts, daemon.backoff.attempts[1:], strict=False)
    ]
    assert len(gaps) >= 5, gaps
    for n, gap in enumerate(gaps[:5], start=1):
        assert gap >= min(CAP, BASE * 2**n) / 2 - 0.05, (n, gaps)
