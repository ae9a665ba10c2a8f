"""The indexer: walks the folder, compares it with the ``local`` tree, and queues operations.

Files whose size, mtime and inode are unchanged are skipped without being read; nothing is
hashed here (the uploader chunks a file once, as it sends it). A path that reappears with the
inode of one that vanished is a move (for a file, size and mtime must match too, so a reused
inode is not mistaken for one). A file modified less than ``settle`` seconds ago, and not
seen closed by the watcher since, is still being written: it waits.

The indexer refuses to turn a missing folder, or one that suddenly emptied, into a mass delete:
it raises ``FolderVanished`` and the daemon stops and says so.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from client._localdb import FILE, FOLDER, LocalDB, LocalRow, key_of
from client._modes import is_executable

log = logging.getLogger(__name__)

IGNORE_FILE = ".tesseraignore"
TEMP_SUFFIX = ".tessera-part"
STATE_DIR_NAME = ".tessera"


class FolderVanished(Exception):
    """The synced folder is missing or suddenly empty: not propagated as a mass delete."""


@dataclass(frozen=True)
class DiskEntry:
    """What ``lstat`` says about one path."""

    path: str
    kind: int
    size: int
    mtime_ns: int
    inode: int
    executable: bool = False

    def row(self) -> LocalRow:
        """As a ``local`` row."""
        return LocalRow(self.path, self.kind, self.size, self.mtime_ns, self.inode, self.executable)


def same_stat(a: LocalRow | DiskEntry | None, b: LocalRow | DiskEntry | None) -> bool:
    """Equal for the indexer's purpose (folders: kind and inode only; files: the executable bit
    too, so a chmod alone is a change)."""
    if a is None or b is None:
        return a is b
    if a.kind != b.kind or a.inode != b.inode:
        return False
    return a.kind == FOLDER or (a.size == b.size and a.mtime_ns == b.mtime_ns
                                and bool(a.executable) == bool(b.executable))


class Ignore:
    """``.tesseraignore`` (gitignore syntax) plus what is never synced: state and temp files."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.root = root
        self._state_rel = ""
        try:
            self._state_rel = state_dir.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
        self._spec: pathspec.PathSpec = pathspec.GitIgnoreSpec([])
        self._mtime = -1

    def _reload(self) -> None:
        try:
            mtime = (self.root / IGNORE_FILE).stat().st_mtime_ns
        except OSError:
            mtime = 0
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                lines = (self.root / IGNORE_FILE).read_text(errors="replace").splitlines() if mtime else []
            except OSError:
                lines = []
            self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def __call__(self, path: str, is_dir: bool) -> bool:
        """True if ``path`` (relative, "/"-separated) must not be synced."""
        name = path.rpartition("/")[2]
        if name == STATE_DIR_NAME or name.endswith(TEMP_SUFFIX):
            return True
        if self._state_rel and (path == self._state_rel or path.startswith(self._state_rel + "/")):
            return True
        self._reload()
        return self._spec.match_file(path + "/" if is_dir else path)


@dataclass
class Detected:
    """The outcome of one indexing pass."""

    ops: int = 0
    deferred: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)


class Indexer:
    """Turns differences between the disk and the ``local`` tree into queued operations."""

    def __init__(self, root: Path, db: LocalDB, ignore: Ignore, *, settle: float = 1.0,
                 closed: Callable[[str, int], bool] | None = None, mass_delete_min: int = 3,
                 twin_name: Callable[[str], str] | None = None) -> None:
        """Create an indexer.

        Args:
            root: the synced folder.
            db: the daemon's state.
            ignore: what not to sync.
            settle: seconds a file must be unmodified before upload (unless seen closed).
            closed: tells whether the watcher saw the file closed after its mtime.
            mass_delete_min: a folder that empties at once with at least this many entries
                known is treated as vanished, not as deletes.
            twin_name: a free local name for the conflicted copy of a path (for the second of
                two names the server treats as one).
        """
        self.root = root
        self.db = db
        self.ignore = ignore
        self.settle = settle
        self.closed = closed or (lambda _p, _m: False)
        self.mass_delete_min = mass_delete_min
        self.twin_name = twin_name or (lambda rel: rel + " (name clash)")
        self._warned: set[str] = set()
        self._twins: list[DiskEntry] = []
        self._listing: dict[str, dict[str, list[str]]] = {}  # per pass: folder -> key -> twin paths

    # -- walking ---------------------------------------------------------------------
    def _entry(self, rel: str, st: os.stat_result) -> DiskEntry | None:
        if stat_mod.S_ISLNK(st.st_mode):
            if rel not in self._warned:
                self._warned.add(rel)
                log.warning("skipping symlink %s (symlinks are not synced)", rel)
            return None
        if stat_mod.S_ISDIR(st.st_mode):
            return DiskEntry(rel, FOLDER, 0, 0, st.st_ino)
        if stat_mod.S_ISREG(st.st_mode):
            return DiskEntry(rel, FILE, st.st_size, st.st_mtime_ns, st.st_ino, is_executable(st.st_mode))
        return None

    def stat(self, rel: str) -> DiskEntry | None:
        """The disk entry at a relative path, or None (missing, ignored, symlink, special)."""
        try:
            st = os.lstat(self.root / rel)
        except OSError:
            return None
        entry = self._entry(rel, st)
        if entry is None or self.ignore(rel, entry.kind == FOLDER):
            return None
        return entry

    def walk(self, rel: str = "") -> dict[str, DiskEntry]:
        """Every syncable entry at and under ``rel`` ("" = the whole folder), by key."""
        out: dict[str, DiskEntry] = {}
        stack: list[str] = []
        if rel:
            top = self._top(rel)
            if top is None:
                return out
            out[key_of(rel)] = top
            if top.kind != FOLDER:
                return out
            rel = top.path
        stack.append(rel)
        while stack:
            folder = stack.pop()
            here: dict[str, list[DiskEntry]] = {}
            try:
                it = os.scandir(self.root / folder if folder else self.root)
            except OSError:
                continue
            with it:
                for de in it:
                    child = f"{folder}/{de.name}" if folder else de.name
                    try:
                        entry = self._entry(child, de.stat(follow_symlinks=False))
                    except OSError:
                        continue
                    if entry is None or self.ignore(child, entry.kind == FOLDER):
                        continue
                    here.setdefault(key_of(child), []).append(entry)
            for k, same in here.items():
                entry = self._keeper(same)
                out[k] = entry
                if entry.kind == FOLDER:
                    stack.append(entry.path)
        return out

    def _keeper(self, same: list[DiskEntry]) -> DiskEntry:
        """Of entries whose names the server treats as one (case or NFC/NFD twins), the one
        that keeps the name: the one indexed before, else the NFC spelling, else the first by
        name. The others are remembered, to become conflicted copies."""
        if len(same) == 1:
            return same[0]
        row = self.db.local(same[0].path)
        ranked = sorted(same, key=lambda e: (row is None or e.path != row.path,
                                             e.path != unicodedata.normalize("NFC", e.path), e.path))
        self._twins.extend(ranked[1:])
        return ranked[0]

    def _top(self, rel: str) -> DiskEntry | None:
        """``stat(rel)`` for a scope, with its twins in the same folder resolved."""
        top = self.stat(rel)
        if top is None:
            return None
        folder = rel.rpartition("/")[0]
        if folder not in self._listing:
            try:
                names = os.listdir(self.root / folder if folder else self.root)
            except OSError:
                names = []
            groups: dict[str, list[str]] = {}
            for n in names:
                child = f"{folder}/{n}" if folder else n
                groups.setdefault(key_of(child), []).append(child)
            self._listing[folder] = {k: v for k, v in groups.items() if len(v) > 1}
        same = [e for c in self._listing[folder].get(key_of(rel), []) for e in [self.stat(c)] if e is not None]
        return self._keeper(same) if len(same) > 1 else top

    def _rename_twins(self, disk: dict[str, DiskEntry]) -> None:
        """Keep both of two local names the server treats as one: the second is renamed to a
        conflicted copy here (and then uploaded like any new file)."""
        twins, self._twins = self._twins, []
        for t in {t.path: t for t in twins}.values():
            self._listing.pop(t.path.rpartition("/")[0], None)
            copy = self.twin_name(t.path)
            try:
                os.rename(self.root / t.path, self.root / copy)
            except OSError as e:
                log.warning("%s and another name differ only in case or Unicode form; could not "
                            "rename it to %s (%s): not synced", t.path, copy, e)
                continue
            log.warning("%s differs from another name only in case or Unicode form: kept as %s", t.path, copy)
            disk.update(self.walk(copy))

    def _settled(self, e: DiskEntry) -> bool:
        if self.closed(e.path, e.mtime_ns):
            return True
        return (time.time_ns() - e.mtime_ns) / 1e9 >= self.settle

    # -- detecting -------------------------------------------------------------------
    def detect(self, scopes: set[str] | None) -> Detected:
        """Index ``scopes`` (relative paths; None = everything) and queue what changed."""
        if not self.root.is_dir():
            raise FolderVanished(f"{self.root} is missing (unmounted?): not syncing it as a mass delete")
        disk: dict[str, DiskEntry] = {}
        known: dict[str, LocalRow] = {}
        self._twins, self._listing = [], {}
        for scope in _minimal(scopes) if scopes is not None else [""]:
            disk.update(self.walk(scope))
            if scope:
                row = self.db.local(scope)
                if row is not None:
                    known[key_of(row.path)] = row
                    if row.kind == FOLDER:
                        known.update((key_of(r.path), r) for r in self.db.local_rows(scope))
            else:
                known.update((key_of(r.path), r) for r in self.db.local_rows())
        self._rename_twins(disk)
        gone = {k: r for k, r in known.items() if k not in disk or disk[k].kind != r.kind}
        if gone and len(gone) >= self.mass_delete_min and not any(True for k in disk if "/" not in k):
            total = len(self.db.local_rows())
            if len(gone) >= total and not self.walk():
                raise FolderVanished(
                    f"{self.root} is suddenly empty ({total} entries known): not deleting them everywhere; "
                    "if you meant it, delete the daemon's state and start again")
        new = {k: e for k, e in disk.items() if k not in known or known[k].kind != e.kind}
        out = Detected()
        with self.db.tx():
            self._renames(disk, known, out)
            self._moves(new, gone, out)
            for k in sorted(new, key=lambda k: k.count("/")):
                e = new[k]
                if e.kind == FOLDER:
                    self.db.put_local(e.row())
                    self.db.add_op("mkdir", e.path)
                    out.ops += 1
                elif self._settled(e):
                    self.db.put_local(e.row())
                    self.db.add_op("upload", e.path)
                    out.ops += 1
                else:
                    out.deferred.append(e.path)
            for k, e in disk.items():
                row = known.get(k)
                if row is None or k in new or same_stat(row, e):
                    continue
                if e.kind == FOLDER:
                    self.db.put_local(e.row())       # inode changed (replaced): contents are walked
                elif self._settled(e):
                    self.db.put_local(e.row())
                    self.db.add_op("upload", e.path)
                    out.ops += 1
                else:
                    out.deferred.append(e.path)
            for k in sorted(gone, key=lambda k: -k.count("/")):
                self.db.drop_local(gone[k].path)
                self.db.add_op("delete", gone[k].path)
                out.ops += 1
        return out

    def _renames(self, disk: dict[str, DiskEntry], known: dict[str, LocalRow], out: Detected) -> None:
        """Case-only and normalisation-only renames (same key, another spelling) are moves."""
        done: list[tuple[str, str]] = []
        for k in sorted(disk.keys() & known.keys(), key=lambda k: k.count("/")):
            e, row = disk[k], known[k]
            was = row.path
            for old, moved in done:                 # a renamed folder took this along
                if was.startswith(old + "/"):
                    was = moved + was[len(old):]
            if e.path == was or e.kind != row.kind:
                continue
            self.db.move_local(row.path, e.path)
            self.db.add_op("move", row.path, e.path)
            out.ops += 1
            out.moves.append((row.path, e.path))
            done.append((row.path, e.path))
            known[k] = LocalRow(e.path, row.kind, row.size, row.mtime_ns, row.inode, row.executable)

    def _moves(self, new: dict[str, DiskEntry], gone: dict[str, LocalRow], out: Detected) -> None:
        """Pair vanished and appeared entries by inode (folders first, shallowest first)."""
        by_inode: dict[int, list[str]] = {}
        for k, r in gone.items():
            by_inode.setdefault(r.inode, []).append(k)
        for k in sorted(new, key=lambda k: (new[k].kind != FOLDER, k.count("/"))):
            if k not in new:
                continue            # taken along with a moved folder
            e = new[k]
            match = next((g for g in by_inode.get(e.inode, ()) if g in gone and gone[g].kind == e.kind
                          and (e.kind == FOLDER or (gone[g].size == e.size and gone[g].mtime_ns == e.mtime_ns))), None)
            if match is None:
                continue
            old = gone.pop(match)
            self.db.move_local(old.path, e.path)
            self.db.put_local(e.row())
            self.db.add_op("move", old.path, e.path)
            out.ops += 1
            out.moves.append((old.path, e.path))
            del new[k]
            if e.kind == FOLDER:        # the subtree came along: re-judge it at its new place
                old_lo = key_of(old.path) + "/"
                for g in [g for g in gone if g.startswith(old_lo)]:
                    row = gone.pop(g)
                    moved = e.path + row.path[len(old.path):]
                    d = new.pop(key_of(moved), None)
                    if d is None:       # vanished from the moved folder: a delete at the new place
                        self.db.drop_local(moved)
                        self.db.add_op("delete", moved)
                        out.ops += 1
                    elif not same_stat(row, d):
                        if d.kind == FILE and not self._settled(d):
                            out.deferred.append(d.path)
                            continue
                        self.db.put_local(d.row())
                        if d.kind == FILE:
                            self.db.add_op("upload", d.path)
                            out.ops += 1


def _minimal(scopes: set[str]) -> list[str]:
    """Drop scopes inside other scopes ("" covers everything)."""
    if "" in scopes:
        return [""]
    keep: set[str] = set()
    for s in sorted(scopes, key=lambda p: p.count("/")):
        parts = s.split("/")
        if not any("/".join(parts[:i]) in keep for i in range(1, len(parts) + 1)):
            keep.add(s)
    return sorted(keep)
