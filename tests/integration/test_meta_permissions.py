"""The permission matrix: owner, editor, viewer, non-member, removed member, expired and revoked
tokens, each against every operation on a shared folder. Denied calls change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio

from client import Client, Cursor
from tessera.auth import Signer
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tests.integration.helpers import new_user
from tests.integration.meta_util import md

pytestmark = pytest.mark.cluster

OK = grpc.StatusCode.OK
NF = grpc.StatusCode.NOT_FOUND
PD = grpc.StatusCode.PERMISSION_DENIED
UN = grpc.StatusCode.UNAUTHENTICATED
ROLES = ("owner", "editor", "viewer", "outsider", "removed", "expired", "revoked")


@dataclass
class World:
    owner: Client
    stub: meta_pb2_grpc.MetadataStub
    ns: str
    tokens: dict[str, str]
    third: str  # a user the owner shares with and removes again
    doc_rev: str  # first revision of doc.txt


@pytest_asyncio.fixture(scope="module")
async def world(cluster):  # type: ignore[no-untyped-def]
    made = {
        r: await new_user(cluster.meta_address, cluster.admin_token, prefix=r[:3])
        for r in ("owner", "editor", "viewer", "outsider", "removed", "third")
    }
    tokens = {r: t for r, (_, t) in made.items() if r != "third"}
    channel = grpc.aio.insecure_channel(cluster.meta_address)
    owner = await Client.connect(cluster.meta_address, token=tokens["owner"])
    await owner.make_folder("Team")
    stub = meta_pb2_grpc.MetadataStub(channel)
    first = await stub.Commit(
        meta_pb2.CommitRequest(path="Team/doc.txt", blocklist=common_pb2.Blocklist()),
        metadata=md(tokens["owner"]),
    )
    await stub.Commit(
        meta_pb2.CommitRequest(
            path="Team/doc.txt",
            parent_revision=first.entry.revision_id,
            blocklist=common_pb2.Blocklist(),
        ),
        metadata=md(tokens["owner"]),
    )
    ns = await owner.share("Team", made["editor"][0], role="editor")
    await owner.share("Team", made["viewer"][0], role="viewer")
    await owner.share("Team", made["removed"][0], role="editor")
    await owner.unshare("Team", made["removed"][0])
    signer = Signer(cluster.secret)
    tokens["expired"] = signer.issue_token(owner.user_id, ttl=-5)[0]
    # Another session of the owner, revoked by itself (as `tessera logout` would).
    tokens["revoked"] = signer.issue_token(owner.user_id, ttl=3600)[0]
    await stub.RevokeToken(meta_pb2.RevokeTokenRequest(), metadata=md(tokens["revoked"]))
    yield World(owner, stub, ns, tokens, made["third"][0], first.entry.revision_id)
    await owner.close()
    await channel.close()


Op = Callable[[World, str], Awaitable[Any]]


def _c(w: World, token: str, **kw: Any) -> Awaitable[Any]:
    return w.stub.Commit(
        meta_pb2.CommitRequest(namespace_id=w.ns, blocklist=common_pb2.Blocklist(), **kw),
        metadata=md(token),
    )


async def _fresh(w: World, prefix: str) -> str:
    path = f"{prefix}-{uuid.uuid4().hex[:8]}.txt"
    await _c(w, w.tokens["owner"], path=path)
    return path


async def op_stat(w: World, t: str) -> Any:
    return await w.stub.Stat(
        meta_pb2.StatRequest(namespace_id=w.ns, path="doc.txt"), metadata=md(t)
    )


async def op_list(w: World, t: str) -> Any:
    return await w.stub.List(meta_pb2.ListRequest(namespace_id=w.ns, path=""), metadata=md(t))


async def op_get(w: World, t: str) -> Any:
    return await w.stub.GetFile(
        meta_pb2.GetFileRequest(namespace_id=w.ns, path="doc.txt"), metadata=md(t)
    )


async def op_history(w: World, t: str) -> Any:
    return await w.stub.History(
        meta_pb2.HistoryRequest(namespace_id=w.ns, path="doc.txt"), metadata=md(t)
    )


async def op_changes(w: World, t: str) -> Any:
    return await w.stub.ListChanges(
        meta_pb2.ListChangesRequest(cursor=common_pb2.Cursor(namespace_id=w.ns, seq=0)),
        metadata=md(t),
    )


async def op_members(w: World, t: str) -> Any:
    return await w.stub.ListMembers(
        meta_pb2.ListMembersRequest(namespace_id=w.ns, path=""), metadata=md(t)
    )


async def op_commit(w: World, t: str) -> Any:
    return await _c(w, t, path=f"new-{uuid.uuid4().hex[:8]}.txt")


async def op_mkdir(w: World, t: str) -> Any:
    return await w.stub.MakeFolder(
        meta_pb2.MakeFolderRequest(namespace_id=w.ns, path=f"dir-{uuid.uuid4().hex[:8]}"),
        metadata=md(t),
    )


async def op_delete(w: World, t: str) -> Any:
    path = await _fresh(w, "del")
    return await w.stub.Delete(meta_pb2.DeleteRequest(namespace_id=w.ns, path=path), metadata=md(t))


async def op_move(w: World, t: str) -> Any:
    path = await _fresh(w, "mv")
    return await w.stub.Move(
        meta_pb2.MoveRequest(namespace_id=w.ns, from_path=path, to_path="moved-" + path),
        metadata=md(t),
    )


async def op_restore(w: World, t: str) -> Any:
    return await w.stub.Restore(
        meta_pb2.RestoreRequest(namespace_id=w.ns, path="doc.txt", revision_id=w.doc_rev),
        metadata=md(t),
    )


async def op_batch(w: World, t: str) -> Any:
    req = meta_pb2.CommitBatchRequest(
        commits=[
            meta_pb2.CommitRequest(
                namespace_id=w.ns,
                path=f"b-{uuid.uuid4().hex[:8]}",
                blocklist=common_pb2.Blocklist(),
            )
        ]
    )
    resp = await w.stub.CommitBatch(req, metadata=md(t))
    if resp.results[0].code:  # the batch call succeeds; its entry carries the status
        raise _EntryError(grpc.StatusCode(_CODES[resp.results[0].code]))
    return resp


async def op_share(w: World, t: str) -> Any:
    return await w.stub.Share(
        meta_pb2.ShareRequest(namespace_id=w.ns, user_name=w.third, role=meta_pb2.ROLE_VIEWER),
        metadata=md(t),
    )


async def op_unshare(w: World, t: str) -> Any:
    await w.owner.share("", w.third, role="viewer", namespace_id=w.ns)
    return await w.stub.Unshare(
        meta_pb2.UnshareRequest(namespace_id=w.ns, user_name=w.third), metadata=md(t)
    )


async def op_need(w: World, t: str) -> Any:
    return await w.stub.NeedChunks(
        meta_pb2.NeedChunksRequest(hashes=[uuid.uuid4().bytes * 2]), metadata=md(t)
    )


async def op_namespaces(w: World, t: str) -> Any:
    return await w.stub.ListNamespaces(meta_pb2.ListNamespacesRequest(), metadata=md(t))


async def op_gc(w: World, t: str) -> Any:
    return await w.stub.RunGC(meta_pb2.RunGCRequest(), metadata=md(t))


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class _EntryError(Exception):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


READ = {
    "owner": OK,
    "editor": OK,
    "viewer": OK,
    "outsider": NF,
    "removed": NF,
    "expired": UN,
    "revoked": UN,
}
WRITE = {**READ, "viewer": PD}
OWNER_ONLY = {**READ, "editor": PD, "viewer": PD}
ANY_USER = {r: OK for r in ROLES} | {"expired": UN, "revoked": UN}
ADMIN_ONLY = {r: PD for r in ROLES} | {"expired": UN, "revoked": UN}

MATRIX: list[tuple[str, Op, dict[str, grpc.StatusCode], bool]] = [
    ("Stat", op_stat, READ, False),
    ("List", op_list, READ, False),
    ("GetFile", op_get, READ, False),
    ("History", op_history, READ, False),
    ("ListChanges", op_changes, READ, False),
    ("ListMembers", op_members, READ, False),
    ("Commit", op_commit, WRITE, True),
    ("CommitBatch", op_batch, WRITE, True),
    ("MakeFolder", op_mkdir, WRITE, True),
    ("Delete", op_delete, WRITE, True),
    ("Move", op_move, WRITE, True),
    ("Restore", op_restore, WRITE, True),
    ("Share", op_share, OWNER_ONLY, True),
    ("Unshare", op_unshare, OWNER_ONLY, True),
    ("NeedChunks", op_need, ANY_USER, False),
    ("ListNamespaces", op_namespaces, ANY_USER, False),
    ("RunGC", op_gc, ADMIN_ONLY, False),
]


async def _head(w: World) -> tuple[int, list[str]]:
    changes, cursor, _, _ = await w.owner.list_changes(Cursor(w.ns, 0))
    return cursor.seq, sorted(m.name for m in await w.owner.members(namespace_id=w.ns))


@pytest.mark.parametrize(("name", "op", "expected", "writes"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_permission_matrix(
    world: World, name: str, op: Op, expected: dict[str, grpc.StatusCode], writes: bool
) -> None:
    got: dict[str, grpc.StatusCode] = {}
    for role in ROLES:
        if name == "Unshare" and role != "owner":
            await world.owner.share("", world.third, role="viewer", namespace_id=world.ns)
        before = await _head(world)
        try:
            await op(world, world.tokens[role])
            got[role] = OK
        except grpc.aio.AioRpcError as e:
            got[role] = e.code()
            if e.code() is NF:  # a non-member learns nothing: the message of a missing path
                assert "no such file or folder" in (e.details() or ""), e.details()
        except _EntryError as e:
            got[role] = e.code
        if got[role] is not OK and writes:
            after = await _head(world)
            # The op's own setup (by the owner) may have added a record; the denied call did not.
            assert after[1] == before[1]
            assert after[0] - before[0] <= (1 if name in ("Delete", "Move") else 0), (name, role)
    assert got == expected


async def test_not_found_for_outsiders_is_the_same_as_for_a_missing_path(world: World) -> None:
    async def details(token: str, path: str) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await world.stub.Stat(
                meta_pb2.StatRequest(namespace_id=world.ns, path=path), metadata=md(token)
            )
        return info.value.code(), info.value.details() or ""

    # The outsider asking for an existing file gets exactly what anyone gets for a missing one.
    assert await details(world.tokens["outsider"], "doc.txt") == (
        NF,
        "doc.txt: no such file or folder",
    )
    assert await details(world.tokens["outsider"], "nope.txt") == await details(
        world.tokens["owner"], "nope.txt"
    )
    # An unknown namespace id looks exactly the same.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await world.stub.Stat(
            meta_pb2.StatRequest(namespace_id=str(uuid.uuid4()), path="nope.txt"),
            metadata=md(world.tokens["owner"]),
        )
    assert (info.value.code(), info.value.details()) == (NF, "nope.txt: no such file or folder")
