"""Deletes, moves, restores, history, conflicts, batches, idempotency and the journal, on the
real cluster (metanode over PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from client import ChangeOp, Client, ConflictError, Cursor
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tests.integration.helpers import new_user
from tests.integration.meta_util import error_of, get_bytes, journal, md, put_bytes, status_of

pytestmark = pytest.mark.cluster


async def _client(cluster) -> Client:  # type: ignore[no-untyped-def]
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    return await Client.connect(cluster.meta_address, token=token)


async def test_delete_is_a_revision_and_restore_brings_it_back(cluster, tmp_path: Path) -> None:
    async with await _client(cluster) as c:
        v1 = await put_bytes(c, tmp_path, "notes/a.txt", b"first")
        v2 = await put_bytes(c, tmp_path, "notes/a.txt", b"second")
        gone = await c.delete("notes/a.txt", parent_revision=v2.entry.revision)
        assert gone.deleted and gone.file_id == v1.entry.file_id
        assert await status_of(c.stat("notes/a.txt")) is grpc.StatusCode.NOT_FOUND
        assert [e.name for e in await c.list("notes")] == []
        history = await c.history("notes/a.txt")
        assert [e.revision for e in history] == [
            gone.revision,
            v2.entry.revision,
            v1.entry.revision,
        ]
        assert [e.deleted for e in history] == [True, False, False]
        # An old revision stays readable by id, even while the file is deleted.
        assert await get_bytes(c, tmp_path, "notes/a.txt", revision=v1.entry.revision) == b"first"

        back = await c.restore("notes/a.txt", v1.entry.revision)
        assert back.file_id == v1.entry.file_id and not back.deleted
        assert back.content_hash == v1.entry.content_hash
        assert await get_bytes(c, tmp_path, "notes/a.txt") == b"first"
        assert len(await c.history("notes/a.txt")) == 4
        # A deletion itself cannot be restored; an unknown revision is NOT_FOUND.
        assert (
            await status_of(c.restore("notes/a.txt", gone.revision))
            is grpc.StatusCode.FAILED_PRECONDITION
        )
        assert (
            await status_of(c.restore("notes/a.txt", str(uuid.uuid4())))
            is grpc.StatusCode.NOT_FOUND
        )


async def test_deleting_a_folder_deletes_its_contents_and_each_can_come_back(
    cluster, tmp_path: Path
) -> None:
    async with await _client(cluster) as c:
        v = await put_bytes(c, tmp_path, "proj/src/main.py", b"print(1)")
        await put_bytes(c, tmp_path, "proj/README", b"hi")
        before = (await c.list_changes(Cursor(c.root_namespace_id, 0)))[1].seq
        await c.delete("proj")
        records = await journal(c, c.root_namespace_id, before)
        assert [r.op for r in records] == [ChangeOp.DELETE] * 4
        paths = [r.entry.path for r in records]
        assert paths[-1] == "proj" and paths.index("proj/src/main.py") < paths.index(
            "proj/src"
        )  # deepest first
        assert await c.list("") == []
        # Restoring a file inside the deleted folder brings its folders back.
        back = await c.restore("proj/src/main.py", v.entry.revision)
        assert back.file_id == v.entry.file_id
        assert [e.name for e in await c.list("proj")] == ["src"]
        assert await get_bytes(c, tmp_path, "proj/src/main.py") == b"print(1)"


async def test_moves_keep_the_file_id_and_history_follows(cluster, tmp_path: Path) -> None:
    async with await _client(cluster) as c:
        v = await put_bytes(c, tmp_path, "a/report.txt", b"data")
        head = (await c.list_changes(Cursor(c.root_namespace_id, 0)))[1].seq
        moved = await c.move("a/report.txt", "b/c/Report final.txt")
        assert moved.file_id == v.entry.file_id and moved.content_hash == v.entry.content_hash
        assert await status_of(c.stat("a/report.txt")) is grpc.StatusCode.NOT_FOUND
        assert await get_bytes(c, tmp_path, "b/c/report FINAL.txt") == b"data"
        history = await c.history("b/c/Report final.txt")
        assert [e.path for e in history] == ["b/c/Report final.txt", "a/report.txt"]
        records = await journal(c, c.root_namespace_id, head)
        assert [r.op for r in records][-1] is ChangeOp.MOVE
        assert (
            records[-1].entry.path == "b/c/Report final.txt"
            and records[-1].old_path == "a/report.txt"
        )

        # A folder move is one change: only the folder's row moves, its contents follow.
        head = records[-1].seq
        folder = await c.move("b", "archive/b")
        records = await journal(c, c.root_namespace_id, head)
        assert len(records) == 2  # "archive" created, then the one MOVE
        assert records[-1].op is ChangeOp.MOVE and records[-1].old_path == "b"
        assert folder.path == "archive/b"
        assert (await c.stat("archive/b/c/Report final.txt")).file_id == v.entry.file_id
        # Case-only rename.
        renamed = await c.move("archive/b/c/Report final.txt", "archive/b/c/REPORT FINAL.txt")
        assert renamed.name == "REPORT FINAL.txt" and renamed.file_id == v.entry.file_id


async def test_bad_moves_change_nothing(cluster, tmp_path: Path) -> None:
    async with await _client(cluster) as c:
        v = await put_bytes(c, tmp_path, "x/one.txt", b"1")
        await put_bytes(c, tmp_path, "x/two.txt", b"2")
        head = (await c.list_changes(Cursor(c.root_namespace_id, 0)))[1].seq
        assert await status_of(c.move("x/one.txt", "x/TWO.txt")) is grpc.StatusCode.ALREADY_EXISTS
        assert await status_of(c.move("x", "x/y/z")) is grpc.StatusCode.INVALID_ARGUMENT
        assert await status_of(c.move("nope", "y")) is grpc.StatusCode.NOT_FOUND
        stale = c.move("x/one.txt", "y/one.txt", parent_revision=str(uuid.uuid4()))
        err = await error_of(stale)
        assert isinstance(err, ConflictError) and err.head_revision == v.entry.revision
        assert (await c.list_changes(Cursor(c.root_namespace_id, 0)))[1].seq == head


async def test_edit_against_delete_keeps_the_edit(cluster, tmp_path: Path) -> None:
    async with await _client(cluster) as c:
        base = await put_bytes(c, tmp_path, "f.txt", b"base")
        # Device A edits first; device B's delete from the same parent is refused.
        edit = await put_bytes(c, tmp_path, "f.txt", b"edited", parent_revision=base.entry.revision)
        err = await error_of(c.delete("f.txt", parent_revision=base.entry.revision))
        assert isinstance(err, ConflictError) and err.head_revision == edit.entry.revision
        assert await get_bytes(c, tmp_path, "f.txt") == b"edited"
        # Delete first; an edit from the old parent then wins and resurrects the same file.
        await c.delete("f.txt", parent_revision=edit.entry.revision)
        again = await put_bytes(
            c, tmp_path, "f.txt", b"edited twice", parent_revision=edit.entry.revision
        )
        assert again.entry.file_id == base.entry.file_id
        assert await get_bytes(c, tmp_path, "f.txt") == b"edited twice"


async def test_stale_parent_is_aborted_with_the_head(cluster, tmp_path: Path) -> None:
    async with await _client(cluster) as c:
        a = await put_bytes(c, tmp_path, "doc.txt", b"a")
        b = await put_bytes(c, tmp_path, "doc.txt", b"b", parent_revision=a.entry.revision)
        err = await error_of(
            put_bytes(c, tmp_path, "doc.txt", b"c", parent_revision=a.entry.revision)
        )
        assert isinstance(err, ConflictError) and err.head_revision == b.entry.revision
        # A new file over an existing one (no parent) is a conflict too: names are case-insensitive.
        err = await error_of(put_bytes(c, tmp_path, "DOC.TXT", b"d", parent_revision=""))
        assert isinstance(err, ConflictError) and err.head_revision == b.entry.revision


async def test_idempotency_keys_return_the_first_outcome(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        stub = meta_pb2_grpc.MetadataStub(ch)
        req = meta_pb2.CommitRequest(
            path="i.txt", blocklist=common_pb2.Blocklist(), device_id="dev1", operation_id="op-1"
        )
        first = await stub.Commit(req, metadata=md(token))
        again = await stub.Commit(req, metadata=md(token))
        assert again.entry.revision_id == first.entry.revision_id
        assert len(await c.history("i.txt")) == 1

        mv = meta_pb2.MoveRequest(
            from_path="i.txt", to_path="j.txt", device_id="dev1", operation_id="op-2"
        )
        m1 = await stub.Move(mv, metadata=md(token))
        m2 = await stub.Move(
            mv, metadata=md(token)
        )  # the retry does not fail on the missing source
        assert m1.entry.revision_id == m2.entry.revision_id
        de = meta_pb2.DeleteRequest(path="j.txt", device_id="dev1", operation_id="op-3")
        d1 = await stub.Delete(de, metadata=md(token))
        d2 = await stub.Delete(de, metadata=md(token))
        assert d1.entry.revision_id == d2.entry.revision_id
        mk = meta_pb2.MakeFolderRequest(path="new", device_id="dev1", operation_id="op-4")
        assert (await stub.MakeFolder(mk, metadata=md(token))).entry.revision_id == (
            await stub.MakeFolder(mk, metadata=md(token))
        ).entry.revision_id
        records = await journal(c, c.root_namespace_id)
        assert [r.op for r in records] == [
            ChangeOp.UPSERT,
            ChangeOp.MOVE,
            ChangeOp.DELETE,
            ChangeOp.UPSERT,
        ]
        # A key reused for another kind of operation is refused.
        reuse = meta_pb2.DeleteRequest(path="new", device_id="dev1", operation_id="op-1")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Delete(reuse, metadata=md(token))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_commit_batch_has_one_result_per_entry(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        existing = await put_bytes(c, tmp_path, "batch/taken.txt", b"x")
        stub = meta_pb2_grpc.MetadataStub(ch)
        commits = [
            meta_pb2.CommitRequest(path=f"batch/f{i}.txt", blocklist=common_pb2.Blocklist())
            for i in range(50)
        ]
        commits.insert(
            10, meta_pb2.CommitRequest(path="batch/TAKEN.txt", blocklist=common_pb2.Blocklist())
        )
        commits.insert(
            20, meta_pb2.CommitRequest(path="batch/bad\x00name", blocklist=common_pb2.Blocklist())
        )
        resp = await stub.CommitBatch(
            meta_pb2.CommitBatchRequest(commits=commits), metadata=md(token)
        )
        codes = [r.code for r in resp.results]
        assert (
            codes[10] == grpc.StatusCode.ABORTED.value[0]
            and resp.results[10].head_revision == existing.entry.revision
        )
        assert codes[20] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert codes.count(0) == 50
        assert len(await c.list("batch")) == 51
        seqs = [r.entry.seq for r in resp.results if r.code == 0]
        assert seqs == sorted(seqs) and len(set(seqs)) == 50


async def test_journal_is_gap_free_and_a_pruned_cursor_gets_resync(cluster, tmp_path: Path) -> None:
    async with (
        await _client(cluster) as c,
        await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin,
    ):
        for i in range(5):
            await put_bytes(c, tmp_path, f"j/{i}", b"x")
        records = await journal(c, c.root_namespace_id)
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        page, cursor, more, _ = await c.list_changes(Cursor(c.root_namespace_id, 0), limit=2)
        assert [r.seq for r in page] == [1, 2] and more and cursor.seq == 2
        head = records[-1].seq
        stats = await admin.run_gc(journal_retention_seconds=0, namespace_id=c.root_namespace_id)
        assert stats.journal_pruned == head
        changes, cursor, more, resync = await c.list_changes(Cursor(c.root_namespace_id, 0))
        assert resync and changes == [] and cursor.seq == head
        await put_bytes(c, tmp_path, "j/after", b"y")
        changes, cursor, _, resync = await c.list_changes(Cursor(c.root_namespace_id, head))
        assert not resync and [r.seq for r in changes] == [head + 1]
        assert [n.oldest_seq for n in await c.namespaces()] == [head + 1]
