"""Point-in-time restore of files and whole folders, folder history and the trash, on the real
cluster (metanode over PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from client import Client
from tests.integration.helpers import new_user, run_cli
from tests.integration.meta_util import error_of, get_bytes, put_bytes, status_of

pytestmark = pytest.mark.cluster


async def _names(c: Client, path: str) -> list[str]:
    return sorted(e.name for e in await c.list(path))


async def test_folder_restore_at_a_time_undoes_edits_deletes_adds_and_moves(
    cluster, tmp_path: Path
) -> None:
    name, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        a1 = await put_bytes(c, tmp_path, "docs/a.txt", b"a one")
        await put_bytes(c, tmp_path, "docs/b.txt", b"b one")
        await put_bytes(c, tmp_path, "docs/sub/c.txt", b"c one")
        last = await put_bytes(c, tmp_path, "docs/old-name.txt", b"moved later")
        outside = await put_bytes(c, tmp_path, "elsewhere.txt", b"not in docs")
        at = max(last.entry.modified_at_us, outside.entry.modified_at_us)

        a2 = await put_bytes(c, tmp_path, "docs/a.txt", b"a two")  # an edit
        await c.delete("docs/b.txt")  # a delete
        await put_bytes(c, tmp_path, "docs/new.txt", b"added later")  # an add
        await c.delete("docs/sub")  # a folder delete
        await c.move("docs/old-name.txt", "docs/new-name.txt")  # a rename
        await c.make_folder("docs/later-folder")
        await put_bytes(c, tmp_path, "elsewhere.txt", b"outside changes stay")

        done = await c.restore_at("docs", at)
        assert done.entry.is_folder and done.entry.path == "docs"
        assert await _names(c, "docs") == ["a.txt", "b.txt", "old-name.txt", "sub"]
        assert await _names(c, "docs/sub") == ["c.txt"]
        assert await get_bytes(c, tmp_path, "docs/a.txt") == b"a one"
        assert await get_bytes(c, tmp_path, "docs/b.txt") == b"b one"
        assert await get_bytes(c, tmp_path, "docs/sub/c.txt") == b"c one"
        assert await get_bytes(c, tmp_path, "docs/old-name.txt") == b"moved later"
        assert await get_bytes(c, tmp_path, "elsewhere.txt") == b"outside changes stay"
        # a.txt back, b.txt, sub, sub/c.txt, old-name.txt back; new.txt and later-folder gone.
        assert done.changed == 7

        # Nothing after the time is lost: those revisions stay in history, restorable.
        history = await c.history("docs/a.txt")
        assert [e.revision for e in history][1:3] == [a2.entry.revision, a1.entry.revision]
        assert history[0].content_hash == a1.entry.content_hash
        assert await get_bytes(c, tmp_path, "docs/a.txt", revision=a2.entry.revision) == b"a two"
        # The folder's history shows the changes under it, newest first.
        folder = await c.history("docs")
        paths = [e.path for e in folder]
        assert "docs/new.txt" in paths and "docs/new-name.txt" in paths
        assert "elsewhere.txt" not in paths
        assert [e.modified_at_us for e in folder] == sorted(
            (e.modified_at_us for e in folder), reverse=True
        )
        # What the restore removed is in the trash, with who removed it.
        items, _ = await c.trash("docs")
        trashed = {t.entry.path: t for t in items}
        assert {"docs/new.txt", "docs/later-folder"} <= set(trashed)
        assert trashed["docs/new.txt"].deleted_by == name

        # Restoring the same time again changes nothing.
        again = await c.restore_at("docs", at)
        assert again.changed == 0


async def test_file_restore_at_a_time_and_refusals(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        v1 = await put_bytes(c, tmp_path, "x.txt", b"one")
        await put_bytes(c, tmp_path, "x.txt", b"two")
        done = await c.restore_at("x.txt", v1.entry.modified_at_us)
        assert done.changed == 1 and not done.entry.is_folder
        assert await get_bytes(c, tmp_path, "x.txt") == b"one"
        # Before it existed: nothing to restore; a live folder needs a time.
        before = v1.entry.modified_at_us - 1
        assert await status_of(c.restore_at("x.txt", before)) is grpc.StatusCode.FAILED_PRECONDITION
        await c.make_folder("live")
        assert await status_of(c.restore_at("live")) is grpc.StatusCode.FAILED_PRECONDITION
        now = v1.entry.modified_at_us
        assert await status_of(c.restore_at("nope", now)) is grpc.StatusCode.NOT_FOUND
        # Beyond the revision retention the past is not known: refused, nothing written.
        old = await error_of(c.restore_at("x.txt", 1))
        assert old.status is grpc.StatusCode.FAILED_PRECONDITION and "kept for" in old.message


async def test_deleted_folder_comes_back_with_its_files_from_the_trash(
    cluster, tmp_path: Path
) -> None:
    name, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        await put_bytes(c, tmp_path, "docs/a.txt", b"a")
        await put_bytes(c, tmp_path, "docs/deep/b.txt", b"b")
        await put_bytes(c, tmp_path, "docs/early.txt", b"deleted before the folder")
        await c.delete("docs/early.txt")
        await put_bytes(c, tmp_path, "keep.txt", b"k")
        gone = await c.delete("docs")

        items, retention = await c.trash()
        assert retention > 0
        top = [t for t in items if t.entry.path == "docs"]
        assert len(top) == 1 and top[0].entry.is_folder and top[0].deleted_by == name
        assert top[0].files_inside == 3  # a.txt, deep/b.txt, and early.txt deleted before
        assert top[0].entry.file_id == gone.file_id
        assert top[0].restorable_until_us == gone.modified_at_us + retention * 1_000_000
        assert not [t for t in items if t.entry.path.startswith("docs/")]  # shown once, at the top
        inside, _ = await c.trash("docs")
        assert {t.entry.path for t in inside} == {"docs/a.txt", "docs/deep", "docs/early.txt"}

        done = await c.restore_at("docs", file_id=top[0].entry.file_id)
        assert done.entry.path == "docs" and not done.entry.deleted
        assert await _names(c, "docs") == ["a.txt", "deep"]  # early.txt was deleted before
        assert await get_bytes(c, tmp_path, "docs/deep/b.txt") == b"b"
        assert [t.entry.path for t in (await c.trash())[0]] == ["docs/early.txt"]


async def test_cli_restore_at_trash_and_folder_history(cluster, tmp_path: Path) -> None:
    name, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        v = await put_bytes(c, tmp_path, "notes/a.txt", b"before")
        await put_bytes(c, tmp_path, "notes/a.txt", b"after")
        await put_bytes(c, tmp_path, "notes/b.txt", b"added")
    home = tmp_path / "home"

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return run_cli(cluster.meta_address, *args, token=token, home=home)

    at = f"@{v.entry.modified_at_us / 1e6:.6f}"
    out = cli("restore", "notes", "--at", at)
    assert out.returncode == 0, out.stderr
    assert "restored folder notes as of" in out.stdout and "(2 changes)" in out.stdout
    out = cli("trash")
    assert out.returncode == 0, out.stderr
    assert "notes/b.txt" in out.stdout and name in out.stdout and "kept" in out.stdout
    out = cli("restore", "notes/b.txt")
    assert out.returncode == 0 and "as it was before it was deleted" in out.stdout
    out = cli("history", "notes")
    assert out.returncode == 0 and "notes/b.txt" in out.stdout and "notes/a.txt" in out.stdout
    bad = cli("restore", "notes", "--at", "yesterday-ish")
    assert bad.returncode == 1 and bad.stderr.startswith("tessera: cannot read the time")
    assert "Traceback" not in bad.stderr
