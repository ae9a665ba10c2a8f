"""The block node's chunk store: append-only segment files, indexed by RocksDB.

The layout of Haystack, Magic Pocket and SeaweedFS: chunk bytes are appended to segment files
(``segments/00000001.seg``, ...; a new one once the active one passes ``segment_size``) with
``os.pwritev`` and made durable with ``os.fdatasync``. Both release the GIL, so the store lives
in the node's own process and a chunk is never copied through a pipe or into a database.

Every mutation is a record in the active segment, synced before the call returns:

    magic "TS" | kind (1) | hash (32) | length (4, big-endian) | crc32 (4) | payload

``P`` puts a chunk (payload: its bytes), ``D`` deletes one, ``H`` adds a hinted-handoff record
(payload: the target node) and ``X`` removes one. The crc32 covers the header fields, and the
payload of the small records; a chunk's payload is checked by its SHA-256. Both are checked when
a segment is replayed, not on every read (readers re-hash what they serve).

RocksDB (``rocksdict``, directory ``index/``) is only the index:

- ``default``: hash -> segment (4) | offset of the record (8) | length (4);
- ``hints``: ``target NUL hash`` -> b"", and ``hint_index``: ``hash target`` -> b"";
- ``replay``: segment -> the offset up to which its records are in the index.

Index writes go to RocksDB's WAL unsynced (so they survive a killed process, which is what the
page cache gives), in the same batch as the new ``replay`` offset. After a crash of the machine
the index may lag the segments: opening the store replays every segment from its ``replay``
offset, and cuts a torn record off the end. A segment is the record of truth; the index can
always be caught up from it.

Deleted and overwritten records leave garbage. ``compact`` rewrites the live records of the
sealed segment with the most garbage into the active segment, syncs the index, and removes the
old file; ``AsyncChunkStore`` runs it after deletes, one segment at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from blocknode.store import (
    ChunkCorrupt,
    StoreError,
    _hint_index_key,
    _hint_key,
    hint_records,
    is_hinted,
    scan_keys,
)

log = logging.getLogger(__name__)

SEGMENT_SIZE = 256 * 1024 * 1024
SEGMENTS_DIR = "segments"
INDEX_DIR = "index"
_HEADER = struct.Struct(">2sc32sII")  # magic, kind, hash, length, crc32
HEADER_LEN = _HEADER.size  # 43
_MAGIC = b"TS"
_PUT, _DEL, _HINT, _UNHINT = b"P", b"D", b"H", b"X"
_LOC = struct.Struct(">IQI")  # segment, offset of the record, payload length
_IOV_MAX = 512  # buffers per pwritev call (Linux allows 1024)
_HINTS_CF, _HINT_INDEX_CF, _REPLAY_CF = "hints", "hint_index", "replay"
COMPACT_GARBAGE = 0.5
_COMPACT_STEP = (
    16 * 1024 * 1024
)  # bytes of live records copied per append during compaction  # a sealed segment is compacted once this share of it is garbage


def _record(kind: bytes, chunk_hash: bytes, payload: bytes | memoryview) -> bytes:
    head = _HEADER.pack(_MAGIC, kind, chunk_hash, len(payload), 0)[:-4]
    return head + _crc(kind, head, payload).to_bytes(4, "big")


def _crc(kind: bytes, head: bytes, payload: bytes | memoryview) -> int:
    """crc32 of the header fields, and of the payload unless it is a chunk (its hash checks it)."""
    return zlib.crc32(head) if kind == _PUT else zlib.crc32(payload, zlib.crc32(head))


def _intact(kind: bytes, head: bytes, chunk_hash: bytes, payload: bytes, crc: int) -> bool:
    if _crc(kind, head, payload) != crc:
        return False
    return kind != _PUT or hashlib.sha256(payload).digest() == chunk_hash


def _seg_name(seg: int) -> str:
    return f"{seg:08d}.seg"


class SegmentChunkStore:
    """A BlockStore of append-only segment files with a RocksDB index (see the module doc).

    Args:
        path: The store's directory (created if missing).
        segment_size: Size after which the active segment is sealed and a new one started.

    Raises:
        StoreError: The index cannot be opened (locked by another process, corrupt) or a segment
            cannot be read.
    """

    def __init__(self, path: str | Path, *, segment_size: int = SEGMENT_SIZE) -> None:
        self.path = Path(path)
        self.segment_size = segment_size
        self._seg_dir = self.path / SEGMENTS_DIR
        try:
            self._seg_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot open chunk store at {self.path}: {e}") from e
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        families = {}
        for name in (_HINTS_CF, _HINT_INDEX_CF, _REPLAY_CF):
            cf = Options(raw_mode=True)
            families[name] = cf
        try:
            self._db = Rdict(str(self.path / INDEX_DIR), opts, column_families=families)
        except Exception as e:  # rocksdict raises plain Exception
            raise StoreError(f"cannot open chunk store at {self.path}: {e}") from e
        self._hints = self._db.get_column_family(_HINTS_CF)
        self._hint_index = self._db.get_column_family(_HINT_INDEX_CF)
        self._replay = self._db.get_column_family(_REPLAY_CF)
        self._hints_cf = self._db.get_column_family_handle(_HINTS_CF)
        self._hint_index_cf = self._db.get_column_family_handle(_HINT_INDEX_CF)
        self._replay_cf = self._db.get_column_family_handle(_REPLAY_CF)
        self._fast = WriteOptions()  # into the WAL, not synced: the segments are synced
        self._synced = WriteOptions()
        self._synced.sync = True
        self._lock = threading.Lock()  # mutations
        self._fds: dict[int, int] = {}
        self._sizes: dict[int, int] = {}  # segment -> bytes written
        self._live: dict[int, int] = {}  # segment -> bytes of records the index points at
        self._closed = False
        try:
            self._open_segments()
        except OSError as e:
            self._close_all()
            raise StoreError(f"cannot open chunk store at {self.path}: {e}") from e
        self._count = 0
        for value in self._db.values():
            seg, _, length = _LOC.unpack(value)
            self._live[seg] = self._live.get(seg, 0) + HEADER_LEN + length
            self._count += 1
        self._hint_count = sum(1 for _ in self._hints.keys())

    # -- opening and replay ---------------------------------------------------------------------
    def _open_segments(self) -> None:
        segs = sorted(int(p.stem) for p in self._seg_dir.glob("*.seg") if p.stem.isdigit())
        for seg in segs:
            fd = os.open(self._seg_dir / _seg_name(seg), os.O_RDWR)
            self._fds[seg] = fd
            self._sizes[seg] = os.fstat(fd).st_size
            done = self._replay.get(seg.to_bytes(4, "big"))
            start = int.from_bytes(done, "big") if done is not None else 0
            if start < self._sizes[seg]:
                self._replay_segment(seg, start)
        if not segs:
            self._new_segment(1)
        self._active = max(self._fds)

    def _new_segment(self, seg: int) -> None:
        fd = os.open(self._seg_dir / _seg_name(seg), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        dir_fd = os.open(self._seg_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name is durable before a record in it is acked
        finally:
            os.close(dir_fd)
        self._fds[seg] = fd
        self._sizes[seg] = 0
        self._active = seg

    def _records(self, seg: int, start: int) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """(offset, kind, hash, payload) of each intact record from ``start``; stops at a bad one."""
        fd, size, at = self._fds[seg], self._sizes[seg], start
        while at + HEADER_LEN <= size:
            head = os.pread(fd, HEADER_LEN, at)
            magic, kind, chunk_hash, length, crc = _HEADER.unpack(head)
            if magic != _MAGIC or at + HEADER_LEN + length > size:
                return
            payload = os.pread(fd, length, at + HEADER_LEN)
            if len(payload) != length or not _intact(kind, head[:-4], chunk_hash, payload, crc):
                return
            yield at, kind, chunk_hash, payload
            at += HEADER_LEN + length

    def _replay_segment(self, seg: int, start: int) -> None:
        """Bring the index up to date with the records of ``seg`` from ``start``."""
        end, batch, n = start, WriteBatch(raw_mode=True), 0
        for at, kind, chunk_hash, payload in self._records(seg, start):
            self._index_record(batch, seg, at, kind, chunk_hash, payload)
            end, n = at + HEADER_LEN + len(payload), n + 1
        if end < self._sizes[seg]:
            log.warning(
                "segment %s: cutting %d bytes of torn records at offset %d",
                _seg_name(seg),
                self._sizes[seg] - end,
                end,
            )
            os.ftruncate(self._fds[seg], end)
            os.fsync(self._fds[seg])
            self._sizes[seg] = end
        batch.put(seg.to_bytes(4, "big"), end.to_bytes(8, "big"), self._replay_cf)
        self._db.write(batch, self._synced)
        if n:
            log.info("segment %s: replayed %d records into the index", _seg_name(seg), n)

    def _index_record(
        self, batch: WriteBatch, seg: int, at: int, kind: bytes, chunk_hash: bytes, payload: bytes
    ) -> None:
        """Apply one record to the index (replay only: counts are computed after)."""
        if kind == _PUT:
            batch.put(chunk_hash, _LOC.pack(seg, at, len(payload)))
        elif kind == _DEL:
            batch.delete(chunk_hash)
        elif kind in (_HINT, _UNHINT):
            target = payload.decode()
            key, index_key = _hint_key(target, chunk_hash), _hint_index_key(target, chunk_hash)
            if kind == _HINT:
                batch.put(key, b"", self._hints_cf)
                batch.put(index_key, b"", self._hint_index_cf)
            else:
                batch.delete(key, self._hints_cf)
                batch.delete(index_key, self._hint_index_cf)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("chunk store is closed")

    # -- reads ----------------------------------------------------------------------------------
    def location(self, chunk_hash: bytes) -> tuple[int, int, int] | None:
        """(segment, record offset, length) of a stored chunk, or None."""
        self._check_open()
        value = self._db.get(chunk_hash)
        return None if value is None else _LOC.unpack(value)

    def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's bytes as stored (not re-hashed), or None.

        Raises:
            ChunkCorrupt: The record is cut short or its header names another chunk.
        """
        loc = self.location(chunk_hash)
        if loc is None:
            return None
        seg, at, length = loc
        try:
            raw = os.pread(self._fds[seg], HEADER_LEN + length, at)
        except (OSError, KeyError) as e:
            if self._closed:
                raise StoreError("chunk store is closed") from e
            raise StoreError(f"chunk store read failed: {e}") from e
        if len(raw) != HEADER_LEN + length or raw[3:35] != chunk_hash:
            raise ChunkCorrupt(f"chunk {chunk_hash.hex()} is corrupt on disk ({_seg_name(seg)})")
        return raw[HEADER_LEN:]

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored (the index only)."""
        return self.location(chunk_hash) is not None

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)`` in byte order."""
        self._check_open()
        yield from scan_keys(self._db, start, end)

    def count(self) -> int:
        """How many chunks are stored."""
        return self._count

    def hint_count(self) -> int:
        """How many hint records are held."""
        return self._hint_count

    def segments(self) -> dict[int, tuple[int, int]]:
        """segment -> (bytes written, live bytes): what compaction looks at."""
        with self._lock:
            return {s: (self._sizes[s], self._live.get(s, 0)) for s in sorted(self._sizes)}

    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target, hash) hint records, all or for one target node."""
        self._check_open()
        yield from hint_records(self._hints, target)

    def _hinted(self, chunk_hash: bytes) -> bool:
        return is_hinted(self._hint_index, chunk_hash)

    # -- writes ---------------------------------------------------------------------------------
    def _append(self, records: list[tuple[bytes, bytes, bytes | memoryview]]) -> list[int]:
        """Append (kind, hash, payload) records to the active segment and fdatasync it.

        Returns the offset of each record, all in ``self._active``. Caller holds the lock.
        """
        if self._sizes[self._active] >= self.segment_size:
            self._new_segment(self._active + 1)
        seg, fd = self._active, self._fds[self._active]
        at, offsets, bufs = self._sizes[seg], [], []
        for kind, chunk_hash, payload in records:
            offsets.append(at)
            bufs.append(_record(kind, chunk_hash, payload))
            bufs.append(payload)
            at += HEADER_LEN + len(payload)
        pos = self._sizes[seg]
        try:
            for i in range(0, len(bufs), _IOV_MAX):
                part = bufs[i : i + _IOV_MAX]
                want = sum(len(b) for b in part)
                wrote = os.pwritev(fd, part, pos)
                if wrote != want:  # a short write (disk full): write the rest plainly
                    rest = b"".join(bytes(b) for b in part)[wrote:]
                    while rest:
                        n = os.pwrite(fd, rest, pos + wrote)
                        wrote, rest = wrote + n, rest[n:]
                pos += want
            os.fdatasync(fd)
        except OSError as e:
            os.ftruncate(fd, self._sizes[seg])  # nothing half-written stays behind
            raise StoreError(f"chunk store write failed: {e}") from e
        self._sizes[seg] = at
        return offsets

    def _commit_index(self, batch: WriteBatch, *, synced: bool = False) -> None:
        batch.put(
            self._active.to_bytes(4, "big"),
            self._sizes[self._active].to_bytes(8, "big"),
            self._replay_cf,
        )
        try:
            self._db.write(batch, self._synced if synced else self._fast)
        except Exception as e:  # rocksdict raises plain Exception
            raise StoreError(f"chunk store index write failed: {e}") from e

    def _unlink_live(self, chunk_hash: bytes) -> bool:
        """Account for the record the index points at going dead; whether there was one."""
        old = self._db.get(chunk_hash)
        if old is None:
            return False
        seg, _, length = _LOC.unpack(old)
        self._live[seg] = self._live.get(seg, 0) - HEADER_LEN - length
        return True

    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Store one chunk durably."""
        self.write([(chunk_hash, data)])

    def write(
        self, puts: Sequence[tuple[bytes, bytes]], hints: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Store chunks and hint records durably (one fdatasync); how many chunks were new."""
        self._check_open()
        wanted_hints = list(dict.fromkeys(hints))
        targets = [(_hint_key(t, h), t, h) for t, h in wanted_hints]  # validates targets
        latest = dict(puts)  # the last copy of a hash wins, as a batch would
        with self._lock:
            self._check_open()
            records: list[tuple[bytes, bytes, bytes | memoryview]] = [
                (_PUT, h, d) for h, d in latest.items()
            ]
            new_hints = [(k, t, h) for k, t, h in targets if self._hints.get(k) is None]
            records += [(_HINT, h, t.encode()) for _, t, h in new_hints]
            offsets = self._append(records)
            batch = WriteBatch(raw_mode=True)
            new = 0
            for (chunk_hash, data), at in zip(latest.items(), offsets, strict=False):
                if not self._unlink_live(chunk_hash):
                    new += 1
                batch.put(chunk_hash, _LOC.pack(self._active, at, len(data)))
                self._live[self._active] = self._live.get(self._active, 0) + HEADER_LEN + len(data)
            for key, target, chunk_hash in new_hints:
                batch.put(key, b"", self._hints_cf)
                batch.put(_hint_index_key(target, chunk_hash), b"", self._hint_index_cf)
            self._commit_index(batch)
            self._count += new
            self._hint_count += len(new_hints)
        return new

    def _delete_locked(self, hashes: list[bytes]) -> None:
        """Write D records for these stored chunks and drop them from the index."""
        self._append([(_DEL, h, b"") for h in hashes])
        batch = WriteBatch(raw_mode=True)
        for chunk_hash in hashes:
            self._unlink_live(chunk_hash)
            batch.delete(chunk_hash)
        self._commit_index(batch)
        self._count -= len(hashes)

    def delete(self, chunk_hash: bytes) -> bool:
        """Remove one chunk; True if it was there."""
        return self.delete_many([chunk_hash]) == 1

    def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks in one durable batch; how many were there."""
        self._check_open()
        with self._lock:
            present = [h for h in dict.fromkeys(hashes) if self._db.get(h) is not None]
            if present:
                self._delete_locked(present)
        return len(present)

    def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names, in one durable batch; which were deleted."""
        self._check_open()
        with self._lock:
            dropped = [
                h
                for h in dict.fromkeys(hashes)
                if self._db.get(h) is not None and not self._hinted(h)
            ]
            if dropped:
                self._delete_locked(dropped)
        return dropped

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint record."""
        self.finish_hints(target, [chunk_hash])

    def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget the hint records of ``target`` for these chunks; how many there were."""
        self._check_open()
        with self._lock:
            gone = [
                h
                for h in dict.fromkeys(hashes)
                if self._hints.get(_hint_key(target, h)) is not None
            ]
            if not gone:
                return 0
            self._append([(_UNHINT, h, target.encode()) for h in gone])
            batch = WriteBatch(raw_mode=True)
            for chunk_hash in gone:
                batch.delete(_hint_key(target, chunk_hash), self._hints_cf)
                batch.delete(_hint_index_key(target, chunk_hash), self._hint_index_cf)
            self._commit_index(batch)
            self._hint_count -= len(gone)
        return len(gone)

    # -- compaction -----------------------------------------------------------------------------
    def compactable(self, garbage: float = COMPACT_GARBAGE) -> int | None:
        """The sealed segment with the largest share of garbage above ``garbage``, or None."""
        best, best_share = None, garbage
        with self._lock:
            for seg, size in self._sizes.items():
                if seg == self._active or size == 0:
                    continue
                share = 1 - self._live.get(seg, 0) / size
                if share >= best_share:
                    best, best_share = seg, share
        return best

    def compact(self, seg: int) -> int:
        """Move the live records of sealed segment ``seg`` to the active one; remove ``seg``.

        Live chunks and the hint records still held are rewritten (synced), the index is pointed
        at the copies in one synced batch, and only then is the old file removed. Returns the
        bytes reclaimed.
        """
        self._check_open()
        with self._lock:
            if seg == self._active or seg not in self._fds:
                return 0
            batch = WriteBatch(raw_mode=True)
            part: list[tuple[bytes, bytes, bytes | memoryview]] = []
            moved = 0
            for at, kind, chunk_hash, payload in self._records(seg, 0):
                if kind == _PUT:
                    loc = self._db.get(chunk_hash)
                    if loc is not None and _LOC.unpack(loc)[:2] == (seg, at):
                        part.append((_PUT, chunk_hash, payload))
                        moved += HEADER_LEN + len(payload)
                elif kind == _HINT:
                    if self._hints.get(_hint_key(payload.decode(), chunk_hash)) is not None:
                        part.append((_HINT, chunk_hash, payload))
                if sum(len(p) for _, _, p in part) >= _COMPACT_STEP:
                    self._move(part, batch)
                    part = []
            self._move(part, batch)
            self._commit_index(batch, synced=True)  # before the old file goes
            reclaimed = self._sizes.pop(seg)
            self._live.pop(seg, None)
            os.close(self._fds.pop(seg))
            os.unlink(self._seg_dir / _seg_name(seg))
            self._replay.delete(seg.to_bytes(4, "big"))
            return reclaimed - moved

    def _move(self, part: list[tuple[bytes, bytes, bytes | memoryview]], batch: WriteBatch) -> None:
        """Append records being compacted and point the index at the copies (in ``batch``)."""
        if not part:
            return
        offsets = self._append(part)
        for (kind, chunk_hash, payload), at in zip(part, offsets, strict=True):
            if kind == _PUT:
                batch.put(chunk_hash, _LOC.pack(self._active, at, len(payload)))
                size = HEADER_LEN + len(payload)
                self._live[self._active] = self._live.get(self._active, 0) + size

    # -- closing --------------------------------------------------------------------------------
    def _close_all(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._hints.close()
        self._hint_index.close()
        self._replay.close()
        self._db.close()
        del self._hints, self._hint_index, self._replay
        del self._hints_cf, self._hint_index_cf, self._replay_cf, self._db

    def close(self) -> None:
        """Close the segments and the index (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_all()
