"""Pipelines of the SDK: uploads that overlap their steps, downloads of many files at once.

``upload_chunks`` reads and hashes the next batch of a file while the batches before it are
being checked (``NeedChunks``) and stored (``PutChunks``): up to ``UPLOAD_DEPTH`` batches are in
flight, so the disk, the CPU and the network work at the same time.

``file_versions`` asks for the blocklists of many files in one ``GetFiles`` call (one database
transaction, one read ticket), and ``get_files`` downloads them with one ``GetChunks`` stream
per block node for all their chunks together; each file is then written to a temporary file,
fsynced and renamed into place, as ``get_file`` does for one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from client._errors import _BY_CODE, ConflictError, SyncError
from client._types import Entry
from tessera.chunking import Chunk, iter_chunks
from tessera.pb import common_pb2, meta_pb2

if TYPE_CHECKING:
    from client._client import Client
    from client._delta import DeltaBase

UPLOAD_DEPTH = 3  # batches of one upload in flight at once
GET_FILES_PAGE = 500  # files per GetFiles call (the server takes up to 1,000)


def _take(chunks: Any, n: int) -> list[Chunk]:
    out: list[Chunk] = []
    for c in chunks:
        out.append(c)
        if len(out) >= n:
            break
    return out


class UploadHooks:
    """What ``put_file(resume=…)`` uses: receipts already held (by chunk hash), callbacks for
    receipts of newly sent chunks and for progress, and a way to stop early. Subclass and
    override what you need."""

    def __init__(self, known: dict[bytes, common_pb2.Receipt] | None = None) -> None:
        self.known = dict(known or {})

    def sent(self, receipts: list[common_pb2.Receipt]) -> None:
        """Chunks just stored on the cluster (save the receipts to resume later)."""

    def progressed(self, nbytes: int) -> None:
        """``nbytes`` more of the file were chunked, checked and sent where needed."""

    def stopping(self) -> bool:
        """True to read no further: the batches in flight finish, then ``stopped`` is called."""
        return False

    def stopped(self) -> None:
        """Called once the upload stopped early, every batch in flight stored: raise here."""
        raise asyncio.CancelledError


async def upload_chunks(
    client: Client,
    local: Path,
    resume: UploadHooks | None = None,
    *,
    base: DeltaBase | None = None,
) -> tuple[list[common_pb2.ChunkRef], list[common_pb2.Receipt]]:
    """Chunk a file and store the chunks the cluster lacks; (blocklist, receipts). With
    ``resume``: chunks it holds receipts for are not sent again, and it hears of each batch.
    With ``base`` (the file's previous version) changed chunks may go as deltas against it.

    Raises:
        SyncError: A batch failed (the first failure; the batches after it are cancelled).
    """
    blocks = await client._block_pool()
    refs: list[common_pb2.ChunkRef] = []
    window = asyncio.Semaphore(UPLOAD_DEPTH)
    tasks: list[asyncio.Task[list[common_pb2.Receipt]]] = []
    stopping = False

    async def send(batch: list[Chunk]) -> list[common_pb2.Receipt]:
        try:
            missing = await client.need_chunks([c.hash for c in batch])
            reused = {}
            if resume is not None:  # sent by an interrupted attempt: its receipt will do
                reused = {h: resume.known[h] for h in missing if h in resume.known}
                missing -= reused.keys()
            todo = list({c.hash: c for c in batch if c.hash in missing}.values())
            sent: list[common_pb2.Receipt] = []
            if todo:  # BlockPool.put as before when there is no base (tests patch it)
                sent = await (blocks.put(todo, base=base) if base else blocks.put(todo))
            if resume is not None:
                if sent:
                    resume.sent(sent)
                resume.progressed(sum(c.size for c in batch))
            return [*reused.values(), *sent]
        finally:
            window.release()

    try:
        with local.open("rb") as f:
            chunks = iter_chunks(f)
            while True:
                await window.acquire()
                if any(t.done() and not t.cancelled() and t.exception() for t in tasks):
                    break  # a batch failed: stop reading; its error is raised below
                if resume is not None and resume.stopping():
                    stopping = True
                    break
                batch = await asyncio.to_thread(_take, chunks, client.config.batch_chunks)
                if not batch:
                    break
                refs.extend(common_pb2.ChunkRef(hash=c.hash, size=c.size) for c in batch)
                tasks.append(asyncio.create_task(send(batch)))
        receipts = [r for t in tasks for r in await t]
        if stopping and resume is not None:
            resume.stopped()
    finally:
        for t in tasks:
            t.cancel()
    return refs, receipts


@dataclass(frozen=True)
class RemoteFile:
    """A file version to download: its entry and blocklist ((hash, size) in file order)."""

    entry: Entry
    chunks: list[tuple[bytes, int]]

    @property
    def size(self) -> int:
        return sum(size for _, size in self.chunks)


def _error(code: int, message: str) -> SyncError:
    status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
    if status is grpc.StatusCode.ABORTED:
        return ConflictError(message, "")
    return _BY_CODE.get(status, SyncError)(message, status)


async def file_versions(
    client: Client, remotes: Sequence[str], *, namespace_id: str = ""
) -> tuple[list[RemoteFile | SyncError], common_pb2.ReadTicket]:
    """Blocklists of up to 1,000 files (heads) in one call, and one ticket for all their chunks.

    Each result is the file, or the error for that file alone (``NotFoundError``, ...).
    """
    req = meta_pb2.GetFilesRequest(
        files=[meta_pb2.GetFileRequest(namespace_id=namespace_id, path=p) for p in remotes]
    )
    resp = await client._meta_call("GetFiles", req)
    out: list[RemoteFile | SyncError] = []
    for r in resp.results:
        if r.code:
            out.append(_error(r.code, r.message))
            continue
        chunks = [(bytes(c.hash), c.size) for c in r.blocklist.chunks]
        out.append(RemoteFile(Entry.from_pb(r.entry), chunks))
    return out, resp.ticket


async def get_files(
    client: Client, items: Sequence[tuple[str, Path]], *, namespace_id: str = ""
) -> list[Entry | SyncError]:
    """Download many files (remote path, local path): per file its entry or its error.

    Pages of ``GET_FILES_PAGE`` files: one ``GetFiles`` call, then every chunk of the page over
    one ``GetChunks`` stream per block node, each chunk verified and written to every file and
    offset that holds it; each file is fsynced and renamed into place.

    Raises:
        SyncError: The cluster failed as a whole (the files of the failed page are not written).
    """
    out: list[Entry | SyncError] = []
    for start in range(0, len(items), GET_FILES_PAGE):
        page = items[start : start + GET_FILES_PAGE]
        found, ticket = await file_versions(client, [r for r, _ in page], namespace_id=namespace_id)
        out.extend(await _download_page(client, page, found, ticket))
    return out


async def _download_page(
    client: Client,
    page: Sequence[tuple[str, Path]],
    found: list[RemoteFile | SyncError],
    ticket: common_pb2.ReadTicket,
) -> list[Entry | SyncError]:
    where: dict[bytes, list[tuple[int, int]]] = {}  # hash -> (fd, offset) it goes to
    temps: list[tuple[int, str, Path]] = []
    try:
        for (_, local), f in zip(page, found, strict=True):
            if isinstance(f, SyncError):
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tessera-", suffix=".tessera-part", dir=local.parent)
            temps.append((fd, tmp, local))
            os.ftruncate(fd, f.size)
            pos = 0
            for h, size in f.chunks:
                where.setdefault(h, []).append((fd, pos))
                pos += size
        if where:
            blocks = await client._block_pool()
            async for h, data in blocks.get(ticket, list(where)):
                await asyncio.to_thread(_write_all, data, where[h])
        await asyncio.to_thread(_finish, temps)
    finally:
        for fd, tmp, _ in temps:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
    return [f if isinstance(f, SyncError) else f.entry for f in found]


def _write_all(data: bytes, places: list[tuple[int, int]]) -> None:
    for fd, off in places:
        os.pwrite(fd, data, off)


def _finish(temps: list[tuple[int, str, Path]]) -> None:
    """fsync every file, then rename each into place; what is left in ``temps`` is not done."""
    for fd, _, _ in temps:
        os.fsync(fd)
    while temps:
        fd, tmp, local = temps[0]
        os.close(fd)
        del temps[0]
        try:
            os.replace(tmp, local)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise
