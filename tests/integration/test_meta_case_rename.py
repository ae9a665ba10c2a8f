"""The metanode takes a case-only rename as a move of the same file (issue 9, failure 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import ChangeOp, Client
from tests.integration.helpers import new_user
from tests.integration.meta_util import journal, put_bytes

pytestmark = pytest.mark.cluster


async def test_case_only_renames_of_a_file_and_a_folder_are_moves(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        f = await put_bytes(c, tmp_path, "sub/a.txt", b"x")
        folder = await c.stat("sub")
        after = f.entry.seq

        moved = await c.move("sub/a.txt", "sub/A.txt")
        assert (moved.file_id, moved.path, moved.content_hash) == (
            f.entry.file_id,
            "sub/A.txt",
            f.entry.content_hash,
        )
        renamed = await c.move("sub", "SUB")
        assert (renamed.file_id, renamed.path) == (folder.file_id, "SUB")
        assert [e.path for e in await c.list("SUB")] == ["SUB/A.txt"]
        changes = await journal(c, f.entry.namespace_id, after)
        assert [(ch.op, ch.old_path, ch.entry.path) for ch in changes] == [
            (ChangeOp.MOVE, "sub/a.txt", "sub/A.txt"),
            (ChangeOp.MOVE, "sub", "SUB"),
        ]
        # NFC and NFD spell one name: a "rename" between them changes nothing.
        await put_bytes(c, tmp_path, "caf\u00e9", b"y")
        same = await c.move("caf\u00e9", "cafe\u0301")
        assert same.path == "caf\u00e9" and len(await c.history("caf\u00e9")) == 1
