"""The sync daemon's local state in SQLite (WAL): three trees, cursors, the op queue, chunks.

* ``remote``: what the journals say, one row per (namespace, file id), with the seq it was
  last changed at (a row never goes back to an older seq).
* ``local``: what the disk said when last indexed (size, mtime, inode), keyed by local path.
* ``synced``: what both agreed on last (the merge base), keyed by local path.
* ``ops``: local changes not yet committed, replayed in order (``id``).
* ``chunks``: where chunks already on disk are (hash -> file, offset), for downloads.
* ``receipts``: block-node receipts of chunks uploaded but not committed yet, so a restarted
  upload does not send them again.
* ``skipped``: paths this device does not sync, with the reason (for ``tessera sync status``),
  e.g. a remote path whose local folder is a symlink or a file, or a name this disk cannot hold.

Local paths are relative to the synced folder, "/"-separated; ``key`` is their case- and
normalisation-insensitive collision key (``tessera.paths.name_key`` per segment).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from client import Change, ChangeOp
from syncd.chunkindex import ChunkIndex
from tessera.paths import name_key

FILE, FOLDER = 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (ns_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS remote (
    ns_id TEXT NOT NULL, file_id TEXT NOT NULL, path TEXT NOT NULL, key TEXT NOT NULL,
    kind INTEGER NOT NULL, revision TEXT NOT NULL, size INTEGER NOT NULL,
    content_hash BLOB NOT NULL, deleted INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (ns_id, file_id));
CREATE INDEX IF NOT EXISTS remote_key ON remote (key);
CREATE TABLE IF NOT EXISTS synced (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, ns_id TEXT NOT NULL, file_id TEXT NOT NULL,
    kind INTEGER NOT NULL, revision TEXT NOT NULL, size INTEGER NOT NULL, content_hash BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS synced_file ON synced (ns_id, file_id);
CREATE TABLE IF NOT EXISTS local (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, kind INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS local_inode ON local (inode);
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, path TEXT NOT NULL,
    dest TEXT NOT NULL DEFAULT '', op_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ops_path ON ops (path);
CREATE TABLE IF NOT EXISTS chunks (
    key TEXT NOT NULL, offset INTEGER NOT NULL, hash BLOB NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (key, offset));
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks (hash);
CREATE TABLE IF NOT EXISTS receipts (
    hash BLOB PRIMARY KEY, size INTEGER NOT NULL, receipt BLOB NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, reason TEXT, at REAL);
"""


@functools.lru_cache(maxsize=65536)
def key_of(path: str) -> str:
    """The collision key of a local relative path."""
    return "/".join(name_key(s) for s in path.split("/")) if path else ""


def rebase(path: str, old: str, new: str) -> str:
    """``path`` (``old`` or inside it, whatever the spelling of its leading names) moved to
    ``new``: the leading components that spell ``old`` are replaced, by count, not by length
    (an NFD name is longer than its NFC twin)."""
    rest = path.split("/")[old.count("/") + 1 :]
    return "/".join([new, *rest])


def under(prefix_key: str) -> tuple[str, str]:
    """SQL LIKE-free bounds for the keys strictly inside a folder key: (lo, hi)."""
    return prefix_key + "/", prefix_key + "0"  # "0" sorts right after "/"


@dataclass(frozen=True)
class RemoteRow:
    """One remote entry as the journal last described it."""

    ns_id: str
    file_id: str
    path: str
    kind: int
    revision: str
    size: int
    content_hash: bytes
    deleted: bool
    seq: int
    executable: bool = False


@dataclass(frozen=True)
class SyncedRow:
    """The merge base of one path."""

    path: str
    ns_id: str
    file_id: str
    kind: int
    revision: str
    size: int
    content_hash: bytes
    executable: bool = False


@dataclass(frozen=True)
class LocalRow:
    """The disk as last indexed."""

    path: str
    kind: int
    size: int
    mtime_ns: int
    inode: int
    executable: bool = False


@dataclass(frozen=True)
class Op:
    """A queued local change: upload, mkdir, delete or move (``dest``)."""

    id: int
    kind: str
    path: str
    dest: str
    op_id: str
    attempts: int


class LocalDB(ChunkIndex):
    """Thin typed access to the state database; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        for table in ("remote", "synced", "local"):  # added later: the executable bit
            if "executable" not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(
                    f"ALTER TABLE {table} ADD COLUMN executable INTEGER NOT NULL DEFAULT 0"
                )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- meta, counters, cursors ---------------------------------------------------------
    def get_meta(self, name: str, default: str = "") -> str:
        """A saved setting."""
        rows = self._all("SELECT value FROM meta WHERE name = ?", (name,))
        return rows[0][0] if rows else default

    def set_meta(self, name: str, value: str) -> None:
        """Save a setting."""
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def bump(self, name: str, by: int = 1) -> None:
        """Add to a persistent counter (chunks sent, conflicts, ...)."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
                (name, by, by),
            )

    def counters(self) -> dict[str, int]:
        """Every counter."""
        return dict(self._all("SELECT name, value FROM counters"))

    def cursors(self) -> dict[str, int]:
        """Journal position per namespace."""
        return dict(self._all("SELECT ns_id, seq FROM cursors"))

    def set_cursor(self, ns_id: str, seq: int) -> None:
        """Record that a namespace's journal was applied up to ``seq``."""
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (ns_id, seq))

    def forget_namespace(self, ns_id: str) -> None:
        """Drop a namespace's cursor and remote rows (access revoked, or before a resync)."""
        with self.tx() as db:
            db.execute("DELETE FROM cursors WHERE ns_id = ?", (ns_id,))
            db.execute("DELETE FROM remote WHERE ns_id = ?", (ns_id,))

    # -- remote ------------------------------------------------------------------------
    def remote_by_id(self, ns_id: str, file_id: str) -> RemoteRow | None:
        """The remote row of a file id."""
        rows = self._all(
            "SELECT ns_id, file_id, path, kind, revision, size, content_hash, deleted, seq, executable FROM remote WHERE ns_id = ? AND file_id = ?",
            (ns_id, file_id),
        )
        return RemoteRow(*rows[0]) if rows else None

    def put_remote(self, row: RemoteRow) -> bool:
        """Insert or update a remote row unless the stored one is newer; True if written."""
        with self.tx() as db:
            cur = db.execute(
                "SELECT seq FROM remote WHERE ns_id = ? AND file_id = ?", (row.ns_id, row.file_id)
            ).fetchone()
            if cur is not None and cur[0] > row.seq:
                return False
            db.execute(
                "INSERT OR REPLACE INTO remote VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.ns_id,
                    row.file_id,
                    row.path,
                    key_of(row.path),
                    row.kind,
                    row.revision,
                    row.size,
                    row.content_hash,
                    int(row.deleted),
                    row.seq,
                    int(row.executable),
                ),
            )
            return True

    def move_remote_subtree(self, ns_id: str, old: str, new: str) -> None:
        """Rewrite the paths of remote rows inside a moved folder."""
        lo, hi = under(key_of(old))
        with self.tx() as db:
            for fid, path in db.execute(
                "SELECT file_id, path FROM remote WHERE ns_id = ? AND key >= ? AND key < ?",
                (ns_id, lo, hi),
            ).fetchall():
                moved = rebase(path, old, new)
                db.execute(
                    "UPDATE remote SET path = ?, key = ? WHERE ns_id = ? AND file_id = ?",
                    (moved, key_of(moved), ns_id, fid),
                )

    def adopt_mount(self, root_ns: str, ns_id: str, mount: str) -> None:
        """A folder of the root namespace is now namespace ``ns_id`` mounted at ``mount`` (sharing
        keeps file and revision ids): forget the root's rows inside it, carry the merge bases over."""
        lo, hi = under(key_of(mount))
        with self.tx() as db:
            db.execute(
                "DELETE FROM remote WHERE ns_id = ? AND key >= ? AND key < ?", (root_ns, lo, hi)
            )
            db.execute(
                "UPDATE synced SET ns_id = ? WHERE ns_id = ? AND key >= ? AND key < ?",
                (ns_id, root_ns, lo, hi),
            )

    def delete_remote_subtree(self, ns_id: str, folder: str, seq: int) -> None:
        """Mark every remote row inside a deleted folder as deleted."""
        lo, hi = under(key_of(folder))
        with self.tx() as db:
            db.execute(
                "UPDATE remote SET deleted = 1, seq = MAX(seq, ?) WHERE ns_id = ? AND key >= ? AND key < ?",
                (seq, ns_id, lo, hi),
            )

    def remote_diff(self) -> list[tuple[RemoteRow, SyncedRow | None]]:
        """Remote rows whose revision differs from the synced row of the same file id."""
        rows = self._all(
            """SELECT r.ns_id, r.file_id, r.path, r.kind, r.revision, r.size, r.content_hash, r.deleted, r.seq, r.executable,
                      s.path, s.ns_id, s.file_id, s.kind, s.revision, s.size, s.content_hash, s.executable
               FROM remote r LEFT JOIN synced s ON s.ns_id = r.ns_id AND s.file_id = r.file_id
               WHERE (s.revision IS NULL AND r.deleted = 0) OR (s.revision IS NOT NULL AND s.revision != r.revision)
               ORDER BY r.seq"""
        )
        return [
            (RemoteRow(*r[:10]), SyncedRow(*r[10:]) if r[10] is not None else None) for r in rows
        ]

    def oldest_unapplied(self, ns_id: str, folder: str) -> int | None:
        """The lowest seq of a live remote row inside a namespace folder that the disk does not
        have yet (no merge base, or another revision), or None."""
        rows = self._all(
            """SELECT MIN(r.seq) FROM remote r LEFT JOIN synced s ON s.ns_id = r.ns_id AND s.file_id = r.file_id
               WHERE r.ns_id = ? AND r.key >= ? AND r.key < ? AND r.deleted = 0
                 AND (s.revision IS NULL OR s.revision != r.revision)""",
            (ns_id, *under(key_of(folder))),
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    # -- synced ------------------------------------------------------------------------
    def synced(self, path: str) -> SyncedRow | None:
        """The merge base of a path."""
        rows = self._all(
            "SELECT path, ns_id, file_id, kind, revision, size, content_hash, executable FROM synced WHERE key = ?",
            (key_of(path),),
        )
        return SyncedRow(*rows[0]) if rows else None

    def synced_by_id(self, ns_id: str, file_id: str) -> SyncedRow | None:
        """The merge base of a file id."""
        rows = self._all(
            "SELECT path, ns_id, file_id, kind, revision, size, content_hash, executable FROM synced WHERE ns_id = ? AND file_id = ?",
            (ns_id, file_id),
        )
        return SyncedRow(*rows[0]) if rows else None

    def put_synced(self, row: SyncedRow) -> None:
        """Record a path as agreed with the cluster (replacing any row with its file id)."""
        with self.tx() as db:
            db.execute(
                "DELETE FROM synced WHERE ns_id = ? AND file_id = ? AND key != ?",
                (row.ns_id, row.file_id, key_of(row.path)),
            )
            db.execute(
                "INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_of(row.path),
                    row.path,
                    row.ns_id,
                    row.file_id,
                    row.kind,
                    row.revision,
                    row.size,
                    row.content_hash,
                    int(row.executable),
                ),
            )

    def drop_synced(self, path: str, *, subtree: bool = False) -> None:
        """Forget the merge base of a path (and of everything inside it)."""
        key = key_of(path)
        with self.tx() as db:
            db.execute("DELETE FROM synced WHERE key = ?", (key,))
            if subtree:
                db.execute("DELETE FROM synced WHERE key >= ? AND key < ?", under(key))

    def synced_subtree(self, path: str) -> list[SyncedRow]:
        """Synced rows strictly inside a folder."""
        rows = self._all(
            "SELECT path, ns_id, file_id, kind, revision, size, content_hash, executable FROM synced WHERE key >= ? AND key < ?",
            under(key_of(path)),
        )
        return [SyncedRow(*r) for r in rows]

    # -- local -------------------------------------------------------------------------
    def local(self, path: str) -> LocalRow | None:
        """The disk as last indexed at a path."""
        rows = self._all(
            "SELECT path, kind, size, mtime_ns, inode, executable FROM local WHERE key = ?",
            (key_of(path),),
        )
        return LocalRow(*rows[0]) if rows else None

    def local_rows(self, prefix: str = "") -> list[LocalRow]:
        """Every indexed entry (inside a folder, when ``prefix`` is given)."""
        if not prefix:
            rows = self._all("SELECT path, kind, size, mtime_ns, inode, executable FROM local")
        else:
            rows = self._all(
                "SELECT path, kind, size, mtime_ns, inode, executable FROM local WHERE key >= ? AND key < ?",
                under(key_of(prefix)),
            )
        return [LocalRow(*r) for r in rows]

    def put_local(self, row: LocalRow) -> None:
        """Record a disk entry."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO local VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key_of(row.path),
                    row.path,
                    row.kind,
                    row.size,
                    row.mtime_ns,
                    row.inode,
                    int(row.executable),
                ),
            )

    def drop_local(self, path: str, *, subtree: bool = False) -> None:
        """Forget a disk entry (and everything inside it)."""
        key = key_of(path)
        with self.tx() as db:
            db.execute("DELETE FROM local WHERE key = ?", (key,))
            db.execute("DELETE FROM chunks WHERE key = ?", (key,))
            if subtree:
                db.execute("DELETE FROM local WHERE key >= ? AND key < ?", under(key))
                db.execute("DELETE FROM chunks WHERE key >= ? AND key < ?", under(key))

    def move_local(self, old: str, new: str, *, synced: bool = False) -> None:
        """Rename a local entry and everything inside it (local rows, chunks; synced rows too
        when ``synced``: the move is agreed with the cluster)."""
        old_key, new_key = key_of(old), key_of(new)
        lo, hi = under(old_key)
        with self.tx() as db:
            for table in ("local", "synced") if synced else ("local",):
                rows = db.execute(
                    f"SELECT key, path FROM {table} WHERE key = ? OR (key >= ? AND key < ?)",
                    (old_key, lo, hi),
                ).fetchall()
                for key, path in rows:
                    moved = rebase(path, old, new)
                    db.execute(
                        f"DELETE FROM {table} WHERE key = ? AND key != ?", (key_of(moved), key)
                    )
                    db.execute(
                        f"UPDATE {table} SET key = ?, path = ? WHERE key = ?",
                        (key_of(moved), moved, key),
                    )
            for (key,) in db.execute(
                "SELECT DISTINCT key FROM chunks WHERE key = ? OR (key >= ? AND key < ?)",
                (old_key, lo, hi),
            ).fetchall():
                db.execute(
                    "UPDATE OR REPLACE chunks SET key = ? WHERE key = ?",
                    (new_key + key[len(old_key) :], key),
                )

    # -- ops ---------------------------------------------------------------------------
    def add_op(self, kind: str, path: str, dest: str = "", op_id: str = "") -> None:
        """Queue a local change; an upload already queued for the path is not queued twice."""
        import uuid

        with self.tx() as db:
            if kind == "upload":
                if db.execute(
                    "SELECT 1 FROM ops WHERE kind = 'upload' AND path = ?", (path,)
                ).fetchone():
                    return
            db.execute(
                "INSERT INTO ops (kind, path, dest, op_id) VALUES (?, ?, ?, ?)",
                (kind, path, dest, op_id or uuid.uuid4().hex),
            )

    def ops(self) -> list[Op]:
        """The queue, oldest first."""
        return [
            Op(*r)
            for r in self._all("SELECT id, kind, path, dest, op_id, attempts FROM ops ORDER BY id")
        ]

    def op_done(self, op_id: int) -> None:
        """Remove a finished (or abandoned) op."""
        with self.tx() as db:
            db.execute("DELETE FROM ops WHERE id = ?", (op_id,))

    def op_failed(self, op_id: int) -> None:
        """Count a failed attempt."""
        with self.tx() as db:
            db.execute("UPDATE ops SET attempts = attempts + 1 WHERE id = ?", (op_id,))

    def pending_keys(self) -> set[str]:
        """Keys of every path a queued op touches (source and destination)."""
        out: set[str] = set()
        for path, dest in self._all("SELECT path, dest FROM ops"):
            out.add(key_of(path))
            if dest:
                out.add(key_of(dest))
        return out

    # -- skipped paths (reported by ``tessera sync status``) ------------------------------
    def skip(self, path: str, reason: str) -> None:
        """Record a path this device does not sync, and why."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?)", (path, reason, time.time())
            )

    def unskip_under(self, path: str) -> None:
        """Forget the skipped paths at and under ``path``."""
        with self.tx() as db:
            db.execute(
                "DELETE FROM skipped WHERE path = ? OR substr(path, 1, ?) = ?",
                (path, len(path) + 1, path + "/"),
            )

    def skipped(self) -> list[tuple[str, str, float]]:
        """Every skipped path: (path, reason, when)."""
        return [
            (p, r or "", a or 0.0)
            for p, r, a in self._all("SELECT path, reason, at FROM skipped ORDER BY path")
        ]

    def replace_remote_namespace(self, ns_id: str, rows: list[RemoteRow], head: int) -> None:
        """A namespace listed afresh (its journal was trimmed past our cursor): ``rows`` are
        what exists now; a synced file missing from them is remotely deleted as of ``head``."""
        seen = {r.file_id for r in rows}
        with self.tx() as db:
            db.execute("UPDATE remote SET deleted = 1 WHERE ns_id = ?", (ns_id,))
            for r in rows:
                db.execute("DELETE FROM remote WHERE ns_id = ? AND file_id = ?", (ns_id, r.file_id))
                self.put_remote(r)
            synced = db.execute(
                "SELECT path, file_id, kind, revision FROM synced WHERE ns_id = ?", (ns_id,)
            ).fetchall()
            for path, file_id, kind, rev in synced:
                if file_id not in seen and self.remote_by_id(ns_id, file_id) is None:
                    self.put_remote(
                        RemoteRow(ns_id, file_id, path, kind, rev + "-gone", 0, b"", True, head)
                    )
            self.set_cursor(ns_id, head)

    def namespace_removed(self, ns_id: str) -> None:
        """Access to a shared folder was removed: all of it is remotely gone for this device."""
        with self.tx() as db:
            db.execute("UPDATE remote SET deleted = 1 WHERE ns_id = ?", (ns_id,))
            db.execute("DELETE FROM cursors WHERE ns_id = ?", (ns_id,))

    def record_change(self, ch: Change, *, shadowed: bool = False) -> None:
        """One journal record into the remote tree, with its cursor, in one transaction.

        ``shadowed``: a root-namespace path inside a shared folder's mount, whose own journal
        carries those files: only the cursor moves."""
        e = ch.entry
        deleted = e.deleted or ch.op is ChangeOp.DELETE
        with self.tx():
            if not shadowed:
                if ch.op is ChangeOp.MOVE and ch.old_path and e.kind == FOLDER:
                    self.move_remote_subtree(ch.namespace_id, ch.old_path, e.path)
                if deleted and e.kind == FOLDER:
                    self.delete_remote_subtree(ch.namespace_id, e.path, ch.seq)
                self.put_remote(
                    RemoteRow(
                        ch.namespace_id,
                        e.file_id,
                        e.path,
                        int(e.kind),
                        e.revision,
                        e.size,
                        e.content_hash,
                        deleted,
                        ch.seq,
                        e.executable,
                    )
                )
            self.set_cursor(ch.namespace_id, ch.seq)
            self.bump("changes_applied")
