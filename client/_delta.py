"""Deltas in the SDK (issue 12): send a changed chunk as a delta, build a new version of a file
from the old one on disk.

Upload: ``DeltaBase`` is the previous version of a file (its blocklist and read ticket, from
``Client.delta_base``). For each chunk the cluster lacks, the chunk at the same place in the
previous version is the base: the client asks a block node for its signature (which comes with
a ticket narrowed to that chunk), encodes the delta and sends it instead of the chunk when it is
smaller (``BlockPool.put(chunks, base=...)``). Anything missing or refused (no previous version,
base collected, old node) and the chunk goes whole: the result is the same.

Download: ``write_version`` fills a temporary file with a new version, starting from the old
file: the whole old file is cloned when the filesystem can (FICLONE: btrfs, XFS), chunks found in
the old file are copied in the kernel (``copy_file_range``, itself a reflink where supported),
and only the other chunks travel, each as a delta against the old chunk at its place when the
node can make one (the signature is computed here from the local bytes, so no base access is
needed). Every chunk of the result is checked against its SHA-256 before the caller renames it.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import fcntl
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from client._errors import SyncError
from tessera import delta
from tessera.chunking import MAX_CHUNK, Chunk, iter_chunks
from tessera.pb import block_pb2, common_pb2

if TYPE_CHECKING:
    from client._blocks import BlockPool

log = logging.getLogger(__name__)

MIN_DELTA = 16 * 1024  # smaller chunks go whole (a signature round trip is not worth it)
MAX_DELTA_FRACTION = 0.95  # a delta is sent only when under this fraction of the chunk
SIGNATURE_CALLS = 4  # signature requests in flight at once
MAX_BASES = 64  # delta bases per download (base bytes are held in memory)
MAX_PUT_BASES = 8  # old chunks (concatenated) a new chunk is encoded against ...
BASE_BUDGET = 3 * MAX_CHUNK  # ... totalling at most this (as blocknode/deltas.py allows)
FICLONE = 0x40049409  # linux/fs.h _IOW(0x94, 9, int)
PAGE = 4096  # over a clone, a chunk is written page by page, only where it differs


@dataclass
class DeltaBase:
    """The previous version of a file: where each chunk was, and a ticket to read them."""

    offsets: list[int]
    hashes: list[bytes]
    ticket: common_pb2.ReadTicket
    narrow: dict[bytes, common_pb2.ReadTicket] = field(default_factory=dict)
    # Asks the metanode for a ticket naming only some of the version's chunks (much smaller on
    # the wire than ``ticket``, which names them all); None: narrow through GetSignature.
    narrower: Callable[[list[bytes]], Awaitable[common_pb2.ReadTicket | None]] | None = None
    end: int = 0  # the version's size

    @classmethod
    def from_blocklist(
        cls, blocklist: common_pb2.Blocklist, ticket: common_pb2.ReadTicket
    ) -> DeltaBase:
        offsets, hashes, pos = [], [], 0
        for c in blocklist.chunks:
            offsets.append(pos)
            hashes.append(bytes(c.hash))
            pos += c.size
        base = cls(offsets, hashes, ticket)
        base.end = pos
        return base

    def bases_for(self, offset: int, size: int) -> list[bytes]:
        """The previous version's chunks at [offset, offset + size) (see ``pick_bases``)."""
        sizes = [b - a for a, b in zip(self.offsets, [*self.offsets[1:], self.end], strict=True)]
        picks = pick_bases(self.offsets, sizes, offset, size)
        return list(dict.fromkeys(self.hashes[i] for i in picks))


def pick_bases(offsets: Sequence[int], sizes: Sequence[int], offset: int, size: int) -> list[int]:
    """Indexes of the old chunks overlapping [offset, offset + size) (the last one when past
    the end), in file order: the two ends first (an edit leaves old bytes there), then the
    middle ones while ``MAX_PUT_BASES`` and ``BASE_BUDGET`` allow."""
    if not offsets:
        return []
    first = max(0, bisect.bisect_right(offsets, offset) - 1)
    last = max(first, bisect.bisect_left(offsets, offset + size) - 1)
    picks: list[int] = []
    total = 0
    for i in dict.fromkeys([first, last, *range(first + 1, last)]):
        if len(picks) < MAX_PUT_BASES and total + sizes[i] <= BASE_BUDGET:
            picks.append(i)
            total += sizes[i]
    return sorted(picks)


async def prepare_deltas(
    pool: BlockPool, chunks: Sequence[Chunk], base: DeltaBase
) -> dict[bytes, block_pb2.PutChunkRequest]:
    """Delta put requests for those chunks where a delta against ``base`` pays (by hash).

    Each chunk is encoded against the old chunks at its place, concatenated (an overwrite
    spanning a boundary has old bytes on both sides). The first signature call narrows the
    file's ticket to every base needed, unless the metanode gave a narrow ticket already.
    """
    wanted: dict[bytes, list[bytes]] = {}
    for c in chunks:
        if c.size >= MIN_DELTA:
            cands = [b for b in base.bases_for(c.offset, c.size) if b != c.hash]
            if cands:
                wanted[c.hash] = cands
    if not wanted:
        return {}
    all_bases = list(dict.fromkeys(b for cands in wanted.values() for b in cands))
    todo = [b for b in all_bases if b not in base.narrow]
    sigs: dict[bytes, delta.Signature | None] = {}
    if todo and base.narrower is not None:
        narrow = await base.narrower(todo)
        if narrow is not None:
            base.narrow.update((bytes(h), narrow) for h in narrow.hashes)
    todo = [b for b in todo if b not in base.narrow]
    if todo:  # the first signature call narrows the whole file's ticket
        sigs[todo[0]] = await _signature(pool, base, todo[0], narrow_to=todo[1:])
    gate = asyncio.Semaphore(SIGNATURE_CALLS)

    async def fetch(h: bytes) -> None:
        async with gate:
            sigs[h] = await _signature(pool, base, h)

    await asyncio.gather(*(fetch(h) for h in all_bases if h not in sigs))
    out: dict[bytes, block_pb2.PutChunkRequest] = {}

    async def one(c: Chunk) -> None:
        # The base is the concatenation of the old chunks at this one's place.
        names = [b for b in wanted[c.hash] if sigs.get(b) is not None and b in base.narrow]
        if not names or any(b not in base.narrow[names[0]].hashes for b in names):
            return
        sig = delta.Signature(
            tuple(n for b in names for n in sigs[b].sizes),  # type: ignore[union-attr]
            tuple(d for b in names for d in sigs[b].digests),  # type: ignore[union-attr]
        )
        d = await asyncio.to_thread(delta.encode, c.data, sig)
        log.debug(
            "chunk %s: %d bytes, delta %d against %d bases",
            c.hash.hex()[:16],
            c.size,
            len(d),
            len(names),
        )
        if len(d) < MAX_DELTA_FRACTION * c.size:
            out[c.hash] = block_pb2.PutChunkRequest(
                hash=c.hash,
                base_hash=names[0],
                more_bases=names[1:],
                delta=d,
                base_ticket=base.narrow[names[0]],
            )

    await asyncio.gather(*(one(c) for c in chunks if c.hash in wanted))
    return out


async def _signature(
    pool: BlockPool, base: DeltaBase, base_hash: bytes, narrow_to: Sequence[bytes] = ()
) -> delta.Signature | None:
    """The base's signature from a node that has it (None when none can give it); keeps the
    narrow ticket that comes with it for every hash it names."""
    ticket = base.narrow.get(base_hash, base.ticket)
    req = block_pb2.GetSignatureRequest(ticket=ticket, hash=base_hash, narrow_to=narrow_to)
    for node in pool.candidates(base_hash)[:2]:
        pool.wire_sent += req.ByteSize() + 5
        try:
            msg = await pool.stub(node).GetSignature(req, metadata=pool.metadata, timeout=30)
        except grpc.aio.AioRpcError as e:
            log.debug("no signature of %s from %s: %s", base_hash.hex()[:16], node, e.code())
            continue
        pool.wire_received += msg.ByteSize() + 5
        sig = delta.Signature(tuple(msg.sizes), tuple(bytes(d) for d in msg.strong))
        try:
            sig.check(MAX_CHUNK)
        except delta.DeltaError:
            return None
        narrow = msg.base_ticket if msg.base_ticket.signature else ticket
        for h in narrow.hashes:
            base.narrow.setdefault(bytes(h), narrow)
        base.narrow.setdefault(base_hash, narrow)
        return sig
    return None


# -- building a version from the old file ---------------------------------------------------


def chunk_layout(fd: int) -> list[tuple[int, bytes, int]]:
    """(offset, hash, size) of each chunk of an open file (what ``write_version`` reuses)."""
    with os.fdopen(os.dup(fd), "rb") as f:
        return [(c.offset, c.hash, c.size) for c in iter_chunks(f)]


@dataclass
class PatchStats:
    """What building one version cost."""

    cloned: bool = False  # the old file was reflinked whole
    kept_bytes: int = 0  # bytes already in place after the clone
    copied_bytes: int = 0  # bytes copied from the old file (in the kernel)
    fetched_chunks: int = 0
    written_bytes: int = 0  # bytes written from the network (over a clone: changed pages)
    delta_chunks: int = 0  # chunks that came as deltas


def _copy_range(src: int, dst: int, src_off: int, dst_off: int, size: int) -> None:
    """Copy in the kernel (a reflink where it can be), or through memory where it cannot."""
    left = size
    while left:
        try:
            n = os.copy_file_range(src, dst, left, src_off, dst_off)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = 0
        if n <= 0:  # unsupported here, or the source got shorter: plain copy
            data = os.pread(src, left, src_off)
            if len(data) != left:
                raise OSError(errno.EIO, "the old file changed while it was read")
            os.pwrite(dst, data, dst_off)
            return
        left -= n
        src_off += n
        dst_off += n


def _clone(src: int, dst: int) -> bool:
    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError:
        return False
    return True


def _hash_at(fd: int, offset: int, size: int) -> bytes:
    h = hashlib.sha256()
    pos, end = offset, offset + size
    while pos < end:
        block = os.pread(fd, min(1 << 20, end - pos), pos)
        if not block:
            break
        h.update(block)
        pos += len(block)
    return h.digest()


def _write_changed(fd: int, rfd: int, data: bytes, pos: int, cloned: bool) -> int:
    """Write a chunk at ``pos``; over a clone, only the pages that differ (a reflinked file
    keeps sharing the rest). Returns the bytes written."""
    if not cloned:
        os.pwrite(fd, data, pos)
        return len(data)
    written = 0
    old = os.pread(rfd, len(data), pos)
    for i in range(0, len(data), PAGE):
        piece = data[i : i + PAGE]
        if old[i : i + PAGE] != piece:
            os.pwrite(fd, piece, pos + i)
            written += len(piece)
    return written


def _plan_local(
    out_fd: int,
    new: Sequence[tuple[bytes, int]],
    old_fd: int | None,
    old_layout: Sequence[tuple[int, bytes, int]],
    stats: PatchStats,
) -> list[tuple[int, bytes, int]]:
    """Put every chunk the old file has in place; return the (offset, hash, size) to fetch."""
    old_at = {h: off for off, h, _ in old_layout}
    same_place = {(off, h) for off, h, _ in old_layout}
    stats.cloned = old_fd is not None and _clone(old_fd, out_fd)
    total = sum(size for _, size in new)
    os.ftruncate(out_fd, total)
    missing: list[tuple[int, bytes, int]] = []
    pos = 0
    for h, size in new:
        if stats.cloned and (pos, h) in same_place:
            stats.kept_bytes += size
        elif old_fd is not None and h in old_at:
            _copy_range(old_fd, out_fd, old_at[h], pos, size)
            stats.copied_bytes += size
        else:
            missing.append((pos, h, size))
        pos += size
    return missing


def _bases(
    old_fd: int | None,
    old_layout: Sequence[tuple[int, bytes, int]],
    missing: Sequence[tuple[int, bytes, int]],
) -> dict[bytes, bytes]:
    """For each chunk to fetch, the old chunks at its place (read, checked, concatenated) as
    its delta base."""
    if old_fd is None or not old_layout:
        return {}
    offsets = [off for off, _, _ in old_layout]
    out: dict[bytes, bytes] = {}
    for pos, h, size in missing:
        if len(out) >= MAX_BASES or size < MIN_DELTA or h in out:
            continue
        parts = []
        sizes = [n for _, _, n in old_layout]
        for i in pick_bases(offsets, sizes, pos, size):
            off, base_hash, base_size = old_layout[i]
            data = os.pread(old_fd, base_size, off)
            if hashlib.sha256(data).digest() == base_hash:
                parts.append(data)
        if parts:
            out[h] = b"".join(parts)
    return out


async def write_version(
    pool: BlockPool,
    ticket: common_pb2.ReadTicket,
    new: Sequence[tuple[bytes, int]],
    out_fd: int,
    old_fd: int | None = None,
    old_layout: Sequence[tuple[int, bytes, int]] = (),
    local_chunk: Callable[[bytes], bytes | None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> PatchStats:
    """Fill ``out_fd`` (an empty temporary file; write-only is fine) with the version whose
    blocklist is ``new`` ((hash, size) in order), reusing ``old_fd``'s chunks (``old_layout``:
    (offset, hash, size) of the old file, e.g. from the daemon's index; wrong entries cost a
    fetch, never bad bytes) and, for chunks the old file lacks, ``local_chunk(hash)`` (bytes
    found elsewhere on this device, or None). Only the rest is fetched, as deltas against the
    old chunks at their place where possible. Every chunk is verified and the file fsynced;
    the caller renames it into place. ``progress`` hears of the bytes in place as they land.

    Raises:
        SyncError: a chunk could not be fetched or verified.
        OSError: the temporary file could not be written.
    """
    stats = PatchStats()
    rfd = _readable(out_fd)
    try:
        missing = await asyncio.to_thread(_plan_local, out_fd, new, old_fd, old_layout, stats)
        if local_chunk is not None:
            missing = await asyncio.to_thread(_from_elsewhere, out_fd, missing, local_chunk, stats)
        if progress is not None:
            progress(sum(size for _, size in new) - sum(size for _, _, size in missing))
        bases = await asyncio.to_thread(_bases, old_fd, old_layout, missing)
        await _fetch(pool, ticket, missing, bases, out_fd, rfd, stats, progress)
        # Verify every chunk not fetched (the old file may have changed since its layout was
        # read); a bad one is fetched whole instead.
        pos, bad = 0, []
        fetched = {h for _, h, _ in missing}
        for h, size in new:
            if h not in fetched and await asyncio.to_thread(_hash_at, rfd, pos, size) != h:
                bad.append((pos, h, size))
            pos += size
        if bad:
            log.info("%d chunks taken locally did not match; fetching them", len(bad))
            await _fetch(pool, ticket, bad, {}, out_fd, rfd, stats, None)
        await asyncio.to_thread(os.fsync, out_fd)
    finally:
        if rfd != out_fd:
            os.close(rfd)
    return stats


def _readable(fd: int) -> int:
    """``fd`` if it can be read, else a read-only descriptor of the same file."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_WRONLY:
        return fd
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def _from_elsewhere(
    out_fd: int,
    missing: list[tuple[int, bytes, int]],
    local_chunk: Callable[[bytes], bytes | None],
    stats: PatchStats,
) -> list[tuple[int, bytes, int]]:
    """Write the chunks ``local_chunk`` has (checked later with the rest); the others remain."""
    found: dict[bytes, bytes | None] = {}
    rest = []
    for pos, h, size in missing:
        if h not in found:
            found[h] = local_chunk(h)
        data = found[h]
        if data is None or len(data) != size:
            rest.append((pos, h, size))
            continue
        os.pwrite(out_fd, data, pos)
        stats.copied_bytes += size
    return rest


async def _fetch(
    pool: BlockPool,
    ticket: common_pb2.ReadTicket,
    missing: Sequence[tuple[int, bytes, int]],
    bases: dict[bytes, bytes],
    out_fd: int,
    rfd: int,
    stats: PatchStats,
    progress: Callable[[int], None] | None,
) -> None:
    if not missing:
        return
    where: dict[bytes, list[int]] = {}
    for pos, h, _ in missing:
        where.setdefault(h, []).append(pos)
    deltas0, got = pool.delta_chunks_received, 0
    stream = pool.get(ticket, list(where), bases=bases) if bases else pool.get(ticket, list(where))
    async for h, data in stream:
        for pos in where[h]:
            stats.written_bytes += await asyncio.to_thread(
                _write_changed, out_fd, rfd, data, pos, stats.cloned
            )
        got += 1
        if progress is not None:
            progress(len(data) * len(where[h]))
    stats.fetched_chunks += got
    stats.delta_chunks += pool.delta_chunks_received - deltas0
    if got < len(where):
        raise SyncError(f"{len(where) - got} chunks could not be fetched")
