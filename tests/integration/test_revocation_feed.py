"""The revocation feed against a real etcd of its own: revocations arrive at once, open calls are
ended, and losing etcd fails closed after the bound (and recovers when etcd is back)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.backends import etcd_binary
from devcluster.nodes import etcd_healthy
from tessera import membership, revocation
from tessera.auth import Principal
from tessera.revocation import Revocations, RevokedError, StaleError

STALE_AFTER = 1.0
PROBE = 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Etcd:
    """One etcd process on fixed ports and data dir, so it can be stopped and started again."""

    def __init__(self, data: Path) -> None:
        self.data, self.port, self.peer = data, _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer}"
        self.proc = subprocess.Popen(
            [
                str(etcd_binary()),
                "--data-dir",
                str(self.data),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
                "--log-level",
                "error",
                "--unsafe-no-fsync",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not etcd_healthy(self.url):
            assert time.monotonic() < deadline, "etcd did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    server = Etcd(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _until(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def _raises(view: Revocations, principal: Principal, kind: type[Exception]) -> bool:
    try:
        view.check(principal)
    except kind:
        return True
    return False


async def test_feed_revokes_at_once_and_fails_closed_without_etcd(etcd: Etcd) -> None:
    alice = Principal("7d2f0c52-0000-4000-8000-000000000001", "dev-a", int(time.time()) + 3600)
    alice_phone = Principal(alice.subject, "dev-b", alice.expires_at)
    bob = Principal("7d2f0c52-0000-4000-8000-000000000002", "dev-c", alice.expires_at)
    node = Principal("node:block-0", "node", alice.expires_at)
    client = membership.connect([("127.0.0.1", etcd.port)])
    writer = membership.connect([("127.0.0.1", etcd.port)])
    view = Revocations(stale_after=STALE_AFTER, probe_interval=PROBE)
    await view.start(client)
    try:
        view.check(alice)
        with view.track(alice) as call, view.track(bob) as other:
            await revocation.publish_token(writer, "dev-a", alice.user_id, alice.expires_at)
            await _until(lambda: call.ended.is_set(), 2.0)
            assert call.revoked and not other.ended.is_set()
        assert _raises(view, alice, RevokedError)
        view.check(alice_phone)  # the user's other device goes on
        # Someone else's token id names only that user's token.
        await revocation.publish_token(writer, "dev-c", alice.user_id, alice.expires_at)
        await asyncio.sleep(0.3)
        view.check(bob)

        # A password change: older generations die, the new one lives.
        await revocation.publish_generation(writer, bob.user_id, 1, 3600)
        await _until(lambda: _raises(view, bob, RevokedError), 2.0)
        view.check(Principal(bob.subject, "dev-c2", bob.expires_at, generation=1))

        # etcd goes away: within the bound, user calls fail closed; node calls go on.
        etcd.stop()
        waited = await _until(lambda: _raises(view, alice_phone, StaleError), STALE_AFTER + 5)
        assert waited > STALE_AFTER / 2
        view.check(node)

        # etcd is back: the view is confirmed again, with what it held.
        etcd.start()
        await _until(lambda: not _raises(view, alice_phone, StaleError), 15)
        assert _raises(view, alice, RevokedError)
        await revocation.publish_generation(writer, alice.user_id, revocation.USER_DELETED, 3600)
        await _until(lambda: _raises(view, alice_phone, RevokedError), 2.0)
    finally:
        await view.stop()
        for c in (client, writer):
            with contextlib.suppress(Exception):
                await c.close()
