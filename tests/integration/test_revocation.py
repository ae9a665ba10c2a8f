"""Revocation reaches every node kind within 2 s: new calls and open streams end UNAUTHENTICATED.

For each way a credential ends (logout of the token, revoking the device from another one,
changing the password, deleting the user), against the real cluster:

- an open ``Sync.Subscribe`` stream under the old token ends with UNAUTHENTICATED within 2 s,
  and a file committed right after the revocation never reaches it;
- new calls with the old token are UNAUTHENTICATED on the metanode, the sync node (a new
  Subscribe) and a block node (GetRing, PutChunks) within 2 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from client import Client
from tessera.auth import Signer
from tessera.pb import (
    block_pb2,
    block_pb2_grpc,
    common_pb2,
    meta_pb2,
    meta_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)
from tessera.rpc import ON_BEHALF_TOKEN_KEY, auth_metadata, open_channel

pytestmark = pytest.mark.cluster

LIMIT = 2.0  # seconds: what the issue and DESIGN.md promise


@dataclass
class Account:
    name: str
    password: str
    victim: str  # the token that gets revoked
    other: str  # a second device of the same user


async def _account(cluster) -> Account:  # type: ignore[no-untyped-def]
    name, password = f"r{uuid.uuid4().hex[:10]}", "pw-" + uuid.uuid4().hex
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        await admin.create_user(name, password)
    victim = await Client.login(cluster.meta_address, name, password, device_name="laptop")
    other = await Client.login(cluster.meta_address, name, password, device_name="phone")
    return Account(name, password, victim.token, other.token)


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def _new_calls(cluster, token: str, sync_address: str) -> dict[str, grpc.StatusCode]:  # type: ignore[no-untyped-def]
    """The status of a fresh call with ``token`` on each node kind (streams: of the first read,
    so with a valid token the PutChunks read would wait for its deadline)."""
    md = auth_metadata(token)
    out: dict[str, grpc.StatusCode] = {}
    async with open_channel(cluster.meta_address) as ch:
        out["meta"] = await _code(
            meta_pb2_grpc.MetadataStub(ch).List(meta_pb2.ListRequest(), metadata=md, timeout=5)
        )
    async with open_channel(sync_address) as ch:
        stream = sync_pb2_grpc.SyncStub(ch).Subscribe(
            sync_pb2.SubscribeRequest(), metadata=md, timeout=5
        )
        out["sync"] = await _code(stream.read())
    async with open_channel(cluster.block_addresses[0]) as ch:
        stub = block_pb2_grpc.BlockStub(ch)
        out["block"] = await _code(stub.GetRing(block_pb2.GetRingRequest(), metadata=md, timeout=5))
        out["block-stream"] = await _code(stub.PutChunks(metadata=md, timeout=5).read())
    return out


Revoke = Callable[[object, Account], Awaitable[str | None]]


async def _logout(cluster, acct: Account) -> str | None:  # type: ignore[no-untyped-def]
    async with await Client.connect(cluster.meta_address, token=acct.victim) as c:
        await c.logout()
    return acct.other


async def _revoke_device(cluster, acct: Account) -> str | None:  # type: ignore[no-untyped-def]
    async with await Client.connect(cluster.meta_address, token=acct.other) as c:
        assert (await c.revoke_device("laptop")).name == "laptop"
        assert [d.name for d in await c.devices()] == ["phone"]
    return acct.other


async def _change_password(cluster, acct: Account) -> str | None:  # type: ignore[no-untyped-def]
    async with await Client.connect(cluster.meta_address, token=acct.other) as c:
        return await c.change_password(acct.password, "new-" + acct.password)


async def _delete_user(cluster, acct: Account) -> str | None:  # type: ignore[no-untyped-def]
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        await admin.delete_user(acct.name)
    return None


@pytest.mark.parametrize(
    "revoke",
    [_logout, _revoke_device, _change_password, _delete_user],
    ids=["logout", "device-revoked", "password-changed", "user-deleted"],
)
async def test_revocation_reaches_every_node_kind(cluster, tmp_path: Path, revoke: Revoke) -> None:
    acct = await _account(cluster)
    note = tmp_path / "before.txt"
    note.write_text("before")
    async with await Client.connect(cluster.meta_address, token=acct.victim) as victim:
        await victim.put_file(note, "before.txt")
        sync_address = await victim._sync_address()
        root = victim.root_namespace_id
    async with open_channel(cluster.block_addresses[0]) as ch:
        ring = block_pb2_grpc.BlockStub(ch).GetRing(
            block_pb2.GetRingRequest(), metadata=auth_metadata(acct.victim), timeout=5
        )
        assert await _code(ring) is grpc.StatusCode.OK

    events: list[sync_pb2.SyncEvent] = []
    async with open_channel(sync_address) as ch:
        stream = sync_pb2_grpc.SyncStub(ch).Subscribe(
            sync_pb2.SubscribeRequest(cursors=[common_pb2.Cursor(namespace_id=root, seq=0)]),
            metadata=auth_metadata(acct.victim),
        )
        while not any(e.WhichOneof("event") == "change" for e in events):
            events.append(await asyncio.wait_for(stream.read(), 20))

        ended_at: list[float] = []

        async def drain() -> grpc.StatusCode:
            try:
                while (ev := await stream.read()) is not grpc.aio.EOF:
                    events.append(ev)
            except grpc.aio.AioRpcError as e:
                return e.code()
            finally:
                ended_at.append(time.monotonic())
            return grpc.StatusCode.OK

        draining = asyncio.create_task(drain())
        called = time.monotonic()
        survivor = await revoke(cluster, acct)
        start = time.monotonic()  # the revocation is done: the 2 s count from here

        # New calls on every node kind: refused within 2 s.
        while True:
            statuses = await _new_calls(cluster, acct.victim, sync_address)
            if set(statuses.values()) == {grpc.StatusCode.UNAUTHENTICATED}:
                break
            assert time.monotonic() - start < LIMIT, statuses
            await asyncio.sleep(0.05)
        refused_after = time.monotonic() - start

        if survivor is not None:  # a change committed after the revocation must not arrive
            note.write_text("after")
            async with await Client.connect(cluster.meta_address, token=survivor) as c:
                await c.put_file(note, "after.txt")
        code = await asyncio.wait_for(draining, LIMIT + 5)
        ended_after = ended_at[0] - start
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert ended_after < LIMIT, f"stream ended {ended_after:.2f} s after the revocation"
        await asyncio.sleep(0.5)  # (a change would have had time to arrive)
        paths = [e.change.entry.path for e in events if e.WhichOneof("event") == "change"]
        assert "before.txt" in paths and "after.txt" not in paths

    print(
        f"revocation call {(start - called) * 1000:.0f} ms; then stream ended in "
        f"{ended_after * 1000:.0f} ms, all node kinds refused in {refused_after * 1000:.0f} ms"
    )


async def test_metanode_refuses_a_forwarded_revoked_token_in_the_same_transaction(cluster) -> None:  # type: ignore[no-untyped-def]
    """The second line: a sync node reading journals for a subscriber forwards the subscriber's
    token, and the metanode checks it against the database with the read, so no change made
    after a revocation can be handed to an old stream, whatever the etcd feed's timing."""
    acct = await _account(cluster)
    other = await _account(cluster)
    async with await Client.connect(cluster.meta_address, token=acct.victim) as c:
        user_id = c.user_id
        await c.logout()
    node = Signer(cluster.secret).node_token("tests")

    def md(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return (*auth_metadata(node), ("x-tessera-user", user_id), *extra)

    async with open_channel(cluster.meta_address) as ch:
        stub = meta_pb2_grpc.MetadataStub(ch)
        req = meta_pb2.ListNamespacesRequest()
        assert await _code(stub.ListNamespaces(req, metadata=md())) is grpc.StatusCode.OK
        live = md((ON_BEHALF_TOKEN_KEY, acct.other))
        assert await _code(stub.ListNamespaces(req, metadata=live)) is grpc.StatusCode.OK
        revoked = md((ON_BEHALF_TOKEN_KEY, acct.victim))
        assert (
            await _code(stub.ListNamespaces(req, metadata=revoked))
            is grpc.StatusCode.UNAUTHENTICATED
        )
        foreign = md((ON_BEHALF_TOKEN_KEY, other.victim))
        assert (
            await _code(stub.ListNamespaces(req, metadata=foreign))
            is grpc.StatusCode.INVALID_ARGUMENT
        )
