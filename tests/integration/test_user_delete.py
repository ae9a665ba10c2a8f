"""Deleting a user: shares end both ways, their files get delete revisions, the name is free."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from client import AuthenticationError, Client, Cursor, NotFoundError

pytestmark = pytest.mark.cluster


async def test_delete_user_ends_shares_and_deletes_files(cluster, tmp_path: Path) -> None:
    pw = "pw-" + uuid.uuid4().hex
    gone, keep = f"g{uuid.uuid4().hex[:10]}", f"k{uuid.uuid4().hex[:10]}"
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        await admin.create_user(gone, pw)
        await admin.create_user(keep, pw)
        tg = (await Client.login(cluster.meta_address, gone, pw)).token
        tk = (await Client.login(cluster.meta_address, keep, pw)).token
        f = tmp_path / "f.txt"
        f.write_text("x")
        async with (
            await Client.connect(cluster.meta_address, token=tg) as g,
            await Client.connect(cluster.meta_address, token=tk) as k,
        ):
            await g.put_file(f, "Mine/a.txt")
            await g.put_file(f, "Out/b.txt")
            await g.share("Out", keep)  # a share the deleted user made
            await k.put_file(f, "In/c.txt")
            await k.share("In", gone)  # a share made to the deleted user
            assert {n.mount_path for n in await k.namespaces()} == {"", "In", "Out"}

            done = await admin.delete_user(gone)
            assert done.shares_ended == 2
            # Root: Mine, Mine/a.txt, the Out and In mount points; the Out namespace: b.txt.
            assert done.files_deleted == 5

            assert {n.mount_path for n in await k.namespaces()} == {"", "In"}
            assert [m.name for m in await k.members("In")] == [keep]
            with pytest.raises(NotFoundError):
                await k.stat("Out/b.txt")
            assert (await k.stat("In/c.txt")).size == 1  # the other user's data is untouched
        with pytest.raises(AuthenticationError):
            await Client.connect(cluster.meta_address, token=tg)
        assert gone not in [u.name for u in await admin.users()]
        await admin.create_user(gone, pw)  # the name is free again
        async with await Client.connect(
            cluster.meta_address, token=(await Client.login(cluster.meta_address, gone, pw)).token
        ) as again:
            assert await again.list("") == []
            changes, _, _, _ = await again.list_changes(Cursor(again.root_namespace_id, 0))
            assert changes == []
