"""Shared folders: conversion into a namespace, mounts, paths through mounts, roles, unshare."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from client import ChangeOp, Client, Cursor, PermissionDeniedError
from tests.integration.helpers import new_user
from tests.integration.meta_util import error_of, get_bytes, journal, put_bytes, status_of

pytestmark = pytest.mark.cluster


async def _pair(cluster):  # type: ignore[no-untyped-def]
    na, ta = await new_user(cluster.meta_address, cluster.admin_token, prefix="own")
    nb, tb = await new_user(cluster.meta_address, cluster.admin_token, prefix="mem")
    a = await Client.connect(cluster.meta_address, token=ta)
    b = await Client.connect(cluster.meta_address, token=tb)
    return na, a, nb, b


async def test_sharing_converts_the_folder_and_mounts_it_for_both(cluster, tmp_path: Path) -> None:
    na, a, nb, b = await _pair(cluster)
    async with a, b:
        v = await put_bytes(a, tmp_path, "Work/Team/plan.txt", b"plan v1")
        await put_bytes(a, tmp_path, "Work/Team/old.txt", b"old")
        await a.delete("Work/Team/old.txt")
        await put_bytes(a, tmp_path, "Work/mine.txt", b"not shared")
        await b.make_folder("team")  # B has a "team" folder already: the mount gets a suffix

        ns = await a.share("Work/Team", nb, role="editor")
        mounts_a = {n.mount_path: n for n in await a.namespaces()}
        mounts_b = {n.mount_path: n for n in await b.namespaces()}
        assert mounts_a["Work/Team"].namespace_id == ns and mounts_a["Work/Team"].role == "owner"
        assert mounts_b["Team (2)"].namespace_id == ns and mounts_b["Team (2)"].role == "editor"
        assert [m.role for m in await a.members("Work/Team")] == ["owner", "editor"]

        # The same file (id and history) is reached through either mount or by namespace id.
        assert (await a.stat("Work/Team/plan.txt")).file_id == v.entry.file_id
        assert (await b.stat("Team (2)/plan.txt")).file_id == v.entry.file_id
        assert (await b.stat("plan.txt", namespace_id=ns)).namespace_id == ns
        assert [e.revision for e in await b.history("Team (2)/plan.txt")] == [v.entry.revision]
        assert await get_bytes(b, tmp_path, "team (2)/PLAN.txt") == b"plan v1"
        # What was deleted before the share is restorable inside it.
        assert len(await b.history("Team (2)/old.txt")) == 2
        # The rest of A's tree is not shared.
        assert await status_of(b.stat("mine.txt", namespace_id=ns)) is grpc.StatusCode.NOT_FOUND

        # The shared namespace's journal starts with its tree, parents first; both see edits.
        snapshot = await journal(b, ns)
        assert [(r.op, r.entry.path) for r in snapshot] == [(ChangeOp.UPSERT, "plan.txt")]
        w = await put_bytes(b, tmp_path, "Team (2)/sub/from-b.txt", b"hello")
        assert w.entry.namespace_id == ns and w.entry.path == "sub/from-b.txt"
        assert await get_bytes(a, tmp_path, "Work/Team/sub/from-b.txt") == b"hello"
        assert [r.seq for r in await journal(a, ns)] == [1, 2, 3]

        # Moves inside the shared folder work from either side; moves across are refused.
        await b.move("Team (2)/sub/from-b.txt", "Team (2)/from-b.txt")
        assert (
            await status_of(b.move("Team (2)/from-b.txt", "outside.txt"))
            is grpc.StatusCode.FAILED_PRECONDITION
        )
        assert (
            await status_of(a.move("Work/mine.txt", "Work/Team/mine.txt"))
            is grpc.StatusCode.FAILED_PRECONDITION
        )
        # Mount points move with their owner's tree; a member may rename theirs.
        await a.move("Work", "Archive/Work")
        assert {n.mount_path for n in await a.namespaces()} == {"", "Archive/Work/Team"}
        assert await get_bytes(a, tmp_path, "Archive/Work/Team/plan.txt") == b"plan v1"
        await b.move("Team (2)", "From A")
        assert {n.mount_path for n in await b.namespaces()} == {"", "From A"}
        assert (await b.stat("From A/plan.txt")).file_id == v.entry.file_id
        # A mount point cannot be deleted (unshare it), nor anything containing one, nor be shared again inside.
        assert await status_of(b.delete("From A")) is grpc.StatusCode.FAILED_PRECONDITION
        assert await status_of(a.delete("Archive")) is grpc.StatusCode.FAILED_PRECONDITION
        assert (
            await status_of(a.share("Archive/Work/Team/sub", nb))
            is grpc.StatusCode.FAILED_PRECONDITION
        )
        assert await status_of(a.share("Archive", nb)) is grpc.StatusCode.FAILED_PRECONDITION
        assert (
            await status_of(a.share("Archive/Work/Team/plan.txt", nb))
            is grpc.StatusCode.FAILED_PRECONDITION
        )


async def test_viewers_read_only_and_unshare_takes_effect_at_once(cluster, tmp_path: Path) -> None:
    na, a, nb, b = await _pair(cluster)
    async with a, b:
        v = await put_bytes(a, tmp_path, "Photos/cat.jpg", b"meow")
        ns = await a.share("Photos", nb, role="viewer")
        assert await get_bytes(b, tmp_path, "Photos/cat.jpg") == b"meow"
        err = await error_of(put_bytes(b, tmp_path, "Photos/dog.jpg", b"woof"))
        assert isinstance(err, PermissionDeniedError)
        assert await status_of(b.delete("Photos/cat.jpg")) is grpc.StatusCode.PERMISSION_DENIED
        assert await status_of(b.share("Photos", na)) is grpc.StatusCode.PERMISSION_DENIED
        # Sharing again changes the role, without a second mount.
        assert await a.share("Photos", nb, role="editor") == ns
        await put_bytes(b, tmp_path, "Photos/dog.jpg", b"woof")
        assert len(await b.namespaces()) == 2

        b_root_head = (await b.list_changes(Cursor(b.root_namespace_id, 0)))[1].seq
        await a.unshare("Photos", nb)
        assert [n.mount_path for n in await b.namespaces()] == [""]
        assert await b.list("") == []
        removed = await journal(b, b.root_namespace_id, b_root_head)
        assert [(r.op, r.entry.path) for r in removed] == [(ChangeOp.DELETE, "Photos")]
        for call in (
            b.stat("cat.jpg", namespace_id=ns),
            b.list("", namespace_id=ns),
            b.history("cat.jpg", namespace_id=ns),
            b.list_changes(Cursor(ns, 0)),
            put_bytes(b, tmp_path, "x.jpg", b"x", namespace_id=ns, overwrite=False),
        ):
            assert await status_of(call) is grpc.StatusCode.NOT_FOUND
        # The owner still has everything.
        assert (await a.stat("Photos/cat.jpg")).file_id == v.entry.file_id
        assert {e.name for e in await a.list("Photos")} == {"cat.jpg", "dog.jpg"}


async def test_a_member_may_leave_but_the_owner_may_not(cluster, tmp_path: Path) -> None:
    na, a, nb, b = await _pair(cluster)
    async with a, b:
        await a.make_folder("Club")
        ns = await a.share("Club", nb)
        assert await status_of(b.unshare("Club", na)) is grpc.StatusCode.PERMISSION_DENIED
        assert await status_of(a.unshare("Club", na)) is grpc.StatusCode.FAILED_PRECONDITION
        assert await status_of(a.share("Club", na)) is grpc.StatusCode.INVALID_ARGUMENT
        assert await status_of(a.share("Club", "nobody-like-this")) is grpc.StatusCode.NOT_FOUND
        await b.unshare("", nb, namespace_id=ns)
        assert [n.mount_path for n in await b.namespaces()] == [""]
        assert [m.name for m in await a.members("Club")] == [na]
        # Sharing with B again mounts it again.
        await a.share("", nb, namespace_id=ns)
        assert {n.mount_path for n in await b.namespaces()} == {"", "Club"}
