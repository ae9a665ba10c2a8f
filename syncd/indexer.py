"""The indexer: walks the folder, compares it with the ``local`` tree, and queues operations.

Files whose size, mtime and inode are unchanged are skipped without being read; nothing is
hashed here (the uploader chunks a file once, as it sends it). A path that reappears with the
inode of one that vanished is a move (for a file, size and mtime must match too, so a reused
inode is not mistaken for one). A file modified less than ``settle`` seconds ago, and not
seen closed by the watcher since, is still being written: it waits.

``.tesseraignore`` is about uploading only: a matching local path is never uploaded, and
nothing the user does to it locally (edit, delete, move away) reaches the server. A path that
was synced before it became ignored is not "gone": no delete is queued for it, the server and
every other device keep it, and remote changes to it still come down (``Applier``). Paths
excluded from this device (selective sync) are not walked at all.

A marker at the root (``.tessera/folder-id``, written on the first run, never synced) tells an
unmounted, missing or replaced folder from a user's deletes: without it ``check_root`` raises
``FolderVanished`` and the daemon pauses (deleting nothing) until the folder is back.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from client import is_executable
from syncd.localdb import FILE, FOLDER, LocalDB, LocalRow, key_of
from syncd.safefs import SafeFS, SkipPath

log = logging.getLogger(__name__)

IGNORE_FILE = ".tesseraignore"
TEMP_SUFFIX = ".tessera-part"
STATE_DIR_NAME = ".tessera"
MARKER = f"{STATE_DIR_NAME}/folder-id"


class FolderVanished(Exception):
    """The synced folder is missing, unmounted or replaced (its root marker is gone)."""


def check_root(root: Path, db: LocalDB) -> None:
    """Make sure ``root`` is the folder this state belongs to, by its marker.

    The first run writes the marker (a random id kept in the state too). Later runs need it
    there with the same id; otherwise raise ``FolderVanished`` (the daemon pauses, deletes
    nothing and retries).
    """
    want = db.get_meta("folder_id")
    marker = root / MARKER
    if not root.is_dir():
        raise FolderVanished(
            f"{root} is missing (unmounted?): paused, nothing is deleted; "
            "syncing resumes when it is back"
        )
    try:
        have = marker.read_text().strip() if not marker.is_symlink() else ""
    except (FileNotFoundError, NotADirectoryError):
        have = None
    except OSError as e:
        raise FolderVanished(
            f"cannot read {marker} ({e.strerror}): paused, nothing is deleted"
        ) from None
    if not want:  # first run (or a state from before markers): adopt or mark
        want = have or os.urandom(16).hex()
        if have is None:
            try:
                if (root / STATE_DIR_NAME).is_symlink():
                    raise OSError(errno.ELOOP, "is a symlink")
                (root / STATE_DIR_NAME).mkdir(mode=0o700, exist_ok=True)
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write(want + "\n")
            except OSError as e:
                raise FolderVanished(
                    f"cannot write the folder's marker {marker} ({e.strerror}): "
                    "not syncing without it"
                ) from None
        db.set_meta("folder_id", want)
        return
    if have is None:
        raise FolderVanished(
            f"{root} has lost its marker {MARKER} (unmounted, or deleted and made again?): paused, "
            f"nothing is deleted; put the folder back to resume, or to start it afresh from the "
            f"server stop the daemon and remove its state directory"
        )
    if have != want:
        raise FolderVanished(
            f"{root} holds another synced folder's marker ({MARKER}): paused, nothing is deleted"
        )


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
    return a.kind == FOLDER or (
        a.size == b.size and a.mtime_ns == b.mtime_ns and bool(a.executable) == bool(b.executable)
    )


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
                lines = (
                    (self.root / IGNORE_FILE).read_text(errors="replace").splitlines()
                    if mtime
                    else []
                )
            except OSError:
                lines = []
            self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def reserved(self, path: str) -> bool:
        """The daemon's own files (marker, state, temporaries): never synced either way."""
        if any(part == STATE_DIR_NAME for part in path.split("/")) or path.endswith(TEMP_SUFFIX):
            return True
        return bool(self._state_rel) and (
            path == self._state_rel or path.startswith(self._state_rel + "/")
        )

    def __call__(self, path: str, is_dir: bool) -> bool:
        """True if ``path`` (relative, "/"-separated) must not be uploaded (its parent is not)."""
        name = path.rpartition("/")[2]
        if name == STATE_DIR_NAME or name.endswith(TEMP_SUFFIX):
            return True
        if self._state_rel and (path == self._state_rel or path.startswith(self._state_rel + "/")):
            return True
        self._reload()
        return self._spec.match_file(path + "/" if is_dir else path)

    def covers(self, path: str, is_dir: bool | None = None) -> bool:
        """True if ``path`` or any folder above it is ignored (or reserved); ``is_dir`` defaults
        to what is on the disk."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            if self("/".join(parts[:i]), True):
                return True
        if is_dir is None:
            is_dir = os.path.isdir(self.root / path) and not os.path.islink(self.root / path)
        return self(path, is_dir)


@dataclass
class Detected:
    """The outcome of one indexing pass."""

    ops: int = 0
    deferred: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)


class Indexer:
    """Turns differences between the disk and the ``local`` tree into queued operations."""

    def __init__(
        self,
        root: Path,
        db: LocalDB,
        ignore: Ignore,
        *,
        settle: float = 1.0,
        closed: Callable[[str, int], bool] | None = None,
        hidden: Callable[[str], bool] | None = None,
        twin_name: Callable[[str], str] | None = None,
    ) -> None:
        """Create an indexer.

        Args:
            root: the synced folder.
            db: the daemon's state.
            ignore: what not to sync.
            settle: seconds a file must be unmodified before upload (unless seen closed).
            closed: tells whether the watcher saw the file closed after its mtime.
            hidden: paths excluded from this device (selective sync): not walked.
            twin_name: a free local name for the conflicted copy of a path (for the second of
                two names the server treats as one).
        """
        self.root = root
        self.fs = SafeFS(root)
        self.db = db
        self.ignore = ignore
        self.settle = settle
        self.closed = closed or (lambda _p, _m: False)
        self.hidden = hidden or (lambda _p: False)
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
            return DiskEntry(
                rel, FILE, st.st_size, st.st_mtime_ns, st.st_ino, is_executable(st.st_mode)
            )
        return None

    def stat(self, rel: str) -> DiskEntry | None:
        """The disk entry at a relative path, or None (missing, ignored, symlink, special, or
        reached only through a symlinked or file parent: never followed)."""
        try:
            st = self.fs.lstat(rel)
        except (OSError, SkipPath):
            return None
        entry = self._entry(rel, st)
        if entry is None or self.ignore(rel, entry.kind == FOLDER) or self.hidden(rel):
            return None
        return entry

    def on_disk(self, rel: str) -> DiskEntry | None:
        """The disk entry at a relative path whether ignored or not (None: missing, symlink,
        special file): what remote changes must not overwrite unseen."""
        try:
            st = self.fs.lstat(rel)
        except (OSError, SkipPath):
            return None
        return self._entry(rel, st)

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
                    if (
                        entry is None
                        or self.ignore(child, entry.kind == FOLDER)
                        or self.hidden(child)
                    ):
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
        ranked = sorted(
            same,
            key=lambda e: (
                row is None or e.path != row.path,
                e.path != unicodedata.normalize("NFC", e.path),
                e.path,
            ),
        )
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
                names = self.fs.listdir(folder)
            except (OSError, SkipPath):
                names = []
            groups: dict[str, list[str]] = {}
            for n in names:
                child = f"{folder}/{n}" if folder else n
                groups.setdefault(key_of(child), []).append(child)
            self._listing[folder] = {k: v for k, v in groups.items() if len(v) > 1}
        same = [
            e
            for c in self._listing[folder].get(key_of(rel), [])
            for e in [self.stat(c)]
            if e is not None
        ]
        return self._keeper(same) if len(same) > 1 else top

    def _rename_twins(self, disk: dict[str, DiskEntry]) -> None:
        """Keep both of two local names the server treats as one: the second is renamed to a
        conflicted copy here (and then uploaded like any new file)."""
        twins, self._twins = self._twins, []
        for t in {t.path: t for t in twins}.values():
            self._listing.pop(t.path.rpartition("/")[0], None)
            copy = self.twin_name(t.path)
            try:
                self.fs.rename(t.path, copy)
            except (OSError, SkipPath) as e:
                log.warning(
                    "%s and another name differ only in case or Unicode form; could not "
                    "rename it to %s (%s): not synced",
                    t.path,
                    copy,
                    e,
                )
                continue
            log.warning(
                "%s differs from another name only in case or Unicode form: kept as %s",
                t.path,
                copy,
            )
            disk.update(self.walk(copy))

    def _settled(self, e: DiskEntry) -> bool:
        if self.closed(e.path, e.mtime_ns):
            return True
        return (time.time_ns() - e.mtime_ns) / 1e9 >= self.settle

    # -- detecting -------------------------------------------------------------------
    def detect(self, scopes: set[str] | None) -> Detected:
        """Index ``scopes`` (relative paths; None = everything) and queue what changed."""
        check_root(self.root, self.db)
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
        kept = {
            k: r
            for k, r in gone.items()
            if k not in disk
            and (self.ignore.covers(r.path, r.kind == FOLDER) or self.hidden(r.path))
        }
        for k in kept:  # ignored or excluded now: never a delete on the server
            del gone[k]
        new = {k: e for k, e in disk.items() if k not in known or known[k].kind != e.kind}
        out = Detected()
        with self.db.tx():
            self._renames(disk, known, out)
            self._moves(new, gone, out)
            for k in sorted((k for k in gone if k in disk), key=lambda k: -k.count("/")):
                self.db.drop_local(gone[k].path)  # a file replaced by a folder (or the reverse):
                self.db.add_op("delete", gone.pop(k).path)  # the delete goes first
                out.ops += 1
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
                    self.db.put_local(e.row())  # inode changed (replaced): contents are walked
                elif self._settled(e):
                    self.db.put_local(e.row())
                    self.db.add_op("upload", e.path)
                    out.ops += 1
                else:
                    out.deferred.append(e.path)
            for r in kept.values():
                if self.on_disk(r.path) is None:
                    self.db.drop_local(
                        r.path
                    )  # gone from the disk: its remote changes come down again
            for k in sorted(gone, key=lambda k: -k.count("/")):
                self.db.drop_local(gone[k].path)
                self.db.add_op("delete", gone[k].path)
                out.ops += 1
        return out

    def _renames(
        self, disk: dict[str, DiskEntry], known: dict[str, LocalRow], out: Detected
    ) -> None:
        """Case-only and normalisation-only renames (same key, another spelling) are moves."""
        done: list[tuple[str, str]] = []
        for k in sorted(disk.keys() & known.keys(), key=lambda k: k.count("/")):
            e, row = disk[k], known[k]
            was = row.path
            for old, moved in done:  # a renamed folder took this along
                if was.startswith(old + "/"):
                    was = moved + was[len(old) :]
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
                continue  # taken along with a moved folder
            e = new[k]
            match = next(
                (
                    g
                    for g in by_inode.get(e.inode, ())
                    if g in gone
                    and gone[g].kind == e.kind
                    and (
                        e.kind == FOLDER
                        or (gone[g].size == e.size and gone[g].mtime_ns == e.mtime_ns)
                    )
                ),
                None,
            )
            if match is None:
                continue
            old = gone.pop(match)
            self.db.move_local(old.path, e.path)
            self.db.put_local(e.row())
            self.db.add_op("move", old.path, e.path)
            out.ops += 1
            out.moves.append((old.path, e.path))
            del new[k]
            if e.kind == FOLDER:  # the subtree came along: re-judge it at its new place
                old_lo = key_of(old.path) + "/"
                for g in [g for g in gone if g.startswith(old_lo)]:
                    row = gone.pop(g)
                    moved = e.path + row.path[len(old.path) :]
                    d = new.pop(key_of(moved), None)
                    if d is None:  # vanished from the moved folder: a delete at the new place
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
