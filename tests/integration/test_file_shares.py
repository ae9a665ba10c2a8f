"""Sharing single files with the same roles and rules as folders, on the real cluster: a
viewer reads, an editor also writes and restores, only the owner adds members, the owner
removes anyone and a member may leave; nothing else of the owner's tree is reachable."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from client import Client, LinkVisitor
from tests.integration.helpers import new_user, run_cli
from tests.integration.meta_util import get_bytes, put_bytes, status_of

pytestmark = pytest.mark.cluster


async def test_a_file_shared_with_a_viewer_and_an_editor(cluster, tmp_path: Path) -> None:
    owner_name, owner_tok = await new_user(cluster.meta_address, cluster.admin_token)
    viewer_name, viewer_tok = await new_user(cluster.meta_address, cluster.admin_token)
    editor_name, editor_tok = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=owner_tok) as o,
        await Client.connect(cluster.meta_address, token=viewer_tok) as v,
        await Client.connect(cluster.meta_address, token=editor_tok) as ed,
    ):
        first = await put_bytes(o, tmp_path, "private/plan.txt", b"v1")
        await put_bytes(o, tmp_path, "private/secret.txt", b"not shared")
        share = await o.share("private/plan.txt", viewer_name, role="viewer")
        assert await o.share("private/plan.txt", editor_name, role="editor") == share

        # Members find it in their shared list (not in their synced tree) and read it.
        [seen] = await v.shared_files()
        assert (seen.share_id, seen.name, seen.role, seen.owner) == (
            share,
            "plan.txt",
            "viewer",
            owner_name,
        )
        assert seen.path == "plan.txt"  # the owner's folders are not shown to members
        assert [e.name for e in await v.list("")] == []
        assert await get_bytes(v, tmp_path, "plan.txt", namespace_id=share) == b"v1"
        assert len(await v.history("plan.txt", namespace_id=share)) == 1
        # A viewer cannot write; an editor can, and the owner sees it in place.
        assert (
            await status_of(put_bytes(v, tmp_path, "plan.txt", b"x", namespace_id=share))
            is grpc.StatusCode.PERMISSION_DENIED
        )
        await put_bytes(ed, tmp_path, "plan.txt", b"v2 by the editor", namespace_id=share)
        assert await get_bytes(o, tmp_path, "private/plan.txt") == b"v2 by the editor"
        await ed.restore("plan.txt", first.entry.revision, namespace_id=share)
        # An editor may give the file out by link, as in a shared folder.
        link, token = await ed.create_link("plan.txt", namespace_id=share)
        visitor = LinkVisitor(cluster.meta_address)
        opened = await visitor.open(token, download=True)
        assert b"".join([b async for b in visitor.read(opened)]) == b"v1"
        assert await get_bytes(o, tmp_path, "private/plan.txt") == b"v1"
        # The share reaches that one file: no other name, no other path, no folder listing.
        for c in (v, ed):
            for path in ("secret.txt", "private/secret.txt", "../secret.txt"):
                assert await status_of(c.stat(path, namespace_id=share)) in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            assert (
                await status_of(put_bytes(c, tmp_path, "other.txt", b"x", namespace_id=share))
                is grpc.StatusCode.NOT_FOUND
            )
            assert await status_of(c.list("", namespace_id=o.root_namespace_id)) is (
                grpc.StatusCode.NOT_FOUND
            )
        # Only the owner adds members; a member cannot share it on.
        assert await status_of(ed.share("plan.txt", viewer_name, namespace_id=share)) in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
        )
        [mine] = await o.shared_files()
        assert mine.role == "owner" and mine.path == "private/plan.txt"
        assert sorted(mine.members) == sorted([(viewer_name, "viewer"), (editor_name, "editor")])
        # The share follows a rename; a member leaves; the owner removes the other.
        await o.move("private/plan.txt", "private/plan-final.txt")
        assert [f.name for f in await v.shared_files()] == ["plan-final.txt"]
        assert await get_bytes(v, tmp_path, "plan-final.txt", namespace_id=share) == b"v1"
        await v.unshare("", viewer_name, namespace_id=share)
        gone = v.stat("plan-final.txt", namespace_id=share)
        assert await status_of(gone) is grpc.StatusCode.NOT_FOUND
        assert await v.shared_files() == []
        assert (
            await status_of(ed.unshare("", owner_name, namespace_id=share))
            is grpc.StatusCode.PERMISSION_DENIED
        )
        await o.unshare("private/plan-final.txt", editor_name)
        gone = ed.stat("plan-final.txt", namespace_id=share)
        assert await status_of(gone) is grpc.StatusCode.NOT_FOUND
        assert await status_of(visitor.open(token)) is grpc.StatusCode.NOT_FOUND  # link died too
        await visitor.close()
        # Sharing with yourself is refused, as for folders.
        assert (
            await status_of(o.share("private/secret.txt", owner_name))
            is grpc.StatusCode.INVALID_ARGUMENT
        )


async def test_cli_share_a_file_and_list_it(cluster, tmp_path: Path) -> None:
    _, owner = await new_user(cluster.meta_address, cluster.admin_token)
    member_name, member = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=owner) as o:
        await put_bytes(o, tmp_path, "docs/a.txt", b"hello")
    out = run_cli(cluster.meta_address, "share", "docs/a.txt", member_name, "--role", "viewer",
                  token=owner, home=tmp_path / "h1")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "shared file" in out.stdout
    listed = run_cli(cluster.meta_address, "shared", token=member, home=tmp_path / "h2")
    assert listed.returncode == 0 and "a.txt" in listed.stdout and "viewer" in listed.stdout
