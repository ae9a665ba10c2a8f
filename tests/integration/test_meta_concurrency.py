"""Twenty devices commit the same path from the same parent at once: exactly one wins."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from client import Client, Cursor
from tessera.chunking import Chunk, chunk_hash
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tests.integration.helpers import new_user
from tests.integration.meta_util import get_bytes, journal, md, put_bytes

pytestmark = pytest.mark.cluster

COMMITTERS = 20


async def test_twenty_concurrent_committers_one_winner(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        base = await put_bytes(c, tmp_path, "shared/hot.txt", b"base")
        head_before = (await journal(c, c.root_namespace_id))[-1].seq
        # Each device uploads its own new content first (so every loser would also claim chunks).
        contents = [os.urandom(2000) + bytes([i]) for i in range(COMMITTERS)]
        chunks = [Chunk(0, chunk_hash(d), d) for d in contents]
        receipts = await (await c._block_pool()).put(chunks)
        by_hash = {bytes(r.hash): r for r in receipts}
        requests = [
            meta_pb2.CommitRequest(
                path="shared/hot.txt",
                parent_revision=base.entry.revision,
                blocklist=common_pb2.Blocklist(
                    chunks=[common_pb2.ChunkRef(hash=ch.hash, size=ch.size)]
                ),
                receipts=[by_hash[ch.hash]],
                device_id=f"device-{i}",
                operation_id=f"op-{i}",
            )
            for i, ch in enumerate(chunks)
        ]
        channels = [grpc.aio.insecure_channel(cluster.meta_address) for _ in range(COMMITTERS)]
        try:
            start = asyncio.Event()

            async def commit(i: int) -> tuple[str, str]:
                await start.wait()
                try:
                    resp = await meta_pb2_grpc.MetadataStub(channels[i]).Commit(
                        requests[i], metadata=md(token), timeout=60
                    )
                    return "ok", resp.entry.revision_id
                except grpc.aio.AioRpcError as e:
                    head = dict(e.trailing_metadata() or ()).get("tessera-head-revision", "")
                    return e.code().name, str(head)

            tasks = [asyncio.create_task(commit(i)) for i in range(COMMITTERS)]
            await asyncio.sleep(0.2)
            start.set()
            results = await asyncio.gather(*tasks)
        finally:
            for ch in channels:
                await ch.close()

        winners = [i for i, (status, _) in enumerate(results) if status == "ok"]
        assert len(winners) == 1, results
        winner_rev = results[winners[0]][1]
        losers = [r for i, r in enumerate(results) if i not in winners]
        assert all(status == "ABORTED" and head == winner_rev for status, head in losers), losers

        # Nothing half-written: two revisions, one more journal record, the winner's bytes,
        # and no loser owns the chunk it tried to commit.
        history = await c.history("shared/hot.txt")
        assert [e.revision for e in history] == [winner_rev, base.entry.revision]
        records = await journal(c, c.root_namespace_id)
        assert [r.seq for r in records] == list(range(1, head_before + 2))
        assert await get_bytes(c, tmp_path, "shared/hot.txt") == contents[winners[0]]
        missing = await c.need_chunks([ch.hash for ch in chunks])
        assert missing == {ch.hash for i, ch in enumerate(chunks) if i != winners[0]}
        changes, cursor, _, _ = await c.list_changes(Cursor(c.root_namespace_id, head_before))
        assert len(changes) == 1 and changes[0].entry.revision == winner_rev
