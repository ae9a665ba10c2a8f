"""A pure, in-process model of the server and of devices, driven by the sync planner.

The remote side of every device is decided by the real planner (``syncd.planner``: the step
order of ``remote_steps`` and the ``decide_*`` functions) and the real conflict rules
(``syncd.conflicts``); the model only carries the answers out on dictionaries. The server model
has the metanode's contract: commits against a parent revision (a stale one is a conflict),
folders that follow moves (``parent_folder_id``), folder deletes scoped by ``seen_seq``, moves
that keep the file id. The indexer and op runner are modelled after ``syncd/indexer.py`` and
``syncd/ops.py`` (local changes become upload, mkdir, delete and move ops).

Every disk write goes through ``Device.write_ok``: it fails the run if a path leaves the root or
passes through a symlink.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, field, replace

from syncd.conflicts import free_copy_path
from syncd.localdb import FILE, FOLDER, RemoteRow, SyncedRow, key_of, rebase
from syncd.planner import (
    Here,
)

LINK = 9
NS = "ns"
DAY = dt.date(2026, 11, 30)


class Unsafe(AssertionError):
    """An executor was about to write outside the root or through a symlink."""


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def parent(path: str) -> str:
    return path.rpartition("/")[0]


def inside(path: str, folder: str) -> bool:
    return key_of(path).startswith(key_of(folder) + "/")


# -- the server ---------------------------------------------------------------------------
@dataclass
class SEnt:
    fid: str
    path: str
    kind: int
    rev: str
    content: str
    exe: bool
    deleted: bool = False
    seq: int = 0

    def row(self) -> RemoteRow:
        return RemoteRow(
            NS,
            self.fid,
            self.path,
            self.kind,
            self.rev,
            len(self.content),
            self.content.encode(),
            self.deleted,
            self.seq,
            self.exe,
        )


class Refused(Exception):
    pass


class Conflict(Exception):
    def __init__(self, head: SEnt | None) -> None:
        super().__init__("conflict")
        self.head = head


@dataclass
class Server:
    ents: dict[str, SEnt] = field(default_factory=dict)
    journal: list[RemoteRow] = field(default_factory=list)
    n: int = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def _emit(self, e: SEnt) -> RemoteRow:
        e.seq = self._next()
        e.rev = f"r{e.seq}"
        self.journal.append(e.row())
        return e.row()

    def live(self, path: str) -> SEnt | None:
        k = key_of(path)
        return next((e for e in self.ents.values() if not e.deleted and key_of(e.path) == k), None)

    def by_id(self, fid: str) -> SEnt | None:
        e = self.ents.get(fid)
        return e if e is not None and not e.deleted else None

    def _place(self, path: str, folder_id: str) -> str:
        f = self.by_id(folder_id) if folder_id else None
        if f is not None and f.kind == FOLDER:
            return f"{f.path}/{path.rpartition('/')[2]}"
        return path

    def _parents(self, path: str) -> str:
        """Make the missing parent folders; ``path`` with its parents spelled as the server has them."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            e = self.live(p)
            if e is None:
                e = SEnt(f"f{self._next()}", p, FOLDER, "", "", False)
                self.ents[e.fid] = e
                self._emit(e)
            elif e.kind != FOLDER:
                raise Refused(f"{p} is a file")
            parts[:i] = e.path.split("/")
        return "/".join(parts)

    def commit(
        self, path: str, parent_rev: str, content: str, exe: bool, folder_id: str
    ) -> RemoteRow:
        path = nfc(path)  # the server stores names in NFC
        path = self._parents(self._place(path, folder_id))
        e = self.live(path)
        if e is not None and e.kind == FOLDER:
            raise Refused("a folder is there")
        if e is None:
            if parent_rev:
                raise Conflict(None)
            e = SEnt(f"f{self._next()}", path, FILE, "", content, exe)
            self.ents[e.fid] = e
        elif e.rev != parent_rev:
            raise Conflict(e)
        e.content, e.exe = content, exe
        return self._emit(e)

    def mkdir(self, path: str, folder_id: str) -> RemoteRow:
        path = nfc(path)
        path = self._parents(self._place(path, folder_id))
        e = self.live(path)
        if e is not None:
            if e.kind != FOLDER:
                raise Refused("a file is there")
            return e.row()
        e = SEnt(f"f{self._next()}", path, FOLDER, "", "", False)
        self.ents[e.fid] = e
        return self._emit(e)

    def delete(self, path: str, parent_rev: str, seen: int) -> tuple[RemoteRow, int]:
        e = self.live(path)
        if e is None:
            raise KeyError(path)
        if e.kind == FILE:
            if parent_rev and parent_rev != e.rev:
                raise Conflict(e)
            e.deleted = True
            return self._emit(e), 0
        below = sorted(
            (x for x in self.ents.values() if not x.deleted and inside(x.path, e.path)),
            key=lambda x: -x.path.count("/"),
        )
        keep: set[str] = set()
        for x in below:
            if x.seq > seen:
                keep.add(key_of(x.path))
                p = parent(x.path)
                while p and key_of(p) != key_of(e.path):
                    keep.add(key_of(p))
                    p = parent(p)
        for x in below:
            if key_of(x.path) not in keep:
                x.deleted = True
                self._emit(x)
        if keep:
            return e.row(), len(keep)
        e.deleted = True
        return self._emit(e), 0

    def move(self, src: str, dst: str, parent_rev: str) -> RemoteRow:
        dst = nfc(dst)
        e = self.live(src)
        if e is None:
            raise KeyError(src)
        if e.kind == FILE and parent_rev and parent_rev != e.rev:
            raise Refused("stale")
        there = self.live(dst)
        if (there is not None and there.fid != e.fid) or inside(dst, src):
            raise Refused("taken")
        dst = self._parents(dst)
        old = e.path
        for x in [x for x in self.ents.values() if not x.deleted and inside(x.path, old)]:
            x.path = rebase(x.path, old, dst)
            self._emit(x)
        e.path = dst
        return self._emit(e)

    def tree(self) -> dict[str, tuple[str, int, str, bool]]:
        return {
            key_of(e.path): (e.path, e.kind, e.content, e.exe)
            for e in self.ents.values()
            if not e.deleted
        }


# -- a device ------------------------------------------------------------------------------
@dataclass
class DEnt:
    path: str
    kind: int
    content: str = ""
    exe: bool = False
    inode: int = 0


@dataclass
class Op:
    kind: str
    path: str
    dest: str = ""


@dataclass
class Device:
    name: str
    server: Server
    disk: dict[str, DEnt] = field(default_factory=dict)
    index: dict[str, DEnt] = field(default_factory=dict)
    synced: dict[str, SyncedRow] = field(default_factory=dict)
    remote: dict[str, RemoteRow] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)  # ignored top-level names (keys)
    cursor: int = 0
    online: bool = True
    skipped: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)  # contents this device had on its disk
    log: list[str] = field(default_factory=list)
    inodes: int = 0

    # -- safety ----------------------------------------------------------------------------
    def write_ok(self, path: str) -> None:
        """Fail the run on a write outside the root or through a symlink."""
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise Unsafe(f"{self.name}: write outside the root: {path!r}")
        p = parent(path)
        while p:
            e = self.disk.get(key_of(p))
            if e is not None and e.kind == LINK:
                raise Unsafe(f"{self.name}: write through the symlink {p} to {path}")
            p = parent(p)

    def writable(self, path: str) -> bool:
        """``SafeFS.check_writable``: no symlink or file on the way, no symlink at the end."""
        e = self.disk.get(key_of(path))
        return not self.hidden(path) and (e is None or e.kind != LINK)

    def is_ignored(self, path: str) -> bool:
        return key_of(path).split("/")[0] in self.ignored

    def hidden(self, path: str) -> bool:
        """Under a symlink: never walked, never indexed."""
        p = parent(path)
        while p:
            e = self.disk.get(key_of(p))
            if e is not None and e.kind != FOLDER:
                return True
            p = parent(p)
        return False

    def put(self, e: DEnt, *, index: bool = True) -> None:
        self.write_ok(e.path)
        if not e.inode:
            self.inodes += 1
            e.inode = self.inodes
        self.disk[key_of(e.path)] = e
        if e.kind == FILE:
            self.seen.add(e.content)
        if index:
            self.index[key_of(e.path)] = replace(e)

    def makedirs(self, folder: str, *, index: bool = True) -> None:
        parts = folder.split("/") if folder else []
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if key_of(p) not in self.disk:
                self.put(DEnt(p, FOLDER), index=index)

    def rename(self, old: str, new: str, *, synced: bool) -> None:
        self.write_ok(old)
        self.write_ok(new)
        ok = key_of(old)
        for table in (self.disk, self.index) + ((self.synced,) if synced else ()):
            for k in [k for k in table if k == ok or k.startswith(ok + "/")]:
                v = table.pop(k)
                moved = rebase(v.path, old, new)
                table[key_of(moved)] = replace(v, path=moved)

    def remove(self, path: str) -> None:
        self.write_ok(path)
        self.disk.pop(key_of(path), None)
        self.index.pop(key_of(path), None)

    def drop_synced(self, path: str, *, subtree: bool = False) -> None:
        k = key_of(path)
        for s in [s for s in self.synced if s == k or (subtree and s.startswith(k + "/"))]:
            del self.synced[s]

    def conflicted_copy(self, path: str) -> str:
        return free_copy_path(
            path, self.name, DAY, lambda p: key_of(p) in self.disk or key_of(p) in self.synced
        )

    def pending(self) -> set[str]:
        return {key_of(p) for o in self.ops for p in (o.path, o.dest) if p}

    def here(self, path: str, pending: set[str]) -> Here:
        k = key_of(path)
        d = self.disk.get(k)
        # The disk is case-sensitive: another spelling at the same key is not at ``path``.
        kind = (
            d.kind
            if d is not None and d.path == path and d.kind != LINK and not self.hidden(path)
            else None
        )
        i = self.index.get(k)
        clean = (i is None and kind is None) or (
            i is not None
            and kind is not None
            and d is not None
            and (i.kind, i.content, i.exe, i.inode, i.path)
            == (d.kind, d.content, d.exe, d.inode, d.path)
        )
        twin = d is not None and d.path != path and d.kind != LINK and not self.hidden(d.path)
        return Here(kind, i is not None, clean, k in pending, self.is_ignored(path), twin)
