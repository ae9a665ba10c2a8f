"""Moving file contents for the daemon: chunked uploads that resume, downloads that reuse disk.

Uploads stream the file once: each batch of chunks is checked with NeedChunks, chunks with a
receipt kept from an earlier (interrupted) attempt are not sent again, the rest go to their
block nodes (several batches in flight), and every receipt is saved in SQLite as it arrives.
Nothing is visible to other devices before the single Commit at the end.

Downloads take every chunk they can from files already on disk (by hash, verified), fetch only
the rest, write a temporary file beside the target and rename it into place, unless the target
changed meanwhile (the user's write wins; the indexer sees it).

Every file is opened and written through ``SafeFS``: never through a symlinked parent, and the
temporary name is short whatever the final name is.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from client import Client, Commit, CommitOutcome, Entry, OpenedFile, StoredChunk
from syncd.localdb import LocalDB
from syncd.safefs import SafeFS, SkipPath
from tessera.chunking import Chunk, iter_chunks

if TYPE_CHECKING:
    from syncd.progress import Progress

BATCH_CHUNKS = 16
IN_FLIGHT = 3
EMPTY_CONTENT_HASH = hashlib.sha256(b"").digest()


class FileChanging(Exception):
    """The file changed while it was read: upload it once it settles."""


class TargetChanged(Exception):
    """The local file changed while its new version downloaded: the local write wins."""


@dataclass
class Prepared:
    """A file read and its chunks stored: ready to commit."""

    refs: list[tuple[int, bytes, int]]  # (offset, hash, size)
    receipts: list[bytes]  # receipts of chunks stored for this file (opaque, from the SDK)
    size: int
    mtime_ns: int
    inode: int
    sent_chunks: int
    sent_bytes: int

    @property
    def content_hash(self) -> bytes:
        """SHA-256 over the chunk hashes, as the metanode computes it."""
        return hashlib.sha256(b"".join(h for _, h, _ in self.refs)).digest()


def _take(chunks: Iterator[Chunk], n: int) -> list[Chunk]:
    out: list[Chunk] = []
    for c in chunks:
        out.append(c)
        if len(out) >= n:
            break
    return out


class Transfer:
    """Uploads and downloads for one daemon."""

    def __init__(
        self,
        client: Client,
        db: LocalDB,
        root: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.db = db
        self.root = root
        self.fs = SafeFS(root)
        self._on_bytes = on_bytes or (lambda _n: None)
        self._progress = progress  # per-file progress of large transfers (status)

    # -- upload --------------------------------------------------------------------------
    async def prepare(self, rel: str) -> Prepared:
        """Chunk a file and make sure the cluster holds every chunk (with receipts as needed).

        Raises:
            FileChanging: the file changed while it was read.
            FileNotFoundError: it is gone.
            UnsafePath: it or a parent folder is a symlink (nothing is read through one).
        """
        refs: list[tuple[int, bytes, int]] = []
        receipts: dict[bytes, bytes] = {}
        sent = sent_bytes = 0
        in_flight: set[asyncio.Task[None]] = set()

        async def store(batch: list[Chunk]) -> None:
            nonlocal sent, sent_bytes
            missing = await self.client.need_chunks([c.hash for c in batch])
            kept = self.db.receipts(list(missing))
            receipts.update(kept)
            todo = list(
                {c.hash: c for c in batch if c.hash in missing and c.hash not in kept}.values()
            )
            if self._progress is not None:
                self._progress.advance(
                    rel, "up", sum(c.size for c in batch if c.hash not in {t.hash for t in todo})
                )
            if not todo:
                return
            got = await self.client.store_chunks(todo)
            self._save(got)
            receipts.update((r.hash, r.receipt) for r in got)
            n, b = len(todo), sum(c.size for c in todo)
            sent += n
            sent_bytes += b
            self.db.bump("chunks_sent", n)
            self.db.bump("bytes_sent", b)
            self._on_bytes(b)
            if self._progress is not None:
                self._progress.advance(rel, "up", b)

        try:
            with self.fs.open_read(rel) as f:
                st1 = os.fstat(f.fileno())
                if self._progress is not None:
                    self._progress.begin(rel, "up", st1.st_size)
                chunks = iter_chunks(f)
                while True:
                    batch = await asyncio.to_thread(_take, chunks, BATCH_CHUNKS)
                    if not batch:
                        break
                    refs.extend((c.offset, c.hash, c.size) for c in batch)
                    while len(in_flight) >= IN_FLIGHT:
                        done, in_flight = await asyncio.wait(
                            in_flight, return_when=asyncio.FIRST_COMPLETED
                        )
                        for t in done:
                            t.result()
                    in_flight.add(asyncio.create_task(store(batch)))
                if in_flight:
                    for t in await asyncio.gather(*in_flight, return_exceptions=True):
                        if isinstance(t, BaseException):
                            raise t
                    in_flight = set()
        finally:
            for t in in_flight:
                t.cancel()
            if self._progress is not None:
                self._progress.end(rel, "up")
        _unchanged_since(rel, st1, self.fs.lstat(rel))
        wanted = [receipts[h] for h in dict.fromkeys(h for _, h, _ in refs) if h in receipts]
        return Prepared(refs, wanted, st1.st_size, st1.st_mtime_ns, st1.st_ino, sent, sent_bytes)

    async def prepare_many(self, rels: list[str]) -> list[Prepared | BaseException]:
        """``prepare`` for many small files with one NeedChunks and one upload round for all."""

        def read_all() -> list[tuple[os.stat_result, list[Chunk]] | BaseException]:
            out: list[tuple[os.stat_result, list[Chunk]] | BaseException] = []
            for rel in rels:
                try:
                    with self.fs.open_read(rel) as f:
                        st1 = os.fstat(f.fileno())
                        chunks = list(iter_chunks(f))
                    _unchanged_since(rel, st1, self.fs.lstat(rel))
                    out.append((st1, chunks))
                except (OSError, FileChanging, SkipPath) as e:
                    out.append(e)
            return out

        read = await asyncio.to_thread(read_all)
        unique: dict[bytes, Chunk] = {}
        for item in read:
            if not isinstance(item, BaseException):
                unique.update((c.hash, c) for c in item[1])
        missing = await self.client.need_chunks(list(unique)) if unique else set()
        kept = self.db.receipts(list(missing))
        todo = [unique[h] for h in missing if h not in kept]
        if todo:
            got = await self.client.store_chunks(todo)
            self._save(got)
            kept.update((r.hash, r.receipt) for r in got)
            n, b = len(todo), sum(c.size for c in todo)
            self.db.bump("chunks_sent", n)
            self.db.bump("bytes_sent", b)
            self._on_bytes(b)
        results: list[Prepared | BaseException] = []
        for item in read:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            st, chunks = item
            refs = [(c.offset, c.hash, c.size) for c in chunks]
            receipts = [kept[h] for h in dict.fromkeys(c.hash for c in chunks) if h in kept]
            results.append(Prepared(refs, receipts, st.st_size, st.st_mtime_ns, st.st_ino, 0, 0))
        return results

    def _save(self, got: list[StoredChunk]) -> None:
        """Keep receipts as they arrive: an interrupted upload does not send those chunks again."""
        self.db.save_receipts([(r.hash, r.size, r.receipt, r.expires_at) for r in got])

    @staticmethod
    def commit_request(
        p: Prepared, ns_id: str, ns_path: str, parent_revision: str, op_id: str
    ) -> Commit:
        """The Commit for a prepared file."""
        return Commit(
            path=ns_path,
            chunks=[(h, s) for _, h, s in p.refs],
            receipts=p.receipts,
            namespace_id=ns_id,
            parent_revision=parent_revision,
            mtime_ns=p.mtime_ns,
            operation_id=op_id,
        )

    async def commit(self, c: Commit) -> Entry:
        """Commit one file version (ConflictError when the parent is stale)."""
        entry = await self.client.commit(c)
        self.db.drop_receipts([h for h, _ in c.chunks])  # spent: the user holds those chunks
        return entry

    async def commit_batch(self, commits: list[Commit]) -> list[CommitOutcome]:
        """Commit many small files in one round trip; one outcome each."""
        out = await self.client.commit_batch(commits)
        self.db.drop_receipts([h for c in commits for h, _ in c.chunks])
        return out

    # -- download ------------------------------------------------------------------------
    def _local_chunk(self, chunk_hash: bytes) -> bytes | None:
        for rel, offset, size in self.db.find_chunk(chunk_hash):
            try:
                with self.fs.open_read(rel) as f:
                    f.seek(offset)
                    data = f.read(size)
            except (OSError, SkipPath):
                continue
            if len(data) == size and hashlib.sha256(data).digest() == chunk_hash:
                return data
        return None

    async def download(
        self,
        ns_id: str,
        ns_path: str,
        rel: str,
        expect: tuple[int, int, int] | None,
        make_dirs: Callable[[str], None],
    ) -> tuple[Entry, os.stat_result, list[tuple[int, bytes, int]], int]:
        """Fetch the head of a remote file into ``rel``.

        Args:
            ns_id: the namespace.
            ns_path: the path inside it.
            rel: the local relative path.
            expect: (size, mtime_ns, inode) the target must still have at rename time, or None
                if it must still be absent.
            make_dirs: creates (and records) the missing parent folders of a relative folder.

        Returns:
            (entry, stat of the new file, its chunks as (offset, hash, size), bytes fetched).

        Raises:
            TargetChanged: the local file changed meanwhile (nothing was replaced).
            SkipPath: the target cannot be written here (a symlinked or file parent, a name
                this filesystem cannot hold); nothing was written.
        """
        remote_file: OpenedFile = await self.client.open_file(ns_path, namespace_id=ns_id)
        entry = remote_file.entry
        layout: list[tuple[int, bytes, int]] = []
        offsets: dict[bytes, list[int]] = {}
        pos = 0
        for h, size in remote_file.chunks:
            layout.append((pos, h, size))
            offsets.setdefault(h, []).append(pos)
            pos += size
        make_dirs(rel.rpartition("/")[0])
        fetched = 0
        if self._progress is not None:
            self._progress.begin(rel, "down", pos)
        try:
            with self.fs.create_temp(rel) as tmp:
                os.ftruncate(tmp.fd, pos)
                remote: list[bytes] = []
                for h, where in offsets.items():
                    data = await asyncio.to_thread(self._local_chunk, h)
                    if data is None:
                        remote.append(h)
                        continue
                    for off in where:
                        os.pwrite(tmp.fd, data, off)
                    if self._progress is not None:
                        self._progress.advance(rel, "down", len(data) * len(where))
                if remote:
                    async for h, data in self.client.fetch_chunks(remote_file, remote):
                        for off in offsets[h]:
                            await asyncio.to_thread(os.pwrite, tmp.fd, data, off)
                        fetched += len(data)
                        self._on_bytes(len(data))
                        if self._progress is not None:
                            self._progress.advance(rel, "down", len(data) * len(offsets[h]))
                st = await asyncio.to_thread(
                    tmp.commit, lambda current: _check_target(rel, current, expect)
                )
        finally:
            if self._progress is not None:
                self._progress.end(rel, "down")
        self.db.bump("bytes_fetched", fetched)
        return entry, st, layout, fetched


def _check_target(rel: str, st: os.stat_result | None, expect: tuple[int, int, int] | None) -> None:
    """Raise TargetChanged unless the target is still as the download expected it."""
    if st is None:
        if expect is None:
            return
        raise TargetChanged(rel)
    if expect is None or (st.st_size, st.st_mtime_ns, st.st_ino) != expect:
        raise TargetChanged(rel)


def _unchanged_since(rel: str, before: os.stat_result, after: os.stat_result) -> None:
    """Raise FileChanging if a file read between two stats changed meanwhile."""
    if (before.st_size, before.st_mtime_ns, before.st_ino) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ino,
    ):
        raise FileChanging(rel)
