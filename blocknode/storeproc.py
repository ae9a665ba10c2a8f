"""The RocksDB chunk store in a child process, so that RocksDB never holds the node's GIL.

rocksdict keeps the GIL for the whole of every call, and a ``Write`` can block for hundreds of
milliseconds (the kernel throttling page-cache writes on a busy disk, a memtable switch); in
the node's process that would stall the event loop and every RPC with it. ``ProcessChunkStore``
runs ``RocksChunkStore`` in a spawned child with its own interpreter and talks to it over
pipes: the parent's threads wait in ``recv``, which releases the GIL.

One pipe carries mutations (so they stay in order), ``readers`` more carry reads. The child
exits when the parent's ends of the pipes close, including when the parent is killed, so a
restarted node finds the database unlocked.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from blocknode.store import ChunkCorrupt, RocksChunkStore, StoreError

log = logging.getLogger(__name__)

SCAN_PAGE = 10_000  # hashes per scan round trip
OPEN_TIMEOUT = 30.0  # seconds to open the database (waits out a dying predecessor's lock)
_WRITE_OPS = frozenset(
    {"put", "write", "delete", "delete_many", "delete_hint", "finish_hints", "drop_unhinted"}
)
_READ_OPS = frozenset({"get", "contains", "scan_page", "count", "hints", "hint_count"})


def _open_store(path: str) -> RocksChunkStore:
    """Open the store, retrying while a previous owner (a killed node's child) lets go."""
    deadline = time.monotonic() + OPEN_TIMEOUT
    while True:
        try:
            return RocksChunkStore(path)
        except StoreError as e:
            if "lock" not in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _scan_page(store: RocksChunkStore, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
    page = []
    for h in store.scan(start, end):
        page.append(h)
        if len(page) >= limit:
            break
    return page


def _serve_conn(store: RocksChunkStore, conn: Connection, ops: frozenset[str]) -> None:
    """Answer requests on one pipe until the parent closes it (or asks to close)."""
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        if op == "close":
            return
        try:
            if op not in ops:
                raise StoreError(f"operation {op!r} not allowed on this pipe")
            result: Any = (
                _scan_page(store, *args) if op == "scan_page" else getattr(store, op)(*args)
            )
            if op == "hints":
                result = list(result)
            reply: tuple[bool, Any] = (True, result)
        except ValueError as e:  # bad arguments: the caller's bug, raised as such
            reply = (False, ("value", str(e)))
        except ChunkCorrupt as e:
            reply = (False, ("corrupt", str(e)))
        except Exception as e:
            reply = (False, ("store", str(e)))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _child_main(path: str, writer: Connection, readers: list[Connection]) -> None:
    """Entry point of the store process: it ends when the parent closes the pipes."""
    # Signals are for the node; the store goes when the node closes it (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        store = _open_store(path)
    except Exception as e:
        with contextlib.suppress(OSError):
            writer.send((False, ("store", str(e))))
        return
    writer.send((True, store.count()))
    threads = [
        threading.Thread(target=_serve_conn, args=(store, c, _READ_OPS), daemon=True)
        for c in readers
    ]
    for t in threads:
        t.start()
    try:
        _serve_conn(store, writer, _WRITE_OPS)  # returns on "close" or when the parent is gone
    finally:
        store.close()  # reader threads are daemons: they end with the process
        with contextlib.suppress(OSError):
            writer.send((True, None))


class ProcessChunkStore:
    """A BlockStore backed by ``RocksChunkStore`` in a child process.

    Args:
        path: The database directory.
        readers: Pipes (and child threads) for concurrent reads.

    Raises:
        StoreError: The child could not open the database (the message says why).
    """

    def __init__(self, path: str | Path, *, readers: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        pipes = [ctx.Pipe(duplex=True) for _ in range(1 + readers)]
        self._writer, child_writer = pipes[0]
        self._write_lock = threading.Lock()
        self._readers: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._reader_conns = [p[0] for p in pipes[1:]]
        for conn in self._reader_conns:
            self._readers.put(conn)
        self._proc = ctx.Process(
            target=_child_main,
            args=(str(path), child_writer, [p[1] for p in pipes[1:]]),
            name="blocknode-store",
            daemon=True,
        )
        self._proc.start()
        for _, child_end in pipes:
            child_end.close()
        self._closed = False
        if not self._writer.poll(OPEN_TIMEOUT + 10):
            self._proc.kill()
            raise StoreError(f"chunk store process did not open {path}")
        ok, value = self._writer.recv()
        if not ok:
            self._proc.join(5)
            raise StoreError(value[1])
        self.pid = self._proc.pid

    def _call(self, op: str, *args: Any) -> Any:
        if self._closed:
            raise StoreError("chunk store is closed")
        if op in _WRITE_OPS:
            with self._write_lock:
                ok, value = self._roundtrip(self._writer, op, args)
        else:
            conn = self._readers.get()
            try:
                ok, value = self._roundtrip(conn, op, args)
            finally:
                self._readers.put(conn)
        if not ok:
            kind, message = value
            if kind == "value":
                raise ValueError(message)
            raise ChunkCorrupt(message) if kind == "corrupt" else StoreError(message)
        return value

    def _roundtrip(self, conn: Connection, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        try:
            conn.send((op, args))
            return conn.recv()
        except (EOFError, OSError) as e:
            raise StoreError(
                f"chunk store process is gone (exit code {self._proc.exitcode}): {e}"
            ) from e

    def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's bytes as stored, or None."""
        return self._call("get", chunk_hash)

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored."""
        return self._call("contains", chunk_hash)

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)``, fetched a page at a time."""
        while True:
            page: list[bytes] = self._call("scan_page", start, end, SCAN_PAGE)
            yield from page
            if len(page) < SCAN_PAGE:
                return
            start = page[-1] + b"\x00"

    def count(self) -> int:
        """How many chunks are stored."""
        return self._call("count")

    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Store one chunk durably."""
        self._call("put", chunk_hash, data)

    def write(
        self, puts: Sequence[tuple[bytes, bytes]], hints: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Store chunks and hint records in one durable batch; how many chunks were new."""
        return self._call("write", list(puts), list(hints))

    def delete(self, chunk_hash: bytes) -> bool:
        """Remove one chunk; True if it was there."""
        return self._call("delete", chunk_hash)

    def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks in one durable batch; how many were there."""
        return self._call("delete_many", list(hashes))

    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target, hash) hint records."""
        return iter(self._call("hints", target))

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint record."""
        self._call("delete_hint", target, chunk_hash)

    def hint_count(self) -> int:
        """How many hint records are held."""
        return self._call("hint_count")

    def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget the hint records of ``target`` for these chunks; how many there were."""
        return self._call("finish_hints", target, list(hashes))

    def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names, in one durable batch; which were deleted."""
        return self._call("drop_unhinted", list(hashes))

    def close(self) -> None:
        """Close the database in the child and wait for it to exit (idempotent)."""
        if self._closed:
            return
        with self._write_lock:
            self._closed = True
            with contextlib.suppress(EOFError, OSError):
                self._writer.send(("close", ()))
                if self._writer.poll(30):
                    self._writer.recv()
            for conn in [self._writer, *self._reader_conns]:
                conn.close()
        self._proc.join(30)
        if self._proc.is_alive():
            log.error("chunk store process did not exit; killing it")
            self._proc.kill()
            self._proc.join(5)
